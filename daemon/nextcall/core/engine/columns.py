"""How the engine holds a record without making it an object: the column table, the codes
the slot and state columns store, and the conversions of record values into column values.

One definition of each code, read by every part of the engine (and, through the slot
names, by stats and metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..model import MODE_EXPECTED_VALUE, Scoring
from ..records import CALLBACK, HELD, READY

#: an instant that never comes (no promise, nothing to wake for)
INF = float("inf")

# slots: where a record's live entry is (names as stats and metrics show them)
S_DORMANT = "dormant"
S_DUE = "due"
S_CB_DORMANT = "callback_upcoming"
S_CB_DUE = "callback_due"
S_LEASED = "leased"
#: open records with no callable number: in no heap until their numbers change
S_NO_NUMBER = "no_number"
#: held for an appointment; then waiting for an admin once the appointment has passed
S_HELD = "held"
S_RESOLUTION = "resolution"
#: due, but held back by an attempt budget until an instant (``core.budgets``)
S_BUDGET = "budget"
SLOTS = (S_DORMANT, S_DUE, S_CB_DORMANT, S_CB_DUE, S_LEASED, S_NO_NUMBER, S_HELD,
         S_RESOLUTION, S_BUDGET)
#: the slot column's codes: 0 (``N_NONE``) for a record not open, then ``SLOTS`` in order
SLOT_NAMES = ("", *SLOTS)
(N_NONE, N_DORMANT, N_DUE, N_CB_DORMANT, N_CB_DUE, N_LEASED, N_NO_NUMBER, N_HELD,
 N_RESOLUTION, N_BUDGET) = range(len(SLOT_NAMES))
#: open states as stored in the state column
STATE_NAMES = (READY, CALLBACK, HELD)
STATE_CODE = {name: i for i, name in enumerate(STATE_NAMES)}
ST_READY, ST_CALLBACK, ST_HELD = range(3)

#: the columns, by array type code
COLUMNS = (("camp", "H"), ("tz", "H"), ("due", "d"), ("score", "d"), ("prio", "h"),
           ("att", "I"), ("bcp", "b"), ("pidx", "B"), ("slot", "B"), ("state", "B"),
           ("gen", "I"), ("phone", "q"))


def phone_int(number: str) -> int:
    """An E.164 number as the integer the columns hold (``+31612345678`` -> 31612345678)."""
    return int(number[1:]) if len(number) > 1 and number[0] == "+" and number[1:].isdigit() \
        and number[1] != "0" else 0


def score_of(w: Scoring, priority: int, best_cp: int, attempts: int, ev: float = 0.0
             ) -> float:
    """The pool score (``nextcall.core.scoring.pool_score``), inlined for the hot paths;
    ``ev`` is the record's expected value (0 without a quote)."""
    score = (w.priority * priority + w.contact * (best_cp - 1 if best_cp > 1 else 0)
             + w.attempt * (attempts if attempts < w.max_attempt_penalty
                            else w.max_attempt_penalty))
    if ev and w.mode == MODE_EXPECTED_VALUE and priority > -1:
        score += w.value * (1 + priority) * ev
    return score


def scores_of(w: Scoring, priority: npt.NDArray[Any], best_cp: npt.NDArray[Any],
              attempts: npt.NDArray[Any], ev: npt.NDArray[np.float64] | None
              ) -> npt.NDArray[np.float64]:
    """``score_of`` over arrays (the rebuild, reload planning): the same arithmetic, term
    by term in the same order, so a record scores the same either way."""
    score: npt.NDArray[np.float64] = (
        w.priority * priority + w.contact * np.maximum(best_cp - 1, 0)
        + w.attempt * np.minimum(attempts, w.max_attempt_penalty)).astype(np.float64)
    if ev is not None and w.mode == MODE_EXPECTED_VALUE:
        factor = (1 + priority).astype(np.float64)
        term = np.where((ev != 0) & (factor > 0), w.value * factor * ev, 0.0)
        score = score + term
    return score
