"""Amendments, as values: the record as it was before a disposition, and the record a
new outcome makes of it.

An amendment replaces a disposition's result code as if the new code had been given:
``results.decide`` runs again on the record as it was before the disposition (its fields
are stored with the history entry, ``changes.prior_of``), and the outcome replaces the
record's present value. Pure: the handler (``ops/amend.py``) checks that the record has
not moved on and who may amend; the engine applies the result (``transitions.amend``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .actions import Outcome
from .records import CallbackIntent, Record


def before(current: Record, prior: dict[str, Any]) -> Record:
    """Record ``current`` with the fields it had before the disposition (``prior``);
    what no disposition changes (id, zone, priority, data) is the present value's."""
    cb = prior.get("callback")
    rec = Record(current.rid, current.id, str(prior["campaign"]),
                 prior.get("list") or current.list,
                 [list(p) for p in prior["phones"]], current.timezone, current.priority,
                 current.data, str(prior["state"]), prior.get("reason"),
                 float(prior["due_at"]), int(prior["attempts"]), prior.get("owner"),
                 prior.get("team"), int(prior["best_cp"]), int(prior["phone_idx"]),
                 CallbackIntent.from_json(cb) if cb else None)
    return rec


def after(base: Record, outcome: Outcome) -> Record:
    """The record ``outcome`` makes of ``base`` (the value before the disposition)."""
    rec = Record(base.rid, base.id, outcome.campaign or base.campaign,
                 outcome.list_name or base.list if outcome.campaign else base.list,
                 outcome.phones if outcome.phones is not None else base.phone_list(),
                 base.timezone, base.priority, base.data, outcome.state, outcome.reason,
                 outcome.due_at, outcome.attempts, outcome.owner, outcome.team,
                 outcome.best_cp, outcome.phone_idx, outcome.callback)
    return rec


def unlisted(prior: dict[str, Any], listed: dict[str, str]) -> dict[str, str]:
    """The numbers the replaced disposition put on a list that are still on it: an
    amendment takes them off unless its own code lists them again."""
    out: dict[str, str] = {}
    for number, which in prior.get("listed") or ():
        if listed.get(number) == which:
            out[str(number)] = str(which)
    return out


Row = TypeVar("Row", bound=Mapping[str, Any])


def current(history: Iterable[Row]) -> list[Row]:
    """The current rows of a contact history: those no other row ``amends`` (an
    amendment replaces the row it names; both stay). Reports, ``record.get`` and
    ``amend`` count the history through here; SQL says the same in
    ``storage.current.CURRENT_WHERE``."""
    rows = list(history)
    replaced = {h.get("amends") for h in rows} - {None}
    return [h for h in rows if h.get("hid") not in replaced]
