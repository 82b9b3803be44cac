"""Who may reopen a closed record (``reopen_roles`` per result code) and an agent's
callback on a record they view (``agent_schedule`` per campaign), on the memory store."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nextcall.config import load
from nextcall.core.errors import ConfigError
from nextcall.roles import AGENT, SUPERVISOR
from tests.conftest import write_config
from tests.unit.ops.harness import Ops, numbers

WINDOW = "\n".join(f'{d} = ["00:00-24:00"]'
                   for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))


def _campaign(name: str, agent_schedule: bool) -> str:
    return textwrap.dedent(f"""
        [campaigns.{name}]
        resultset = "rr"
        max_attempts = 2
        legal_window = "00:00-24:00"
        agent_schedule = {str(agent_schedule).lower()}
        """) + f"[campaigns.{name}.window]\n{WINDOW}\n"


CONFIG = textwrap.dedent("""
    [resultsets.rr]
    [[resultsets.rr.codes]]
    code = "NI"
    action = "close"
    [[resultsets.rr.codes]]
    code = "WRONG"
    action = "close"
    reopen_roles = ["admin", "supervisor"]
    [[resultsets.rr.codes]]
    code = "NA"
    action = "retry"
    [[resultsets.rr.codes]]
    code = "FINAL"
    action = "close_until_reload"
    [[resultsets.rr.codes]]
    code = "SPEC"
    action = "special"
    reopen_teams = ["nurses"]
    [[resultsets.rr.codes]]
    code = "APPT"
    action = "hold"
    """) + _campaign("t", True) + _campaign("u", False)

AT = "2027-01-15T10:00:00"


@pytest.fixture
async def ops(tmp_path: Path) -> AsyncIterator[Ops]:
    o = await Ops(tmp_path, campaigns=CONFIG).start()
    yield o
    o.svc.stop_waiting()


async def _dispose(ops: Ops, code: str, record: str = "r0", campaign: str = "t",
                   **extra: Any) -> None:
    """Import ``record`` into ``campaign`` and dispose its lease with ``code``."""
    await ops.ok("records.import", campaign=campaign, list="l",
                 records=numbers(1, prefix=record[:-1]))
    (lease,) = (await ops.ok("next", agent="x", campaigns=[campaign]))["leases"]
    await ops.ok("dispose", lease=lease["token"], code=code, **extra)


def _row(ops: Ops, record: str = "r0") -> dict[str, Any]:
    return dict(ops.store.records[ops.store.ids[record]])


# ---------------------------------------------------------------------------- config


def test_effective_reopen_roles_per_code(tmp_path: Path) -> None:
    codes = load(write_config(tmp_path, campaigns=CONFIG)).campaigns["t"].codes
    assert {c: rc.reopen_roles for c, rc in codes.items()} == {
        "NI": ("admin",), "WRONG": ("supervisor", "admin"), "NA": ("supervisor", "admin"),
        "FINAL": ("supervisor", "admin"), "SPEC": ("supervisor", "admin"), "APPT": ()}


@pytest.mark.parametrize(("code", "problem"), [
    ('action = "callback"\nreopen_roles = ["admin"]', "never closes a record"),
    ('action = "hold"\nreopen_roles = ["admin"]', "never closes a record"),
    ('action = "close"\nreopen_roles = ["agent", "admin"]',
     "'agent' is not a role that reopens records"),
    ('action = "close"\nreopen_roles = ["supervisor"]', 'list "admin"'),
    ('action = "close"\nreopen_roles = []', 'list "admin"'),
])
def test_check_config_refuses_reopen_roles_that_mean_nothing(tmp_path: Path, code: str,
                                                            problem: str) -> None:
    bad = CONFIG.replace('code = "NI"\naction = "close"', f'code = "NI"\n{code}')
    with pytest.raises(ConfigError) as exc:
        load(write_config(tmp_path, campaigns=bad))
    got = {where.split(": ", 1)[-1]: msg for where, msg in exc.value.problems}
    assert list(got) == ["resultsets.rr.codes[0].reopen_roles"], got
    assert problem in got["resultsets.rr.codes[0].reopen_roles"]


def test_a_close_until_reload_effect_gives_a_code_reopen_roles(tmp_path: Path) -> None:
    """A roll code that also closes its record until the list is reloaded closes it as a
    close_until_reload code does: the same default, and it may name its own roles."""
    roll = 'code = "NI"\naction = "roll"\nroll_campaign = "u"\neffects = ["close_until_reload"]'
    cfg = CONFIG.replace('code = "NI"\naction = "close"', roll)
    codes = load(write_config(tmp_path, campaigns=cfg)).campaigns["t"].codes
    assert codes["NI"].reopen_roles == ("supervisor", "admin")
    cfg = cfg.replace(roll, roll + '\nreopen_roles = ["admin"]')
    codes = load(write_config(tmp_path, campaigns=cfg)).campaigns["t"].codes
    assert codes["NI"].reopen_roles == ("admin",)


def test_agent_schedule_is_a_campaign_setting(tmp_path: Path) -> None:
    s = load(write_config(tmp_path, campaigns=CONFIG))
    assert (s.campaigns["t"].agent_schedule, s.campaigns["u"].agent_schedule) == (True,
                                                                                  False)
    with pytest.raises(ConfigError) as exc:
        load(write_config(tmp_path, campaigns=CONFIG.replace(
            "agent_schedule = true", 'agent_schedule = "maybe"')))
    assert [w.split(": ", 1)[-1] for w, _ in exc.value.problems] == \
        ["campaigns.t.agent_schedule"]


# ---------------------------------------------------------------------------- reopen_roles


async def test_close_defaults_to_admin_only_on_every_path(ops: Ops) -> None:
    await _dispose(ops, "NI")
    sup = ops.peer(SUPERVISOR)
    err = await ops.refused("record.reopen", "forbidden", sup, record="r0")
    assert err["field"] == "record" and "'NI'" in err["message"]
    assert "admin" in err["message"] and "reopen_roles" in err["message"]
    err = await ops.refused("callback.schedule", "forbidden", sup, record="r0", at=AT)
    assert err["field"] == "record"
    assert _row(ops)["state"] == "closed" and len(ops.store.history) == 1
    await ops.ok("record.reopen", record="r0")
    assert _row(ops)["state"] == "ready"


async def test_a_code_may_let_supervisors_reopen(ops: Ops) -> None:
    await _dispose(ops, "WRONG")
    sup = ops.peer(SUPERVISOR)
    ans = await ops.ok("record.reopen", sup, record="r0", note="wrong code")
    assert ans["record"]["state"] == "ready"
    assert ops.store.history[-1]["agent"] == f"supervisor:{sup.uid}"
    await ops.refused("record.reopen", "forbidden", ops.peer(AGENT), record="r0")


async def test_supervisors_keep_what_the_defaults_gave_them(ops: Ops) -> None:
    """close_until_reload, special and an exhausted retry: supervisors reopen them."""
    await _dispose(ops, "FINAL", "a0")
    await _dispose(ops, "SPEC", "b0")
    await _dispose(ops, "NA", "c0")
    (lease,) = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"]
    await ops.ok("dispose", lease=lease["token"], code="NA")
    assert _row(ops, "c0")["reason"] == "exhausted"
    sup = ops.peer(SUPERVISOR)
    await ops.ok("record.reopen", sup, record="a0")
    await ops.ok("callback.schedule", sup, record="b0", at=AT, timezone="UTC")
    await ops.ok("record.reopen", sup, record="c0")


async def test_record_reopen_of_a_record_not_closed_stays_with_admins(ops: Ops) -> None:
    await _dispose(ops, "APPT", appointment={"at": AT})
    err = await ops.refused("record.reopen", "forbidden", ops.peer(SUPERVISOR), record="r0")
    assert err["field"] == "record" and "held" in err["message"]
    await ops.ok("record.reopen", record="r0")


async def test_the_closing_code_decides_after_a_config_change(tmp_path: Path) -> None:
    """A record closed by a code that was since removed falls back to its close reason's
    default (final: admin only)."""
    ops = await Ops(tmp_path, campaigns=CONFIG).start()
    try:
        await _dispose(ops, "WRONG")
        ops.settings = load(write_config(tmp_path, campaigns=CONFIG.replace(
            '"WRONG"', '"WRONG2"')))
        ops.svc.settings = ops.settings
        await ops.restart()
        await ops.refused("record.reopen", "forbidden", ops.peer(SUPERVISOR), record="r0")
    finally:
        ops.svc.stop_waiting()


async def test_an_agent_of_the_special_team_still_reopens_by_callback(ops: Ops) -> None:
    await _dispose(ops, "SPEC")
    await ops.ok("agent.login", agent="nina", campaigns=["t"], teams=["nurses"])
    await ops.ok("agent.login", agent="al", campaigns=["t"], teams=["floor"])
    err = await ops.refused("callback.schedule", "forbidden", ops.peer(AGENT), record="r0",
                            at=AT, agent="al")
    assert err["field"] == "agent" and "reopen_teams" in err["message"]
    await ops.ok("callback.schedule", ops.peer(AGENT), record="r0", at=AT, agent="nina")
    assert ops.store.history[-1]["agent"] == "nina"


# ---------------------------------------------------------------------------- agent_schedule


async def test_an_agent_gives_a_ready_record_a_callback_and_moves_their_own(ops: Ops
                                                                            ) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(2))
    await ops.ok("agent.login", agent="al", campaigns=["t"])
    await ops.ok("agent.login", agent="bo", campaigns=["t"])
    agent = ops.peer(AGENT)
    ans = await ops.ok("callback.schedule", agent, record="r0", at=AT, agent="al",
                       reason="asked by e-mail")
    rec = ans["record"]
    assert (rec["state"], rec["callback"]["owner"]) == ("callback", "al")
    assert (ops.store.history[-1]["code"], ops.store.history[-1]["agent"]) == \
        ("@callback", "al")
    # her own callback she moves; bo may not touch it
    await ops.ok("callback.schedule", agent, record="r0", at="2027-01-16T10:00:00",
                 agent="al", scope="personal")
    err = await ops.refused("callback.schedule", "forbidden", agent, record="r0", at=AT,
                            agent="bo")
    assert err["field"] == "record" and "'al'" in err["message"]
    # scope rules are unchanged: a team callback needs a team
    err = await ops.refused("callback.schedule", "bad_request", agent, record="r1", at=AT,
                            agent="al", scope="team")
    assert err["field"] == "team"


async def test_an_agent_needs_the_campaign_and_a_login(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    await ops.ok("records.import", campaign="u", list="l", records=numbers(1, prefix="u"))
    await ops.ok("agent.login", agent="al", campaigns=["u"])
    agent = ops.peer(AGENT)
    err = await ops.refused("callback.schedule", "forbidden", agent, record="r0", at=AT,
                            agent="al")
    assert err["field"] == "agent" and "logged in to campaign 't'" in err["message"]
    err = await ops.refused("callback.schedule", "forbidden", agent, record="r0", at=AT)
    assert err["field"] == "agent"
    err = await ops.refused("callback.schedule", "forbidden", agent, record="u0", at=AT,
                            agent="al")
    assert "agent_schedule" in err["message"]
    assert _row(ops)["state"] == "ready" and ops.store.history == []


async def test_closed_held_and_leased_records_stay_out_of_an_agents_reach(ops: Ops
                                                                          ) -> None:
    await _dispose(ops, "NI", "c0")
    await _dispose(ops, "APPT", "h0", appointment={"at": AT})
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1, prefix="l"))
    await ops.ok("next", agent="x", campaigns=["t"])  # leases l0
    await ops.ok("agent.login", agent="al", campaigns=["t"])
    agent = ops.peer(AGENT)
    for record in ("c0", "h0"):
        err = await ops.refused("callback.schedule", "forbidden", agent, record=record,
                                at=AT, agent="al")
        assert err["field"] == "record", err
    await ops.refused("callback.schedule", "conflict", agent, record="l0", at=AT,
                      agent="al")
    assert [_row(ops, r)["state"] for r in ("c0", "h0", "l0")] == ["closed", "held",
                                                                  "ready"]


async def test_a_reload_turns_agent_schedule_off(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    await ops.ok("agent.login", agent="al", campaigns=["t"])
    camps = Path(ops.settings.path).parent / "camps.toml"
    camps.write_text(camps.read_text().replace("agent_schedule = true",
                                               "agent_schedule = false"))
    dry = await ops.ok("config.reload", dry_run=True)
    assert [(c["campaign"], c["settings"]) for c in dry["campaigns"]] == \
        [("t", ["agent_schedule"])]
    await ops.ok("config.reload")
    err = await ops.refused("callback.schedule", "forbidden", ops.peer(AGENT), record="r0",
                            at=AT, agent="al")
    assert "agent_schedule" in err["message"]
