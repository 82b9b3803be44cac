"""The audit's local time (``core.audit.local_second``) is ``datetime.isoformat`` to the
second in every zone, on both sides of every offset change, although it keeps the text of
each minute."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextcall.core import calendar
from nextcall.core.audit import local_second

ZONES = ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/St_Johns", "Pacific/Chatham", "Africa/Casablanca", "America/Santiago",
         "UTC"]
#: 2026-01-01 .. 2028-01-01
LO, HI = 1_767_225_600, 1_830_297_600


def _expected(at: float, zone: str) -> tuple[str, int]:
    t = datetime.fromtimestamp(int(at // 1), calendar.zone(zone))
    return t.isoformat(timespec="seconds"), t.weekday()


def _changes(zone: str) -> list[int]:
    """The instants (to the second) at which ``zone`` changes its offset in the range."""
    tz = calendar.zone(zone)
    out = []
    for t in range(LO, HI, 3600):
        if datetime.fromtimestamp(t, tz).utcoffset() != \
                datetime.fromtimestamp(t + 3600, tz).utcoffset():
            lo, hi = t, t + 3600
            while hi - lo > 1:
                mid = (lo + hi) // 2
                same = datetime.fromtimestamp(mid, tz).utcoffset() == \
                    datetime.fromtimestamp(lo, tz).utcoffset()
                lo, hi = (mid, hi) if same else (lo, mid)
            out.append(hi)
    return out


@pytest.mark.parametrize("zone", ZONES)
def test_every_second_around_each_offset_change(zone: str) -> None:
    changes = _changes(zone)
    assert changes or zone in ("Asia/Kolkata", "UTC")
    for change in changes:
        for s in range(change - 90, change + 90):
            for frac in (0.0, 0.5, 0.999):
                assert local_second(s + frac, zone) == _expected(s + frac, zone)


@settings(max_examples=2000)
@given(st.floats(min_value=LO, max_value=HI), st.sampled_from(ZONES))
def test_any_instant(at: float, zone: str) -> None:
    assert local_second(at, zone) == _expected(at, zone)
