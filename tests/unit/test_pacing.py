"""When writes commit inline on the loop (``pacing.CommitPacing``), on a fake clock."""

from __future__ import annotations

import pytest

from nextcall import pacing
from nextcall.pacing import CALM_AFTER_S, CALM_GAP_S, SLOW_INLINE_S, CommitPacing


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(pacing.time, "perf_counter", c)
    return c


def test_writes_far_apart_commit_inline(clock: FakeClock) -> None:
    p = CommitPacing()
    assert p.calm(1)
    clock.t += 0.01
    assert p.calm(1)


def test_two_in_flight_send_writes_to_the_thread_for_a_while(clock: FakeClock) -> None:
    p = CommitPacing()
    assert not p.calm(2)
    clock.t += CALM_AFTER_S / 2
    assert not p.calm(1)
    clock.t += CALM_AFTER_S * 2
    assert p.calm(1)


def test_the_gap_counts_from_the_end_of_an_inline_commit(clock: FakeClock) -> None:
    """A 1 ms commit (under SLOW_INLINE_S) followed at once by the next write: the gap
    from the first write's start is long, from the commit's end it is short."""
    p = CommitPacing()
    assert p.calm(1)
    clock.t += 0.001
    p.committed_inline(0.001)
    clock.t += CALM_GAP_S / 3
    assert not p.calm(1)


def test_a_slow_inline_commit_sends_the_next_writes_to_the_thread(clock: FakeClock) -> None:
    """``synchronous = full``: a commit that flushed to disk must not make every next
    write look calm (each would then block the loop in its own flush)."""
    p = CommitPacing()
    assert p.calm(1)
    clock.t += SLOW_INLINE_S * 2
    p.committed_inline(SLOW_INLINE_S * 2)
    clock.t += 0.01
    assert not p.calm(1)
    clock.t += CALM_AFTER_S
    assert p.calm(1)
