"""The form in which a rebuild hands ready records to ``Engine.bulk_load``: columns by
(campaign, timezone), built by the store's reader without one object per record
(``ready_groups`` makes them from record values, for tests and small loads)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from ..records import PHONE_ACTIVE, READY, Quote, Record
from .columns import phone_int


@dataclass(slots=True)
class ReadyGroup:
    """Ready records of one campaign and timezone, as a rebuild reads them (numpy arrays of
    equal length). ``phone`` is the number to dial as an integer, or 0 when the record's
    numbers are in ``Snapshot``'s ``phones`` (several numbers, or not all active)."""

    campaign: str
    timezone: str
    rid: npt.NDArray[np.int64]
    due: npt.NDArray[np.float64]
    priority: npt.NDArray[np.int64]
    attempts: npt.NDArray[np.int64]
    best_cp: npt.NDArray[np.int64]
    phone_idx: npt.NDArray[np.int64]
    phone: npt.NDArray[np.int64]


def ready_groups(records: Iterable[Record]
                 ) -> tuple[list[ReadyGroup], dict[int, str], list[Record]]:
    """Split record values into what ``Engine.bulk_load`` takes: ready records as columns
    by (campaign, timezone), the JSON numbers of those with several, and the rest."""
    cols: dict[tuple[str, str], list[tuple[int, float, int, int, int, int, int]]] = \
        defaultdict(list)
    phones: dict[int, str] = {}
    others: list[Record] = []
    for rec in records:
        if rec.state != READY:
            others.append(rec)
            continue
        plist = rec.phone_list()
        n = phone_int(plist[0][0]) if len(plist) == 1 and plist[0][1] == PHONE_ACTIVE else 0
        if not n:
            phones[rec.rid] = orjson.dumps(plist).decode()
        cols[(rec.campaign, rec.timezone)].append(
            (rec.rid, rec.due_at, rec.priority, rec.attempts, rec.best_cp, rec.phone_idx, n))
    groups = []
    for (campaign, tz), rows in cols.items():
        rid, due, prio, att, bcp, pidx, phone = (np.array(c) for c in zip(*rows, strict=True))
        groups.append(ReadyGroup(campaign, tz, rid.astype(np.int64), due.astype(np.float64),
                                 prio.astype(np.int64), att.astype(np.int64),
                                 bcp.astype(np.int64), pidx.astype(np.int64),
                                 phone.astype(np.int64)))
    return groups, phones, others


def ready_quotes(records: Iterable[Record]) -> dict[int, Quote]:
    """The quotes of the ready records among ``records`` (what ``Engine.bulk_load`` takes
    beside ``ready_groups``; the others carry theirs)."""
    return {rec.rid: rec.quote for rec in records
            if rec.state == READY and rec.quote is not None}
