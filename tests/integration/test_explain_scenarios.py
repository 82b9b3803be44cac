"""``explain`` over the socket on the shipped config: the Soft Recruit campaign's calling
window, the TCPA legal window, a lease, and a personal-then-team callback waiting for its
owner; the campaign's counts agree with ``stats``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.shipped import Clock, Running, instant, ok, shipped_settings

NY, LA = "America/New_York", "America/Los_Angeles"


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[Running]:
    """A daemon on the shipped config at 08:30 in New York on a Tuesday."""
    r = Running(shipped_settings(tmp_path), Clock(instant("2027-06-15T08:30", NY)))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def _explain(r: Running, **fields: Any) -> dict[str, Any]:
    return dict((await ok(r.admin, "explain", **fields))["explain"])


def _reasons(e: dict[str, Any]) -> list[str]:
    return [b["reason"] for b in e["blockers"]]


async def test_windows_lease_and_a_callback_for_someone_else(shipped: Running) -> None:
    r = shipped
    await r.import_records("softrecruit", "donors", [
        {"id": "ny", "phones": ["+12125550001"], "timezone": NY, "team": "recruiters"},
        {"id": "la", "phones": ["+13105550002"], "timezone": LA, "team": "recruiters"}])
    await r.login("alice", ["softrecruit"], ["recruiters"])
    await r.login("bob", ["softrecruit"], ["recruiters"])
    ny = await _explain(r, record="ny")  # 08:30: TCPA allows calls, the window opens at 9
    assert _reasons(ny) == ["outside_window"] and ny["legal_window"]["open"] is True
    assert ny["eligible_at"] == "2027-06-15T13:00:00Z"
    la = await _explain(r, record="la")  # 05:30 in Los Angeles
    assert _reasons(la) == ["legal_window"] and la["eligible_at"] == "2027-06-15T16:00:00Z"
    camp = await _explain(r, campaign="softrecruit")
    assert camp["blocked"]["outside_window"] == 1 and camp["blocked"]["legal_window"] == 1
    assert camp["next"] == {"at": "2027-06-15T13:00:00Z", "record": "ny",
                           "reason": "window_opens"}
    assert await r.next("alice") == []

    r.clock.set("2027-06-15T09:00", NY)
    assert (await _explain(r, record="ny"))["eligible"] is True
    lease = await r.lease("alice", "ny")
    held = await _explain(r, record="ny")
    assert _reasons(held) == ["leased"] and held["lease"]["agent"] == "alice"
    await r.dispose(lease, "CB", callback={"at": "2027-06-15T10:00:00"})
    assert _reasons(await _explain(r, record="ny")) == ["dormant"]

    r.clock.set("2027-06-15T10:00", NY)
    bob = await _explain(r, record="ny", agent="bob")
    assert _reasons(bob) == ["callback_other"]
    assert bob["eligible_at"] == bob["callback"]["grace_ends"] == "2027-06-15T14:30:00Z"
    assert (await _explain(r, record="ny", agent="alice"))["eligible"] is True
    camp = await _explain(r, campaign="softrecruit", agent="bob")
    stats = await r.stats("softrecruit")
    assert camp["open"] == 2 and camp["blocked"]["callback_other"] == 1
    assert stats["due"] == 1 and stats["callback_due"] == 1  # la, and ny's callback
    assert camp["available"] == {"pool": 0, "callbacks": 0}
    assert camp["gauges"]["window"] == 1 and camp["blocked"]["legal_window"] == 1
    r.clock.set("2027-06-15T10:30", NY)
    assert (await _explain(r, record="ny", agent="bob"))["eligible"] is True
    assert [lz["record"]["id"] for lz in await r.next("bob")] == ["ny"]
