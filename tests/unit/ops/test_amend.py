"""Audit per hand-out and amendments (``amend``) on the in-memory store.

Each action amended to each other action must leave the record exactly as a twin record
disposed directly with the new code at the same instant: the reference is the daemon's
own ``dispose``, not a second copy of the rules.
"""

from __future__ import annotations

import asyncio
import itertools
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nextcall.roles import AGENT, SUPERVISOR
from nextcall.storage.current import current_rows
from tests.unit.ops.harness import Ops

WINDOW = "\n".join(f'{d} = ["00:00-24:00"]' for d in
                   ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))

CAMPAIGNS = textwrap.dedent("""
    [resultsets.all]
    [[resultsets.all.codes]]
    code = "RETRY"
    action = "retry"
    delay_s = 3600
    [[resultsets.all.codes]]
    code = "AGAIN"
    action = "retry"
    delay_s = 0
    [[resultsets.all.codes]]
    code = "CB"
    action = "callback"
    contact_priority = 4
    scope = "personal"
    [[resultsets.all.codes]]
    code = "CLOSE"
    action = "close"
    [[resultsets.all.codes]]
    code = "CUR"
    action = "close_until_reload"
    [[resultsets.all.codes]]
    code = "HOLD"
    action = "hold"
    [[resultsets.all.codes]]
    code = "SPEC"
    action = "special"
    [[resultsets.all.codes]]
    code = "DNC"
    action = "dnc"
    [[resultsets.all.codes]]
    code = "RM"
    action = "remove_number"
    [[resultsets.all.codes]]
    code = "BLK"
    action = "block_number"
    [[resultsets.all.codes]]
    code = "ROLL"
    action = "roll"
    roll_campaign = "u"
    roll_list = "rolled"
    [campaigns.t]
    resultset = "all"
    max_attempts = 5
    legal_window = "00:00-24:00"
    amend_grace_s = 600
    [campaigns.t.window]
    WINDOW
    [campaigns.u]
    resultset = "all"
    legal_window = "00:00-24:00"
    [campaigns.u.window]
    WINDOW
""").replace("WINDOW", WINDOW)

#: one code per action, with what its disposition must carry
ACTIONS: dict[str, dict[str, Any]] = {
    "RETRY": {}, "CB": {"callback": {"at": "2027-01-16T10:00:00", "timezone": "UTC"}},
    "CLOSE": {}, "CUR": {}, "HOLD": {"appointment": {"at": "2027-01-20T10:00:00"}},
    "SPEC": {}, "DNC": {}, "RM": {}, "BLK": {}, "ROLL": {},
}


@pytest.fixture
async def amends(tmp_path: Path) -> Any:
    o = await Ops(tmp_path, campaigns=CAMPAIGNS).start()
    yield o
    o.svc.stop_waiting()


def _records(prefix: str, n: int, first: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "timezone": "UTC",
             "phones": [f"+3161234{2 * (first + i):04d}", f"+3161234{2 * (first + i) + 1:04d}"]}
            for i in range(n)]


async def _lease(ops: Ops, agent: str = "a") -> dict[str, Any]:
    (lease,) = (await ops.ok("next", agent=agent, campaigns=["t"]))["leases"]
    return lease


def _shape(rec: dict[str, Any]) -> tuple[Any, ...]:
    """What an amendment must get right, numbers by position (twins differ in them)."""
    cb = rec.get("callback")
    return (rec["state"], rec.get("reason"), rec["attempts"], rec.get("due_at"),
            rec["campaign"], rec["list"], [p["status"] for p in rec["phones"]],
            rec.get("owner"), cb and (cb["at"], cb["scope"], cb["owner"]))


def _listed(ops: Ops, rec: dict[str, Any]) -> list[str | None]:
    return [ops.svc.engine.listed.get(p["number"]) for p in rec["phones"]]


@pytest.mark.parametrize(("old", "new"), [p for p in itertools.permutations(ACTIONS, 2)])
async def test_each_action_amended_to_each_other(amends: Ops, old: str, new: str) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    assert lease["record"]["id"] == "r0"
    await ops.ok("dispose", lease=lease["token"], code=old, **ACTIONS[old])
    ans = await ops.ok("amend", lease=lease["token"], code=new, reason="wrong key",
                       **ACTIONS[new])
    assert ans["amended"]["code"] == old and ans["code"] == new
    # the twin: disposed with the new code at the same instant
    await ops.ok("records.import", campaign="t", list="l", records=_records("x", 1, 50))
    twin_lease = await _lease(ops)
    assert twin_lease["record"]["id"] == "x0"
    await ops.ok("dispose", lease=twin_lease["token"], code=new, **ACTIONS[new])
    got = (await ops.ok("record.get", record="r0"))["record"]
    twin = (await ops.ok("record.get", record="x0"))["record"]
    assert _shape(got) == _shape(twin)
    assert _listed(ops, got) == _listed(ops, twin)
    codes = [(h["code"], h["amends"], h["replaced_by"]) for h in got["history"]]
    first, second = got["history"]
    assert codes == [(old, None, second["entry"]), (new, first["entry"], None)]
    assert second["amend_reason"] == "wrong key" and second["lease"] == first["lease"]
    ops.svc.engine.check_invariants()
    # the amended record behaves as the twin: both are handed out again, or neither
    ops.clock.t += 10 * 86_400
    out = (await ops.ok("next", agent="a", campaigns=["t", "u"], count=5))["leases"]
    assert sorted(lz["record"]["id"][0] for lz in out) in ([], ["r", "x"])


