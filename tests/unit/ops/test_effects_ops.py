"""``dispose`` with codes that add effects to their action, and roll codes whose target
the agent chooses, on the in-memory store: what is stored, what a restart rebuilds, and
that a refused target changes nothing."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.ops.harness import Ops

_OPEN = "\n".join(f'{d} = ["00:00-24:00"]' for d in
                  ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
CAMPS = textwrap.dedent("""
    [resultsets.fx]
    [[resultsets.fx.codes]]
    code = "NA"
    action = "retry"
    delay_s = 60
    [[resultsets.fx.codes]]
    code = "DNCF"
    action = "close_until_reload"
    effects = ["dnc"]
    [[resultsets.fx.codes]]
    code = "DNCALL"
    action = "close"
    effects = ["dnc_all"]
    [[resultsets.fx.codes]]
    code = "ARCHIVE"
    action = "roll"
    effects = ["close_until_reload"]
    roll_campaign = "u"
    roll_list = "archive"
    [[resultsets.fx.codes]]
    code = "PHASE"
    action = "roll"
    roll_targets = ["t", "u"]
    roll_list = "moved"
""") + "".join(textwrap.dedent(f"""
    [campaigns.{name}]
    resultset = "fx"
    legal_window = "00:00-24:00"
    timezone = "UTC"
    [campaigns.{name}.window]
