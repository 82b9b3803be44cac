"""The address score with the default weights (SPEC §3): what the defaults promise."""

from __future__ import annotations

import pytest

from nextcall.core.model import Scoring
from nextcall.core.scoring import address_score

W = Scoring()
NEVER, NO_CONTACT, WRONG_PERSON, RIGHT_PERSON, SET_TIME = 0, 1, 3, 4, 6
ATTEMPTS = range(25)


def test_default_formula() -> None:
    assert address_score(W, 3, RIGHT_PERSON, 2) == 100 * 3 + 5 * (4 - 1) - 2
    assert address_score(W, 0, NEVER, 0) == 0
    assert address_score(W, 0, NO_CONTACT, 1) == -1  # no contact earns nothing
    assert address_score(W, 1, NEVER, 30) == 100 - 10  # the penalty is capped


@pytest.mark.parametrize("priority", [0, 1, 5])
@pytest.mark.parametrize("reached", [RIGHT_PERSON, SET_TIME])
def test_right_person_outranks_never_reached(priority: int, reached: int) -> None:
    # at any attempt counts on either side
    worst_reached = min(address_score(W, priority, reached, a) for a in ATTEMPTS)
    best_never = max(address_score(W, priority, NEVER, a) for a in ATTEMPTS)
    assert worst_reached > best_never


@pytest.mark.parametrize("cp", [NEVER, NO_CONTACT, WRONG_PERSON, RIGHT_PERSON, SET_TIME])
def test_fewer_attempts_outrank_more(cp: int) -> None:
    for fewer in range(W.max_attempt_penalty):
        for more in range(fewer + 1, W.max_attempt_penalty + 5):
            assert address_score(W, 2, cp, fewer) > address_score(W, 2, cp, more)


def test_contact_ladder_is_ordered() -> None:
    scores = [address_score(W, 1, cp, 3)
              for cp in (NO_CONTACT, WRONG_PERSON, RIGHT_PERSON, SET_TIME)]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert address_score(W, 1, NEVER, 3) == address_score(W, 1, NO_CONTACT, 3)


def test_never_called_outranks_rang_out() -> None:
    for a in range(1, 20):
        assert address_score(W, 0, NEVER, 0) > address_score(W, 0, NO_CONTACT, a)


def test_higher_priority_wins_on_equal_history() -> None:
    for cp in (NEVER, RIGHT_PERSON):
        for a in (0, 4, 12):
            assert address_score(W, 3, cp, a) > address_score(W, 2, cp, a)


# One step of base priority (100) outweighs the whole history term (at most +40, -10).
# Regression: with the first default weights (priority 10) a priority-0 record that reached
# the right person outranked a priority-1 record never reached.
def test_priority_dominates_history() -> None:
    histories = [(cp, a) for cp in range(10) for a in ATTEMPTS]
    for priority in (0, 1, 4):
        worst_higher = min(address_score(W, priority + 1, cp, a) for cp, a in histories)
        best_lower = max(address_score(W, priority, cp, a) for cp, a in histories)
        assert worst_higher > best_lower, priority


def test_weights_are_configurable() -> None:
    flat = Scoring(priority=1.0, contact=0.0, attempt=-2.0, max_attempt_penalty=3)
    assert address_score(flat, 4, SET_TIME, 1) == 4 - 2
    assert address_score(flat, 4, SET_TIME, 9) == 4 - 6
