"""Leases as every op sees them, on the in-memory store: expiry as of each op's own
instant, the expiry timer, and a disposition that follows the number dialled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nextcall.core.records import PHONE_ACTIVE
from tests.unit.ops.harness import Ops, numbers

A, B, C = "+31612340001", "+31612340002", "+31612340003"
LEASE_S = 60  # tests/conftest.py


async def _leased(ops: Ops, phones: list[str] | None = None) -> dict[str, Any]:
    rows = [{**numbers(1)[0], "phones": phones}] if phones else numbers(1)
    await ops.ok("records.import", campaign="t", list="l", records=rows)
    (lease,) = (await ops.ok("next", agent="ann", campaigns=["t"]))["leases"]
    return dict(lease)


#: every op, in a valid shape; none but those of the call cycle touches the lease itself
EVERY_OP: list[tuple[str, dict[str, Any]]] = [
    ("ping", {}), ("campaigns", {}), ("stats", {}), ("callbacks", {}),
    ("agent.login", {"agent": "bob", "campaigns": ["t"]}),
    ("agent.logout", {"agent": "ann"}), ("next", {"agent": "bob", "campaigns": ["t"]}),
    ("record.get", {"record": "r0"}), ("record.reopen", {"record": "r0"}),
    ("callback.schedule", {"record": "r0", "at": "2027-01-15T12:00:00Z"}),
    ("resolution", {}), ("records.import", {"campaign": "t", "list": "l",
                                            "records": numbers(1)}),
    ("config.reload", {"dry_run": True}), ("subscribe", {"agent": "bob"}),
    ("records", {"campaign": "t"}),
    ("explain", {"record": "r0"}),
    ("release", {"lease": "99.x"}), ("extend", {"lease": "99.x"}),
    ("dispose", {"lease": "99.x", "code": "NA"}),
    ("amend", {"lease": "99.x", "code": "NA", "reason": "x"}),
    ("report", {"from": "2027-01-15", "to": "2027-01-15"}),
]


def test_the_list_covers_every_op() -> None:
    from nextcall.ops import REGISTRY
    assert {op for op, _ in EVERY_OP} == set(REGISTRY)


@pytest.mark.parametrize("op, fields", EVERY_OP, ids=[op for op, _ in EVERY_OP])
async def test_every_op_sees_the_leases_as_of_its_own_instant(ops: Ops, op: str,
                                                             fields: dict[str, Any]) -> None:
    await ops.ok("agent.login", agent="ann", campaigns=["t"])
    lid = int((await _leased(ops))["token"].split(".")[0])
    assert list(ops.svc.engine.leases) == [lid]
    ops.clock.t += LEASE_S + 1
    await ops.call(op, **fields)
    assert lid not in ops.svc.engine.leases  # (``next`` may lease the record again)
    assert ops.store.leases[lid]["end"] == "expired"


async def test_a_disposition_follows_the_dialled_number_when_numbers_move(ops: Ops) -> None:
    """Numbers do not change under a lease (records.import refuses leased records); if
    they did, the disposition is still about the number dialled, never another."""
    lease = await _leased(ops, [A, B])
    assert lease["phone"] == A
    live = next(iter(ops.svc.engine.leases.values()))
    live.record.phones = [[C, PHONE_ACTIVE], [B, PHONE_ACTIVE], [A, PHONE_ACTIVE]]
    await ops.ok("dispose", lease=lease["token"], code="NA")
    (h,) = [h for h in ops.store.history if h["code"] == "NA"]
    assert h["phone"] == A


async def test_a_dialled_number_gone_from_the_record_is_a_conflict(ops: Ops) -> None:
    lease = await _leased(ops, [A, B])
    live = next(iter(ops.svc.engine.leases.values()))
    live.record.phones = [[B, PHONE_ACTIVE]]
    err = await ops.refused("dispose", "conflict", lease=lease["token"], code="NA")
    assert err["field"] == "lease" and A in err["message"]
    # nothing changed: the lease is still live, and a number may be named
    await ops.ok("dispose", lease=lease["token"], code="NA", phone=B)


async def test_extend_moves_the_expiry_timer_to_a_shorter_end(ops: Ops) -> None:
    lease = await _leased(ops)
    assert ops.svc.expiry_armed_at() == ops.clock.t + LEASE_S
    await ops.ok("extend", lease=lease["token"], seconds=5)
    assert ops.svc.expiry_armed_at() == ops.clock.t + 5


async def test_restored_leases_arm_the_expiry_timer(ops: Ops) -> None:
    await _leased(ops)
    await ops.restart()
    assert ops.svc.expiry_armed_at() == ops.clock.t + LEASE_S


TWO_LENGTHS = "\n".join(f"""
[campaigns.{name}]
resultset = "std"
lease_s = {lease_s}
legal_window = "00:00-24:00"
timezone = "UTC"
[campaigns.{name}.window]
""" + "\n".join(f'{d} = ["00:00-24:00"]' for d in
                ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    for name, lease_s in (("long", 600), ("short", 30)))


async def test_a_next_over_campaigns_arms_the_earliest_expiry(tmp_path: Path) -> None:
    ops = await Ops(tmp_path, campaigns=TWO_LENGTHS).start()
    try:
        # the long campaign's record scores higher: its lease comes first
        await ops.ok("records.import", campaign="long", list="l",
                     records=numbers(1, "a", priority=100))
        await ops.ok("records.import", campaign="short", list="l", records=numbers(1, "b"))
        leases = (await ops.ok("next", agent="ann", campaigns=["long", "short"],
                               count=2))["leases"]
        assert [lz["expires_in_s"] for lz in leases] == [600, 30]
        assert ops.svc.expiry_armed_at() == ops.clock.t + 30
    finally:
        ops.svc.stop_waiting()
