"""CallMonkey's sales phase ordered by expected value, over the socket on the SHIPPED
configuration: "offerte waarde" x "kans %" of the OFFERTE code (seeds/004) is stored with
the address when the disposition is committed, and of two addresses due at the same
instant with the same history the one with the larger expected value is handed out first,
before and after a restart (the rebuild computes the same score).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.shipped import Clock, Running, instant, shipped_settings

AMS = "Europe/Amsterdam"
TUE = "2026-06-16"  # a Tuesday, no holiday, in the real past
CAMPAIGN = "callmonkey-sales"


@pytest.fixture
async def sales(tmp_path: Path) -> AsyncIterator[Running]:
    """The shipped config, Tuesday 10:00 in Amsterdam; addresses LOW and HIGH imported in
    that order (LOW has the lower record number, so it wins every tie)."""
    r = Running(shipped_settings(tmp_path), Clock(instant(f"{TUE}T10:00", AMS)))
    await r.start()
    try:
        await r.import_records(CAMPAIGN, "beurs", [
            {"id": rid, "phones": [phone], "timezone": AMS, "team": "binnendienst",
             "data": {"bedrijf": rid}}
            for rid, phone in (("LOW", "+31201230001"), ("HIGH", "+31201230002"))])
        await r.login("alice", [CAMPAIGN], ["binnendienst"])
        yield r
    finally:
        await r.stop()


async def _quote_then_voicemail(r: Running) -> None:
    """Both addresses get an OFFERTE (LOW: EUR 1,000 at 50 %, HIGH: EUR 20,000 at 50 %)
    with a callback at 11:00; at 11:00 both rang out (VOICEMAIL), due again together."""
    quotes = {"LOW": 1000.0, "HIGH": 20000.0}
    for lease in await r.next("alice", count=2):
        await r.dispose(lease, "OFFERTE", callback={"at": f"{TUE}T11:00"}, fields={
            "offerte_waarde": quotes[lease["record"]["id"]], "kans": 50,
            "verwachte_orderdatum": "2026-07-01"})
    r.clock.set(f"{TUE}T11:00", AMS)
    leases = await r.next("alice", count=2)
    assert [lz["record"]["id"] for lz in leases] == ["LOW", "HIGH"]  # callbacks: by rid
    for lease in leases:
        await r.dispose(lease, "VOICEMAIL")


async def test_higher_expected_value_is_handed_out_first(sales: Running) -> None:
    r = sales
    await _quote_then_voicemail(r)
    low, high = await r.get("LOW"), await r.get("HIGH")
    assert low["quote"] == {"value": 1000.0, "chance": 50.0, "expected_value": 500.0}
    assert high["quote"] == {"value": 20000.0, "chance": 50.0, "expected_value": 10000.0}
    # same history (contact priority 4, 2 attempts): address score 10 * 3 - 2 = 28
    assert (low["due_at"], low["attempts"]) == (high["due_at"], high["attempts"])
    assert low["score"] == pytest.approx(28 + 0.01 * 500)
    assert high["score"] == pytest.approx(28 + 0.01 * 10000)
    r.clock.set("2026-06-17T13:00", AMS)  # VOICEMAIL's second delay (a day) has passed
    first = await r.next("alice")
    assert [lz["record"]["id"] for lz in first] == ["HIGH"]
    await r.admin.call("release", lease=first[0]["token"])
    # a restart rebuilds the pool from the database: the quotes and the order survive
    await r.restart()
    again = await r.next("alice")
    assert [lz["record"]["id"] for lz in again] == ["HIGH"]
    assert again[0]["record"]["score"] == pytest.approx(28 + 0.01 * 10000)
    assert [lz["record"]["id"] for lz in await r.next("alice")] == ["LOW"]
