"""records.import on the in-memory store: rows, rejections, stages, updates."""

from __future__ import annotations

from collections.abc import Sequence

from nextcall.roles import ADMIN
from tests.unit.ops.harness import Ops, numbers


async def test_import_inserts_then_updates_and_rejects_rows_by_field(ops: Ops) -> None:
    rows = [*numbers(2), {"id": "bad", "phones": ["12"]}]
    ans = await ops.ok("records.import", campaign="t", list="l", records=rows)
    assert (ans["inserted"], ans["updated"], ans["committed"]) == (2, 0, True)
    (rej,) = ans["rejected"]
    assert rej["index"] == 2 and rej["field"] == "records[2].phones[0]"
    ans = await ops.ok("records.import", campaign="t", list="l2", records=numbers(1))
    assert (ans["inserted"], ans["updated"]) == (0, 1)
    assert ops.store.records[ops.store.ids["r0"]]["list"] == "l2"


async def test_an_atomic_import_with_a_bad_row_writes_nothing(ops: Ops) -> None:
    rows = [*numbers(2), {"id": "bad", "phones": []}]
    ans = await ops.ok("records.import", campaign="t", list="l", records=rows, atomic=True)
    assert ans["committed"] is False and ops.store.records == {}


async def test_stages_commit_together_at_final_and_are_void_after_a_bad_row(ops: Ops) -> None:
    peer = ops.peer(ADMIN)
    a = await ops.ok("records.import", peer, campaign="t", list="l", stage="s",
                     final=False, records=numbers(2, "a"))
    assert a["staged"] == 2 and ops.store.records == {}, a
    b = await ops.ok("records.import", peer, campaign="t", list="l", stage="s", final=True,
                     records=numbers(1, "b"))
    assert b["inserted"] == 3 and len(ops.store.records) == 3
    await ops.ok("records.import", peer, campaign="t", list="l", stage="v", final=False,
                 records=[{"id": "x", "phones": []}])
    err = await ops.refused("records.import", "bad_request", peer, campaign="t", list="l",
                            stage="v", final=False, records=numbers(1, "c"))
    assert err["field"] == "stage"


async def test_a_leased_record_is_not_reimported(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    await ops.ok("next", agent="a", campaigns=["t"])
    ans = await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    (rej,) = ans["rejected"]
    assert rej["code"] == "conflict" and rej["field"] == "records[0].id"


async def test_a_record_belongs_to_one_campaign(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    ops.svc.engine.campaigns["u"] = ops.svc.engine.campaigns["t"]
    ans = await ops.ok("records.import", campaign="u", list="l", records=numbers(1))
    assert ans["rejected"][0]["code"] == "conflict"


async def test_an_id_imported_twice_at_once_is_a_conflict_not_a_second_insert(
        ops: Ops) -> None:
    """The second import's read of the existing ids may start before the first commits
    and end after: the ids are reserved from before the read until the commit."""
    import asyncio

    from nextcall.storage.memory import MemoryStore

    class StaleReads(MemoryStore):
        """Each read answers as of its start; the second one takes longer, so it ends
        after the first import has committed."""

        reads = 0

        async def existing_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
            seen = await super().existing_ids(ids)
            self.reads += 1
            await asyncio.sleep(0.01 if self.reads == 1 else 0.2)
            return seen

    ops.store = ops.svc.store = StaleReads()
    first, second = await asyncio.gather(
        ops.call("records.import", campaign="t", list="l", records=numbers(1)),
        ops.call("records.import", campaign="t", list="l", records=numbers(1)))
    assert ops.store.broken is None
    assert sorted((a["inserted"], len(a["rejected"])) for a in (first, second)) == \
        [(0, 1), (1, 0)]
    (rej,) = (first["rejected"] or second["rejected"])
    assert rej["code"] == "conflict" and "being imported" in rej["message"]
    assert len(ops.store.records) == 1