async def test_the_audit_facts_of_each_hand_out(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 2))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="DNC")
    lease2 = await _lease(ops)
    got = (await ops.ok("record.get", record=lease2["record"]["id"]))["record"]
    (audit,) = [x["audit"] for x in got["leases"]]
    assert audit == {"local_time": "2027-01-15T08:00:00+00:00", "timezone": "UTC",
                     "calling_window": "00:00-24:00", "legal_window": "00:00-24:00",
                     "attempts": 0, "max_attempts": 5, "dnc_list_version": 1,
                     "block_list_version": 0, "selection": "pool"}
    assert ops.store.versions == {"dnc": 1, "block": 0}
    # the versions survive a restart: the next hand-out is checked against version 1
    await ops.ok("release", lease=lease2["token"])
    await ops.restart()
    lease3 = await _lease(ops)
    row = ops.store.leases[int(lease3["token"].split(".")[0])]
    assert (row["dnc_version"], row["attempts"], row["reason"]) == (1, 0, "pool")


async def test_a_callback_hand_out_names_its_selection_and_override(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="CB", callback={
        "at": "2027-01-15T09:00:00", "timezone": "Europe/Amsterdam",
        "override_window": True})
    ops.clock.t += 3600
    lease2 = await _lease(ops)
    got = (await ops.ok("record.get", record="r0"))["record"]
    audit = got["leases"][-1]["audit"]
    assert lease2["record"]["id"] == "r0"
    assert audit["selection"] == "personal_callback" and audit["calling_window"] == "override"
    assert audit["attempts"] == 1


async def test_amending_a_dnc_takes_the_number_off_the_list(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="DNC")
    assert lease["phone"] in ops.svc.engine.listed
    await ops.ok("amend", lease=lease["token"], code="AGAIN", reason="misclick")
    assert lease["phone"] not in ops.svc.engine.listed
    assert lease["phone"] not in ops.store.listed
    assert ops.store.versions["dnc"] == 2  # listed, then unlisted
    again = await _lease(ops)  # a retry dials the next number, then this one again
    assert again["record"]["id"] == "r0"
    await ops.ok("dispose", lease=again["token"], code="AGAIN")
    assert (await _lease(ops))["phone"] == lease["phone"]


async def test_amending_a_dnc_brings_back_the_records_it_withdrew(amends: Ops) -> None:
    """Another record whose one number the DNC listed left circulation (no_number) at
    once; the amendment that takes the number off the list brings it back."""
    ops = amends
    one = "+31612349998"
    await ops.ok("records.import", campaign="t", list="l", records=[
        {"id": "a", "timezone": "UTC", "phones": [one], "priority": 9},
        {"id": "b", "timezone": "UTC", "phones": [one]}])
    lease = await _lease(ops)
    assert lease["record"]["id"] == "a"
    await ops.ok("dispose", lease=lease["token"], code="DNC")
    rid = ops.store.ids["b"]
    assert ops.svc.engine.slot_of(rid) == "no_number"
    await ops.ok("amend", lease=lease["token"], code="AGAIN", reason="misclick")
    assert ops.svc.engine.slot_of(rid) == "due"
    got = (await ops.ok("next", agent="a", campaigns=["t"], count=2))["leases"]
    assert "b" in {lz["record"]["id"] for lz in got}


async def test_refused_when_the_record_was_leased_again(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="AGAIN")
    again = await _lease(ops)
    err = await ops.refused("amend", "moved_on", lease=lease["token"], code="CLOSE",
                            reason="x")
    assert "leased again" in err["message"] and err["field"] == "lease"
    await ops.ok("release", lease=again["token"])  # given back unchanged: still moved on
    await ops.refused("amend", "moved_on", record="r0", code="CLOSE", reason="x")