""") + _OPEN + "\n" for name in ("t", "u"))

P1, P2, P3 = "+31612340001", "+31612340002", "+31612340003"


@pytest.fixture
async def fx(tmp_path: Path) -> AsyncIterator[Ops]:
    o = await Ops(tmp_path, campaigns=CAMPS).start()
    yield o
    o.svc.stop_waiting()


async def _lease(ops: Ops, rid: str, phones: list[str], agent: str = "ann",
                 campaign: str = "t") -> dict[str, Any]:
    await ops.ok("records.import", campaign=campaign, list="l",
                 records=[{"id": rid, "phones": phones, "timezone": "UTC"}])
    await ops.ok("agent.login", agent=agent, campaigns=[campaign], teams=[])
    (lease,) = (await ops.ok("next", agent=agent, campaigns=[campaign]))["leases"]
    assert lease["record"]["id"] == rid
    return dict(lease)


def _row(ops: Ops, rid: str) -> dict[str, Any]:
    return ops.store.records[ops.store.ids[rid]]


async def test_dnc_with_final_lists_the_number_and_closes_until_reload(fx: Ops) -> None:
    lease = await _lease(fx, "r1", [P1, P2])
    ans = await fx.ok("dispose", lease=lease["token"], code="DNCF")
    assert (ans["state"], ans["reason"]) == ("closed", "until_reload")
    assert ans["listed"] == [{"number": P1, "list": "dnc"}]
    assert ans["phones"] == [{"number": P1, "status": "dnc"},
                             {"number": P2, "status": "active"}]
    row = _row(fx, "r1")
    assert (row["state"], row["reason"]) == ("closed", "until_reload")
    assert orjson.loads(row["phones"]) == [[P1, "dnc"], [P2, "active"]]
    assert fx.store.listed[P1]["list"] == "dnc"
    await fx.restart()
    assert P1 in fx.svc.engine.listed
    # a record imported after the restart with the same number never dials it
    lease = await _lease(fx, "r2", [P1, P3], agent="bob")
    assert lease["phone"] == P3


async def test_dnc_all_lists_every_number(fx: Ops) -> None:
    lease = await _lease(fx, "r1", [P1, P2])
    ans = await fx.ok("dispose", lease=lease["token"], code="DNCALL")
    assert (ans["state"], ans["reason"]) == ("closed", "final")
    assert {n: fx.store.listed[n]["list"] for n in (P1, P2)} == {P1: "dnc", P2: "dnc"}


async def test_roll_with_close_until_reload_closes_in_the_target(fx: Ops) -> None:
    lease = await _lease(fx, "r1", [P1])
    ans = await fx.ok("dispose", lease=lease["token"], code="ARCHIVE")
    assert (ans["state"], ans["reason"], ans["campaign"], ans["list"]) == \
        ("closed", "until_reload", "u", "archive")
    row = _row(fx, "r1")
    assert (row["campaign"], row["list"], row["state"]) == ("u", "archive", "closed")
    await fx.restart()
    stats = (await fx.ok("stats", campaign="u"))["campaigns"]["u"]
    assert stats["closed"] == {"until_reload": 1}
    # a reload of the target's list brings it back there
    await fx.ok("records.import", campaign="u", list="archive", records=[], reload=True)
    await fx.ok("agent.login", agent="ann", campaigns=["u"], teams=[])
    (got,) = (await fx.ok("next", agent="ann", campaigns=["u"]))["leases"]
    assert got["record"]["id"] == "r1"


async def test_the_agent_chooses_the_roll_target(fx: Ops) -> None:
    lease = await _lease(fx, "r1", [P1])
    ans = await fx.ok("dispose", lease=lease["token"], code="PHASE", campaign="u")
    assert (ans["state"], ans["campaign"], ans["list"], ans["attempts"]) == \
        ("ready", "u", "moved", 0)
    assert _row(fx, "r1")["campaign"] == "u"


@pytest.mark.parametrize(("fields", "words"), [
    ({}, "needs campaign, one of t, u"),
    ({"campaign": "elsewhere"}, "rolls to t, u, not 'elsewhere'"),
])
async def test_a_refused_target_changes_nothing(fx: Ops, fields: dict[str, Any],
                                                words: str) -> None:
    lease = await _lease(fx, "r1", [P1])
    err = await fx.refused("dispose", "bad_request", lease=lease["token"], code="PHASE",
                           **fields)
    assert err["field"] == "campaign" and words in err["message"]
    assert [h for h in fx.store.history if h["code"] == "PHASE"] == []
    assert _row(fx, "r1")["campaign"] == "t"
    # the same lease takes the corrected disposition
    ans = await fx.ok("dispose", lease=lease["token"], code="PHASE", campaign="t")
    assert (ans["campaign"], ans["list"]) == ("t", "moved")


async def test_a_campaign_on_a_code_that_does_not_roll_is_refused(fx: Ops) -> None:
    lease = await _lease(fx, "r1", [P1])
    err = await fx.refused("dispose", "bad_request", lease=lease["token"], code="NA",
                           campaign="u")
    assert err["field"] == "campaign"


async def test_campaigns_op_lists_effects_and_targets(fx: Ops) -> None:
    ans = await fx.ok("campaigns")
    codes = {rc["code"]: rc for rc in ans["campaigns"][0]["codes"]}
    assert codes["DNCF"]["effects"] == ["dnc"]
    assert codes["PHASE"]["requires"]["campaign"] == ["t", "u"]
    assert codes["NA"]["effects"] == [] and codes["NA"]["requires"]["campaign"] == []


async def test_a_disposition_counts_in_the_list_its_history_row_keeps(fx: Ops) -> None:
    """A history row keeps its record's list when written: a retry's row the list the
    record is in, a roll's row the list it rolled to (like its campaign). A report by
    campaign and list counts each where its row says, also after the record moved on."""
    lease = await _lease(fx, "r1", [P1])
    await fx.ok("dispose", lease=lease["token"], code="NA")
    lease = await _lease(fx, "r2", [P2], agent="bob")
    await fx.ok("dispose", lease=lease["token"], code="ARCHIVE")
    rows = {(h["rid"], h["code"]): (h["campaign"], h["list"]) for h in fx.store.history}
    r1, r2 = fx.store.ids["r1"], fx.store.ids["r2"]
    assert rows == {(r1, "NA"): ("t", "l"), (r2, "ARCHIVE"): ("u", "archive")}
    # r1 moves to another list afterwards: its earlier disposition stays in "l"
    await fx.ok("records.import", campaign="t", list="other",
                records=[{"id": "r1", "phones": [P1], "timezone": "UTC"}])
    assert _row(fx, "r1")["list"] == "other"
    day = "2027-01-15"
    ans = await fx.ok("report", **{"from": day, "to": day}, group_by=["campaign", "list"])
    assert [(r["campaign"], r["list"], r["attempts"]) for r in ans["rows"]] == [
        ("t", "l", 1), ("u", "archive", 1)]
