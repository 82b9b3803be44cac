"""Heap keys packed into one integer, and the run-plus-heap structure that holds them.

A heap entry is a single Python int, not a tuple: one object of 44-48 bytes instead of a
tuple, two floats and an int (about 250 bytes), and integer comparison is the cheapest
comparison CPython has. Bits, most significant first::

    pool key:     score (48) | due (58) | rid (40) | gen (32)
    callback key: 15 - contact priority (48) | due (58) | rid (40) | gen (32)
    time key:                               due (58) | rid (40) | gen (32)

Smaller is better, so a key orders by score descending (to 0.001), then due time
ascending (to the microsecond), then import order (``rid``). ``gen`` is the record's
placement generation: an entry whose ``gen`` differs from the record's current one is
stale (the record moved since) and is skipped when it reaches the top (lazy deletion).

``RunHeap`` keeps the records a rebuild loaded as a sorted run of record numbers (8 bytes
a record, no key objects at all: a run entry's key is computed from the record's columns
when it reaches the front) plus a heap of the keys pushed since. The smaller of the two
fronts is the top. A run entry is live only while its record still has generation 0 (it
has not moved since the rebuild); a stale one is skipped before the fronts are compared,
because its key, computed from the record's present columns, no longer sorts with the run.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable

GEN_BITS = 32
GEN_MASK = (1 << GEN_BITS) - 1
RID_BITS = 40
RID_MASK = (1 << RID_BITS) - 1
DUE_BITS = 58
DUE_MAX = (1 << DUE_BITS) - 1
DUE_SHIFT = GEN_BITS + RID_BITS
HIGH_SHIFT = DUE_SHIFT + DUE_BITS
SCORE_BITS = 48
SCORE_ZERO = 1 << (SCORE_BITS - 1)
SCORE_MAX = (1 << SCORE_BITS) - 1
#: scores are ordered to this resolution (0.001)
SCORE_SCALE = 1000
#: due times are ordered to this resolution (1 µs)
DUE_SCALE = 1_000_000


def due_q(due: float) -> int:
    """A due time as the integer the keys hold (microseconds, clamped to the key's bits)."""
    q = int(due * DUE_SCALE)
    return 0 if q < 0 else DUE_MAX if q > DUE_MAX else q


def score_q(score: float) -> int:
    """A score as the key's high part: smaller for a higher score."""
    q = SCORE_ZERO - round(score * SCORE_SCALE)
    return 0 if q < 0 else SCORE_MAX if q > SCORE_MAX else q


def time_key(due: float, rid: int, gen: int) -> int:
    """Key of a by-time heap (dormant records, upcoming callbacks, appointments)."""
    return (((due_q(due) << RID_BITS) | rid) << GEN_BITS) | gen


def pool_key(score: float, due: float, rid: int, gen: int) -> int:
    """Key of a due pool heap: best score first, then earliest due, then import order."""
    return (score_q(score) << HIGH_SHIFT) | time_key(due, rid, gen)


def callback_key(contact_priority: int, due: float, rid: int, gen: int) -> int:
    """Key of a team or anyone callback heap: highest contact priority first."""
    return ((15 - contact_priority) << HIGH_SHIFT) | time_key(due, rid, gen)


def rid_of(key: int) -> int:
    """The record number a key points at."""
    return (key >> GEN_BITS) & RID_MASK


def gen_of(key: int) -> int:
    """The placement generation a key was made for."""
    return key & GEN_MASK


def due_q_of(key: int) -> int:
    """The due time (as ``due_q``) of a key."""
    return (key >> DUE_SHIFT) & DUE_MAX


class RunHeap:
    """A sorted run of record numbers plus a heap of keys; the smaller front is the top.

    ``key_of(rid)`` gives the key of a live run entry, or None for a stale one (skipped).
    Stale heap entries are the engine's to pop: it checks the top it is given.
    """

    __slots__ = ("run", "pos", "heap", "key_of")

    def __init__(self, key_of: Callable[[int], int | None], run: array[int] | None = None) -> None:
        self.key_of = key_of
        self.run: array[int] = run if run is not None else array("q")
        self.pos = 0
        self.heap: list[int] = []

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return len(self.run) - self.pos + len(self.heap)

    def _run_front(self) -> int | None:
        run, key_of = self.run, self.key_of
        pos, n = self.pos, len(run)
        while pos < n:
            rk = key_of(run[pos])
            if rk is not None:
                self.pos = pos
                return rk
            pos += 1
        if n:
            self.run, self.pos = array("q"), 0
        return None

    def top(self) -> int | None:
        """The smallest key, or None when empty."""
        heap = self.heap
        rk = self._run_front() if self.run else None
        if rk is None:
            return heap[0] if heap else None
        return heap[0] if heap and heap[0] < rk else rk

    def pop(self) -> int:
        """Remove and return the smallest key.

        Raises:
            IndexError: empty.
        """
        heap = self.heap
        rk = self._run_front() if self.run else None
        if rk is not None and (not heap or rk < heap[0]):
            self.pos += 1
            return rk
        return heapq.heappop(heap)

    def push(self, key: int) -> None:
        """Add a key."""
        heapq.heappush(self.heap, key)

    def keys(self) -> list[int]:
        """The live run entries' keys and every heap key (stale ones included)."""
        key_of = self.key_of
        live = [k for k in map(key_of, self.run[self.pos:]) if k is not None]
        return live + self.heap

    def replace_all(self, keys: list[int]) -> None:
        """Hold exactly ``keys`` (compaction, rescoring)."""
        heapq.heapify(keys)
        self.run, self.pos, self.heap = array("q"), 0, keys
