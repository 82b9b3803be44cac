"""The address score: which pool record is worth calling first.

Default (weights in ``[campaigns.X.scoring]``)::

    score = priority_w * priority + contact_w * best_contact_priority
            + attempt_w * min(attempts, max_attempt_penalty)

with priority_w=10, contact_w=5, attempt_w=-1, max_attempt_penalty=10.
``best_contact_priority`` is the highest contact priority (CallMonkey scale: 0 never
reached, 1 no contact, 3 contact but not the right person, 4 right person, 6 right person
with a set time) of any result on the record. With the defaults a "right person reached"
record (+20) outranks a never-reached one (0) at any attempt count up to the cap, and
among equals fewer attempts outrank more. The base priority dominates both.
"""

from __future__ import annotations

from .model import Scoring


def address_score(w: Scoring, priority: int, best_cp: int, attempts: int) -> float:
    """The pool ordering key (higher first)."""
    return (w.priority * priority + w.contact * best_cp
            + w.attempt * min(attempts, w.max_attempt_penalty))