async def test_refused_after_a_later_disposition_or_reopen(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    first = await _lease(ops)
    await ops.ok("dispose", lease=first["token"], code="AGAIN")
    second = await _lease(ops)
    await ops.ok("dispose", lease=second["token"], code="CLOSE")
    err = await ops.refused("amend", "moved_on", lease=first["token"], code="RETRY",
                            reason="x")
    assert "later history entry" in err["message"]
    await ops.ok("record.reopen", record="r0")  # closed by someone else, then reopened
    await ops.refused("amend", "moved_on", lease=second["token"], code="RETRY", reason="x")
    # the latest disposition of the record is the one a record-wide amend finds
    await ops.refused("amend", "moved_on", record="r0", code="RETRY", reason="x")


async def test_refused_after_a_roll(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="ROLL")
    (rolled,) = (await ops.ok("next", agent="a", campaigns=["u"]))["leases"]
    await ops.ok("dispose", lease=rolled["token"], code="RETRY")
    await ops.refused("amend", "moved_on", lease=lease["token"], code="CLOSE", reason="x")


async def test_the_agent_who_disposed_may_amend_within_the_grace(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 2))
    lease = await _lease(ops, "a")
    await ops.ok("dispose", lease=lease["token"], code="RETRY")
    ops.clock.t += 599
    await ops.refused("amend", "forbidden", ops.peer(AGENT), lease=lease["token"],
                      code="AGAIN", reason="x", agent="b")
    await ops.refused("amend", "forbidden", ops.peer(AGENT), lease=lease["token"],
                      code="AGAIN", reason="x")
    ans = await ops.ok("amend", ops.peer(AGENT), lease=lease["token"], code="CB",
                       reason="the callee asked for a call back", agent="a",
                       callback={"at": "2027-01-16T10:00:00", "timezone": "UTC"})
    assert ans["record"]["state"] == "callback" and ans["record"]["owner"] == "a"
    ops.clock.t += 2  # 601 s after the disposition: an amendment does not restart it
    err = await ops.refused("amend", "amend_grace_over", ops.peer(AGENT),
                            lease=lease["token"], code="RETRY", reason="x", agent="a")
    assert "600 s" in err["message"]
    ans = await ops.ok("amend", ops.peer(SUPERVISOR), lease=lease["token"], code="RETRY",
                       reason="supervisor's call")
    assert ans["record"]["state"] == "ready"
    history = ops.store.history
    assert [h["code"] for h in history] == ["RETRY", "CB", "RETRY"]
    assert [h["amends"] for h in history] == [None, 1, 2]


async def test_reopening_through_an_amendment_needs_the_closing_codes_roles(
        amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="CLOSE")
    # close is reopened by an admin only: a supervisor may not amend it into a retry
    err = await ops.refused("amend", "forbidden", ops.peer(SUPERVISOR),
                            lease=lease["token"], code="RETRY", reason="x")
    assert "reopen_roles" in err["message"]
    # but may amend it into another closing code
    ans = await ops.ok("amend", ops.peer(SUPERVISOR), lease=lease["token"], code="SPEC",
                       reason="special case")
    assert ans["record"]["reason"] == "special"


async def test_an_amended_callback_is_gone_and_the_history_counts_once(amends: Ops) -> None:
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="CB", **ACTIONS["CB"])
    assert ops.svc.engine.callback_rids()
    await ops.ok("amend", lease=lease["token"], code="RETRY", reason="no callback promised")
    assert ops.svc.engine.callback_rids() == []
    # reports and metrics read the current history: the latest version only
    assert [h["code"] for h in current_rows(ops.store.history)] == ["RETRY"]
    await ops.refused("amend", "not_found", lease="999", code="RETRY", reason="x")
    await ops.refused("amend", "bad_request", code="RETRY", reason="x")
    await ops.refused("amend", "bad_request", lease=lease["token"], record="r0",
                      code="RETRY", reason="x")


async def test_two_amendments_at_once_replace_the_disposition_once(
        amends: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the history before either writes (the read yields, as a database read
    does): the second is refused, so the disposition has one current version."""
    ops = amends
    await ops.ok("records.import", campaign="t", list="l", records=_records("r", 1))
    lease = await _lease(ops)
    await ops.ok("dispose", lease=lease["token"], code="RETRY")
    read = ops.store.get_record

    async def slow_read(record_id: str) -> Any:
        await asyncio.sleep(0)
        return await read(record_id)

    monkeypatch.setattr(ops.store, "get_record", slow_read)
    sup = ops.peer(SUPERVISOR)
    got = await asyncio.gather(
        ops.call("amend", sup, lease=lease["token"], code="CLOSE", reason="one"),
        ops.call("amend", sup, lease=lease["token"], code="RETRY", reason="two"))
    assert sorted(g["ok"] for g in got) == [False, True]
    (refused,) = [g for g in got if not g["ok"]]
    assert refused["error"]["code"] == "moved_on"
    rows = [h for h in ops.store.history if h.get("lid") is not None]
    replaced = {h.get("amends") for h in rows} - {None}
    assert len([h for h in rows if h["hid"] not in replaced]) == 1
