"""Identity over the real socket: agent bindings on every op that names an agent, the lease
holder's binding on dispose/release/extend, a campaign's ``max_count`` and
``[auth] record_get = "held"``.

Every peer here is this test process, so one uid. The daemon starts trusting it (an admin
connection imports records and reloads the config); each scenario then reloads a config
with ``trust_own_uid = false`` and opens a new connection, which is an agent. A binding to
"another uid" binds a name to a uid no one has; a binding to ``os.getuid()`` is ours.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AsyncClient, make_records, write_config
from tests.integration.test_server_ops import ALL_DAY, ok, refused, start_daemon

ME = os.getuid()
MY_GID = os.getgid()
#: a uid and a gid that no peer of these tests has
OTHER_UID, OTHER_GID = 4_000_001, 4_100_001

CAMPAIGNS = f"""
[campaigns.t]
resultset = "std"
legal_window = "00:00-24:00"
{{t}}
[campaigns.t.window]
{ALL_DAY}

[campaigns.u]
resultset = "std"
legal_window = "00:00-24:00"
{{u}}
[campaigns.u.window]
{ALL_DAY}
"""

class Floor:
    """A daemon, its admin connection, and a way to rebind the agents."""

    def __init__(self, root: Path, admin: AsyncClient, socket: str) -> None:
        self.root, self.admin, self.socket = root, admin, socket
        self.clients: list[AsyncClient] = []

    async def agent(self, auth: str = "", t: str = "", u: str = "", role: str = "agent"
                    ) -> AsyncClient:
        """Reload with this ``[auth]`` text (after ``trust_own_uid = false``, so a new
        connection is an agent, unless the text makes it ``role``) and these extra lines of
        campaigns t and u; a new connection."""
        write_config(self.root, campaigns=CAMPAIGNS.format(t=t, u=u),
                     auth="trust_own_uid = false\n" + auth)
        ans = await ok(self.admin, "config.reload")
        assert ans["applied"] is True, ans
        c = await AsyncClient.connect(self.socket)
        self.clients.append(c)
        assert (await ok(c, "ping"))["role"] == role
        return c


@pytest.fixture
async def floor(tmp_path: Path) -> AsyncIterator[Floor]:
    path = write_config(tmp_path, campaigns=CAMPAIGNS.format(t="", u=""))
    d = await start_daemon(path)
    admin = await AsyncClient.connect(d.settings.daemon.socket)
    f = Floor(tmp_path, admin, d.settings.daemon.socket)
    try:
        assert (await ok(admin, "ping"))["role"] == "admin"
        await ok(admin, "records.import", campaign="t", list="l", records=make_records(6))
        await ok(admin, "records.import", campaign="u", list="l",
                 records=make_records(6, prefix="u"))
        yield f
    finally:
        for c in [*f.clients, admin]:
            await c.close()
        await d.stop()


def forbidden(ans: dict[str, Any], field: str = "agent") -> None:
    refused(ans, "forbidden", field)


BOUND = f"""
[auth.acts_for]
{OTHER_UID} = ["alice", "dialer-1"]
[agents.bob]
uids = [{ME}]
"""


# ---------------------------------------------------------------------------- bindings


async def test_a_bound_uid_acts_only_as_its_agents_on_every_op(floor: Floor) -> None:
    c = await floor.agent(BOUND)
    await ok(c, "agent.login", agent="bob", campaigns=["t"])
    lease = (await ok(c, "next", agent="bob"))["leases"][0]["token"]
    # alice is another uid's; carol is bound to no one, but our uid is bound to bob only
    for name in ("alice", "carol"):
        forbidden(await c.call("next", agent=name, campaigns=["t"]))
        forbidden(await c.call("agent.login", agent=name, campaigns=["t"]))
        forbidden(await c.call("agent.logout", agent=name))
        forbidden(await c.call("subscribe", agent=name))
        forbidden(await c.call("callbacks", agent=name))
        forbidden(await c.call("campaigns", agent=name))
        forbidden(await c.call("callback.schedule", record="r0", at="2030-01-01T10:00:00",
                               agent=name))
        forbidden(await c.call("dispose", lease=lease, code="NA", agent=name))
        forbidden(await c.call("release", lease=lease, agent=name))
        forbidden(await c.call("extend", lease=lease, agent=name))
    # what bob does is untouched
    await ok(c, "subscribe", agent="bob")
    await ok(c, "callbacks", agent="bob")
    assert [x["name"] for x in (await ok(c, "campaigns", agent="bob"))["campaigns"]] == ["t"]
    await ok(c, "extend", lease=lease, agent="bob")
    await ok(c, "dispose", lease=lease, code="NA", agent="bob")
    await ok(c, "agent.logout", agent="bob")
    # ops that name no agent stay open
    await ok(c, "campaigns")
    await ok(c, "stats")


async def test_unbound_uids_and_names_keep_todays_rules(floor: Floor) -> None:
    # only alice is bound, to another uid: our uid is unbound
    c = await floor.agent(f"[agents.alice]\nuids = [{OTHER_UID}]\n"
                          '[agents.carol]\nemail = "carol@example.com"\n')
    for name in ("anyone", "carol"):
        await ok(c, "agent.login", agent=name, campaigns=["t"])
        await ok(c, "next", agent=name)
    forbidden(await c.call("next", agent="alice", campaigns=["t"]))


async def test_admins_and_supervisors_act_for_bound_agents(floor: Floor) -> None:
    await floor.agent(BOUND)
    a = floor.admin  # connected while trusted: still an admin
    await ok(a, "agent.login", agent="alice", campaigns=["t"])
    lease = (await ok(a, "next", agent="alice"))["leases"][0]["token"]
    await ok(a, "dispose", lease=lease, code="NA", agent="alice")
    await ok(a, "agent.logout", agent="alice")
    # a supervisor (by our gid) the same
    s = await floor.agent(f"supervisor_gids = [{MY_GID}]\n" + BOUND, role="supervisor")
    await ok(s, "next", agent="alice", campaigns=["t"])


async def test_a_name_bound_to_a_group_serves_its_members(floor: Floor) -> None:
    c = await floor.agent(f"[agents.team]\ngids = [{MY_GID}]\n"
                          f"[agents.other-team]\ngids = [{OTHER_GID}]\n")
    await ok(c, "next", agent="team", campaigns=["t"])
    await ok(c, "next", agent="anyone", campaigns=["t"])  # a group confines no one
    forbidden(await c.call("next", agent="other-team", campaigns=["t"]))


async def test_the_lease_holders_binding_guards_dispose_release_extend(floor: Floor) -> None:
    c = await floor.agent()
    a, b, d = (await ok(c, "next", agent="carol", campaigns=["t"], count=3))["leases"]
    # carol is now bound to another uid: the leases our uid took as carol are out of reach
    c2 = await floor.agent(f"[agents.carol]\nuids = [{OTHER_UID}]\n")
    for conn in (c, c2):
        forbidden(await conn.call("dispose", lease=a["token"], code="NA"), "lease")
        forbidden(await conn.call("release", lease=a["token"]), "lease")
        forbidden(await conn.call("extend", lease=a["token"]), "lease")
    # the admin steps in
    await ok(floor.admin, "dispose", lease=a["token"], code="NA")
    await ok(floor.admin, "release", lease=b["token"])
    # unbound again: the holder's uid may finish its work
    c3 = await floor.agent()
    await ok(c3, "dispose", lease=d["token"], code="NA")


async def test_bindings_change_with_a_reload(floor: Floor) -> None:
    c = await floor.agent(f"[agents.alice]\nuids = [{OTHER_UID}]\n")
    forbidden(await c.call("next", agent="alice", campaigns=["t"]))
    await floor.agent(f"[agents.alice]\nuids = [{ME}]\n")
    await ok(c, "next", agent="alice", campaigns=["t"])  # the same connection


# ---------------------------------------------------------------------------- max_count


async def test_a_campaigns_max_count_limits_next(floor: Floor) -> None:
    c = await floor.agent(t="max_count = 2")
    assert {x["name"]: x["max_count"] for x in (await ok(c, "campaigns"))["campaigns"]} \
        == {"t": 2, "u": 500}
    err = refused(await c.call("next", agent="a", campaigns=["t"], count=3), "bad_request",
                  "count")
    assert "2" in err["message"] and "'t'" in err["message"]
    assert len((await ok(c, "next", agent="a", campaigns=["t"], count=2))["leases"]) == 2
    assert len((await ok(c, "next", agent="a", campaigns=["u"], count=3))["leases"]) == 3
    # drawing from both, the smaller limit holds
    refused(await c.call("next", agent="a", campaigns=["u", "t"], count=3), "bad_request",
            "count")
    # also through the login's campaigns
    await ok(c, "agent.login", agent="b", campaigns=["t", "u"])
    refused(await c.call("next", agent="b", count=3), "bad_request", "count")
    await ok(c, "next", agent="b", count=1)


async def test_a_reload_reports_a_changed_max_count(floor: Floor) -> None:
    write_config(floor.root, campaigns=CAMPAIGNS.format(t="max_count = 7", u=""))
    ans = await ok(floor.admin, "config.reload", dry_run=True)
    assert [(x["campaign"], x["settings"]) for x in ans["campaigns"]] == [("t", ["max_count"])]


# ---------------------------------------------------------------------------- record.get


async def test_record_get_held_shows_an_agent_only_records_its_uid_leased(
        floor: Floor) -> None:
    c = await floor.agent('record_get = "held"\n')
    forbidden(await c.call("record.get", record="r0"), "record")
    lease = (await ok(c, "next", agent="a", campaigns=["t"]))["leases"][0]
    rid = lease["record"]["id"]
    await ok(c, "record.get", record=rid)  # held now
    await ok(c, "dispose", lease=lease["token"], code="NA")
    await ok(c, "record.get", record=rid)  # held before
    refused(await c.call("record.get", record="nope"), "not_found", "record")
    await ok(floor.admin, "record.get", record="r5")
    # the default: any record
    c2 = await floor.agent()
    await ok(c2, "record.get", record="r5")
