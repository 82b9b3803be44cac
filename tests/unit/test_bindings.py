"""Agent bindings: who may act as which agent name (``roles.may_act_as``), how the two
config shapes (``[agents.NAME] uids/gids``, ``[auth.acts_for]``) merge into one relation,
the ``record_get`` rule, a campaign's ``max_count``, and every bad value reported with its
key path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from nextcall.bindings import Binding, Bindings
from nextcall.config import AgentCfg, AuthCfg, DaemonCfg, Settings, load
from nextcall.core.errors import ConfigError, Forbidden
from nextcall.ops import REGISTRY
from nextcall.roles import ADMIN, AGENT, SUPERVISOR, Peer, may_act_as, may_read_record

#: uids and gids no test machine gives anyone (so the user database adds no groups)
DIALER, ALICE, BOB, STRANGER = 4_000_001, 4_000_002, 4_000_003, 4_000_004
TEAM_GID, OTHER_GID = 4_100_001, 4_100_002


def bindings(acts_for: dict[int, list[str]] | None = None, **agents: AgentCfg
             ) -> Bindings | None:
    return Bindings.of(AuthCfg(acts_for=acts_for or {}), agents)


def bound(acts_for: dict[int, list[str]] | None = None, **agents: AgentCfg) -> Bindings:
    b = bindings(acts_for, **agents)
    assert b is not None
    return b


def peer(uid: int, role: str = AGENT, gid: int = OTHER_GID) -> Peer:
    return Peer(conn_id=1, pid=1, uid=uid, gid=gid, role=role)


FLOOR = bound({DIALER: ["d1", "d2"]},
                 alice=AgentCfg(uids=[ALICE]),
                 bob=AgentCfg(uids=[BOB], email="bob@example.com"),
                 team=AgentCfg(gids=[TEAM_GID]),
                 carol=AgentCfg(email="carol@example.com"))


# ---------------------------------------------------------------------------- the relation


def test_both_shapes_merge_into_one_relation_indexed_both_ways() -> None:
    b = bound({DIALER: ["alice", "d1"]}, alice=AgentCfg(uids=[ALICE], gids=[TEAM_GID]))
    assert b.by_name == {"alice": Binding(frozenset({ALICE, DIALER}), frozenset({TEAM_GID})),
                         "d1": Binding(frozenset({DIALER}), frozenset())}
    assert b.by_uid == {ALICE: frozenset({"alice"}), DIALER: frozenset({"alice", "d1"})}


def test_nothing_bound_is_none_and_an_email_alone_binds_nothing() -> None:
    assert bindings() is None
    assert bindings(carol=AgentCfg(email="carol@example.com")) is None
    assert bindings(team=AgentCfg(gids=[TEAM_GID])) is not None
    assert Settings(path="x", daemon=DaemonCfg(), auth=AuthCfg(), campaigns={}
                    ).bindings is None


# ---------------------------------------------------------------------------- may_act_as

ALLOWED = [
    (DIALER, "d1"), (DIALER, "d2"),  # a bound uid acts as its names
    (ALICE, "alice"), (BOB, "bob"),
    (STRANGER, "carol"), (STRANGER, "anyone"),  # unbound uid, unbound name: as today
]
REFUSED = [
    (ALICE, "bob"),  # a bound name serves only its uids
    (DIALER, "alice"),
    (ALICE, "carol"),  # a bound uid acts only as its names, even unbound ones
    (DIALER, "anyone"),
    (STRANGER, "alice"),  # an unbound uid may not take a bound name
    (STRANGER, "d1"),
]


@pytest.mark.parametrize(("uid", "agent"), ALLOWED)
def test_an_agent_peer_may_act_as_its_own_and_unbound_names(uid: int, agent: str) -> None:
    may_act_as(peer(uid), agent, FLOOR)


@pytest.mark.parametrize(("uid", "agent"), REFUSED)
def test_an_agent_peer_is_refused_names_bound_elsewhere(uid: int, agent: str) -> None:
    with pytest.raises(Forbidden) as exc:
        may_act_as(peer(uid), agent, FLOOR)
    assert exc.value.field == "agent"
    assert repr(agent) in exc.value.message


def test_the_refusal_names_the_field_the_caller_gives() -> None:
    with pytest.raises(Forbidden) as exc:
        may_act_as(peer(STRANGER), "alice", FLOOR, "lease")
    assert exc.value.field == "lease"
    assert exc.value.to_wire()["code"] == "forbidden"


@pytest.mark.parametrize("role", [SUPERVISOR, ADMIN])
@pytest.mark.parametrize(("uid", "agent"), REFUSED)
def test_supervisors_and_admins_act_for_any_agent(role: str, uid: int, agent: str) -> None:
    may_act_as(peer(uid, role), agent, FLOOR)


def test_a_group_bound_name_serves_the_groups_members() -> None:
    # by primary gid (all a peer shows when the kernel reported no groups)
    may_act_as(peer(STRANGER, gid=TEAM_GID), "team", FLOOR)
    # by a supplementary group of the connecting process
    member = peer(STRANGER, gid=OTHER_GID)
    member.groups = frozenset({OTHER_GID, TEAM_GID})
    may_act_as(member, "team", FLOOR)
    with pytest.raises(Forbidden):
        may_act_as(peer(STRANGER, gid=OTHER_GID), "team", FLOOR)


def test_a_group_does_not_confine_its_members_but_extends_a_bound_uid() -> None:
    # a member of the team group stays free to use unbound names
    may_act_as(peer(STRANGER, gid=TEAM_GID), "anyone", FLOOR)
    # alice (bound to "alice") may also use the name bound to her group
    may_act_as(peer(ALICE, gid=TEAM_GID), "team", FLOOR)
    with pytest.raises(Forbidden):
        may_act_as(peer(ALICE, gid=OTHER_GID), "team", FLOOR)


def test_without_bindings_nothing_is_checked() -> None:
    p = peer(STRANGER, gid=TEAM_GID)
    may_act_as(p, "alice", None)
    assert p.groups is None


def test_every_op_whose_request_names_an_agent_checks_its_binding() -> None:
    checked = {name for name, spec in REGISTRY.items() if spec.agent_field is not None}
    assert checked == {name for name, spec in REGISTRY.items()
                       if "agent" in spec.model.model_fields}
    assert checked == {"campaigns", "agent.login", "agent.logout", "next", "dispose",
                       "release", "extend", "callbacks", "callback.schedule", "subscribe",
                       "explain", "amend", "report"}


# ---------------------------------------------------------------------------- record_get


def leases(*uids: int, agent: str = "alice") -> list[dict[str, Any]]:
    """Lease rows as ``record.get`` reads them, taken by these uids as ``agent``."""
    return [{"uid": uid, "agent": agent} for uid in uids]


def test_record_get_held_confines_agent_peers_to_records_their_uid_leased() -> None:
    held = AuthCfg(record_get="held")
    may_read_record(peer(ALICE), leases(BOB, ALICE), held, None)
    with pytest.raises(Forbidden) as exc:
        may_read_record(peer(ALICE), leases(BOB), held, None)
    assert exc.value.field == "record"
    with pytest.raises(Forbidden):
        may_read_record(peer(ALICE), [], held, None)
    may_read_record(peer(ALICE, SUPERVISOR), [], held, None)
    may_read_record(peer(ALICE), [], AuthCfg(), None)  # the default: any record


# ---------------------------------------------------------------------------- config


def write(tmp: Path, main: str) -> Path:
    p = tmp / "main.toml"
    p.write_text(textwrap.dedent(main) + textwrap.dedent("""
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "A"
        action = "close"
    """))
    return p


def test_bindings_and_max_count_load_from_config(tmp_path: Path) -> None:
    s = load(write(tmp_path, f"""
        [daemon]
        max_count = 200
        [auth]
        record_get = "held"
        [auth.acts_for]
        {DIALER} = ["d1", "alice"]
        [agents.alice]
        uids = [{ALICE}]
        gids = [{TEAM_GID}]
        [campaigns.c]
        resultset = "s"
        max_count = 20
        [campaigns.d]
        resultset = "s"
    """))
    assert s.auth.record_get == "held"
    assert s.bindings.by_uid == {DIALER: frozenset({"d1", "alice"}),
                                 ALICE: frozenset({"alice"})}
    assert s.bindings.by_name["alice"].gids == frozenset({TEAM_GID})
    assert s.campaigns["c"].max_count == 20
    assert s.campaigns["d"].max_count is None  # the daemon's limit applies


def test_bad_binding_values_are_reported_with_their_key_paths(tmp_path: Path) -> None:
    p = write(tmp_path, """
        [daemon]
        max_count = 100
        [auth]
        record_get = "mine"
        [auth.acts_for]
        abc = ["d1"]
        -5 = ["d1"]
        1001 = []
        1002 = ["ok", "bad\\u0001name", ""]
        1003 = "d1"
        [agents.alice]
        uids = ["alice"]
        gids = [-1]
        [agents.bob]
        uids = [4294967295]
        [campaigns.c]
        resultset = "s"
        max_count = 101
        [campaigns.d]
        resultset = "s"
        max_count = 0
    """)
    with pytest.raises(ConfigError) as exc:
        load(p)
    where = {path.removeprefix(f"{p}: ") for path, _ in exc.value.problems}
    assert where == {
        "auth.record_get", "auth.acts_for.abc", "auth.acts_for.-5", "auth.acts_for.1001",
        "auth.acts_for.1002[1]", "auth.acts_for.1002[2]", "auth.acts_for.1003",
        "agents.alice.uids[0]", "agents.alice.gids[0]", "agents.bob.uids[0]",
        "campaigns.c.max_count", "campaigns.d.max_count"}
    msgs = dict(exc.value.problems)
    assert msgs[f"{p}: campaigns.c.max_count"] == "must be at most [daemon] max_count (100)"


def test_acts_for_is_main_file_only_like_all_of_auth(tmp_path: Path) -> None:
    (tmp_path / "team.toml").write_text(textwrap.dedent(f"""
        [agents.alice]
        uids = [{ALICE}]
    """))
    s = load(write(tmp_path, 'include = ["team.toml"]\n'))
    assert s.bindings.by_uid == {ALICE: frozenset({"alice"})}  # [agents.*] may be included
    (tmp_path / "team.toml").write_text(f'[auth.acts_for]\n{DIALER} = ["d1"]\n')
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "main.toml")
    assert [m for _, m in exc.value.problems] == ["only the main file may set this"]
