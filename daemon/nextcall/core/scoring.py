"""The pool score: which pool record is worth calling first.

Address score (``mode = "address"``, the default; weights in ``[campaigns.X.scoring]``)::

    score = priority_w * priority + contact_w * max(best_contact_priority - 1, 0)
            + attempt_w * min(attempts, max_attempt_penalty)

with priority_w=100, contact_w=5, attempt_w=-1, max_attempt_penalty=10.
``best_contact_priority`` is the highest contact priority (CallMonkey scale: 0 never
called, 1 no contact, 3 contact but not the right person, 4 right person, 6 right person
with a set time, up to 9) of any result on the record; "no contact" earns nothing, so a
never-called record outranks one that only rang out. With the defaults a "right person
reached" record (+15) outranks a never-reached one (0) at any attempt count up to the cap
(-10); among equal contact, fewer attempts outrank more; and one step of base priority
(100) outweighs any history (at most +40 and -10).

Expected-value score (``mode = "expected_value"``, opt-in per campaign)::

    expected_value = value * chance / 100
    score = address score + value_w * max(1 + priority, 0) * expected_value

``value`` and ``chance`` are the record's quote (``Quote``): taken from the record's data
at import (``value_field = "data.KEY"``) or from the typed fields of the last disposition
that carried them (``value_field = "fields.NAME"``). A record without a quote has an
expected value of 0 and is ordered by its address score alone; the factor ``1 + priority``
lets base priority 0 count the expected value once, 1 twice, and so on, and a priority
of -1 or less ignores it. With ``value_w`` = 1 (one point per unit of currency) a quote
outweighs the contact history (at most +40 and -10) as soon as it is worth more than 50.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from .model import MODE_EXPECTED_VALUE, Scoring
from .records import Quote

__all__ = ["Quote", "ScoreTerms", "address_score", "pool_score", "quote_from_data",
           "quote_from_fields", "score_terms", "value_term"]


class ScoreTerms(NamedTuple):
    """A record's score taken apart (what ``explain`` shows)."""

    mode: str
    priority: int
    best_cp: int
    attempts: int
    #: the address score: priority, contact and attempt terms
    address: float
    value: float | None
    chance: float | None
    expected_value: float
    #: ``max(1 + priority, 0)`` (expected-value mode; 0 otherwise)
    priority_factor: float
    #: ``value_w * priority_factor * expected_value``
    value_term: float
    score: float

    def to_json(self) -> dict[str, object]:
        """The terms as a JSON object."""
        return self._asdict()


def address_score(w: Scoring, priority: int, best_cp: int, attempts: int) -> float:
    """The address part of the pool ordering key (higher first)."""
    return (w.priority * priority + w.contact * (best_cp - 1 if best_cp > 1 else 0)
            + w.attempt * min(attempts, w.max_attempt_penalty))


def value_term(w: Scoring, priority: int, ev: float) -> float:
    """The expected-value part (0 unless the campaign scores by expected value)."""
    if w.mode != MODE_EXPECTED_VALUE or not ev:
        return 0.0
    factor = 1 + priority
    return w.value * factor * ev if factor > 0 else 0.0


def pool_score(w: Scoring, priority: int, best_cp: int, attempts: int,
               quote: Quote | None = None) -> float:
    """The pool ordering key (higher first), in either mode."""
    ev = quote.expected_value if quote is not None else 0.0
    return address_score(w, priority, best_cp, attempts) + value_term(w, priority, ev)


def score_terms(w: Scoring, priority: int, best_cp: int, attempts: int,
                quote: Quote | None) -> ScoreTerms:
    """Every term of a record's score, so a reader can check the sum."""
    ev = quote.expected_value if quote is not None else 0.0
    factor = float(max(1 + priority, 0)) if w.mode == MODE_EXPECTED_VALUE else 0.0
    address = address_score(w, priority, best_cp, attempts)
    term = value_term(w, priority, ev)
    return ScoreTerms(w.mode, priority, best_cp, attempts, address,
                      quote.value if quote is not None else None,
                      quote.chance if quote is not None else None, ev, factor, term,
                      address + term)


# ---------------------------------------------------------------------- where a quote comes from
def _number(v: object) -> float | None:
    """A finite number from a field (numbers, or text holding one), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v.strip().replace(",", "."))
        except ValueError:
            return None
    else:
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def _quote_of(w: Scoring, values: dict[str, Any], prefix: str) -> Quote | None:
    """The quote ``values`` hold under the fields ``w`` names with ``prefix``."""
    if not w.value_field.startswith(prefix):
        return None
    value = _number(values.get(w.value_field[len(prefix):]))
    if value is None:
        return None
    chance = 100.0
    if w.chance_field.startswith(prefix):
        c = _number(values.get(w.chance_field[len(prefix):]))
        chance = 100.0 if c is None else c
    return Quote(max(value, 0.0), min(max(chance, 0.0), 100.0))


def quote_from_fields(w: Scoring, fields: dict[str, object]) -> Quote | None:
    """The quote a disposition's typed fields give (``value_field = "fields.NAME"``), or
    None when the campaign does not take its value from fields or the code gave none."""
    if w.mode != MODE_EXPECTED_VALUE or not fields:
        return None
    return _quote_of(w, fields, "fields.")


def quote_from_data(w: Scoring, data: str | None) -> Quote | None:
    """The quote a record's data (JSON text) gives (``value_field = "data.KEY"``), or None
    when the campaign does not take its value from data or the data has no number there."""
    if w.mode != MODE_EXPECTED_VALUE or not data or not w.value_field.startswith("data."):
        return None
    try:
        values = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return _quote_of(w, values, "data.") if isinstance(values, dict) else None
