"""The address score: which pool record is worth calling first.

Default (weights in ``[campaigns.X.scoring]``)::

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
"""

from __future__ import annotations

from .model import Scoring


def address_score(w: Scoring, priority: int, best_cp: int, attempts: int) -> float:
    """The pool ordering key (higher first)."""
    return (w.priority * priority + w.contact * (best_cp - 1 if best_cp > 1 else 0)
            + w.attempt * min(attempts, w.max_attempt_penalty))
