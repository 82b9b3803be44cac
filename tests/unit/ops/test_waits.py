"""Long polls served while their own answers re-enter the service (a lone write commits
at once, and its answer may run other requests before the round of waiters ends)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nextcall.core.changes import Change
from nextcall.ops.leases import NextReq
from nextcall.ops.waits import Waiter
from nextcall.storage.base import Done
from nextcall.storage.memory import MemoryStore
from tests.unit.ops.harness import Ops, numbers


class CommitsAtOnce(MemoryStore):
    """Commits inside ``submit`` and answers there, as the SQL store's lone writes do."""

    def submit(self, changes: Sequence[Change], done: Done,
               fetch: Sequence[int] = ()) -> None:
        super().submit(changes, done, fetch)
        self._commit()


async def test_each_waiter_is_served_at_its_own_instant_and_none_is_lost(ops: Ops) -> None:
    ops.store = ops.svc.store = CommitsAtOnce()
    await ops.ok("records.import", campaign="t", list="l", records=numbers(2))
    first = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"][0]
    ops.clock.t += 0.5
    second = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"][0]
    svc, polls = ops.svc, ops.svc.polls
    got: dict[str, Any] = {}
    late = ops.peer()

    def answer_a(result: Any) -> None:
        # the first waiter's answer runs other work before the round ends: time passes
        # (the second lease runs out) and another long poll arrives
        got["a"] = result
        ops.clock.t += 1.0
        svc.expire(ops.clock())
        polls.add(Waiter(NextReq(agent="c", campaigns=["t"], wait=5), late,
                         lambda r: got.__setitem__("c", r),
                         ("t",), (), ops.clock() + 5, 0.0), ops.clock())

    peer = ops.peer()
    for agent, reply in (("a", answer_a), ("b", lambda r: got.__setitem__("b", r))):
        polls.waiters.append(Waiter(NextReq(agent=agent, campaigns=["t"], wait=5), peer,
                                    reply, ("t",), (), ops.clock() + 5, 0.0))
    ops.clock.t += 60.0 - 0.5 + 0.001  # the first lease has run out, the second not yet
    polls.serve()
    lease_b = got["b"]["leases"][0]
    stored = {x["lid"]: x for x in ops.store.leases.values()}
    second_lid = int(second["token"].split(".")[0])
    b_lid = int(lease_b["token"].split(".")[0])
    assert lease_b["record"]["id"] == second["record"]["id"] != first["record"]["id"]
    # the record was handed on no earlier than the lease that held it ran out
    assert stored[b_lid]["issued_at"] >= stored[second_lid]["expires_at"]
    assert [w.req.agent for w in polls.waiters] == ["c"]
