"""``records.import`` (supervisor): insert or update records, rejecting bad rows one by one.

Rows are checked first (fields, E.164 numbers, zones), then against the database (a record
belongs to one campaign; a leased record's numbers must not change under a call). ``atomic``
makes one request all-or-nothing; ``stage``/``final`` make several requests one atomic
import (rows are held per connection until ``final``, and dropped if it closes first).
``reload`` reopens the list's records that were closed until a reload.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import Field, ValidationError

from .. import phones as phonelib
from .. import protocol as P
from ..core import calendar, transitions
from ..core.changes import Change
from ..core.errors import BadRequest, NextcallError
from ..core.records import CLOSED, Record
from ..protocol import Name, Request
from ..roles import Peer
from ..storage.snapshot import record_of
from .base import Body

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)

#: how deep a row's ``data`` may nest (the object itself is level 1): it is stored as
#: JSON text and embedded in answers, and JSON encoders (ours included) stop at a depth
#: of a few hundred
DATA_DEPTH = 128

class ImportReq(Request):
    """``records.import``. Records are validated one by one (per-row errors)."""

    campaign: Name
    list: Name
    records: Annotated[builtins.list[Any], Field(max_length=1_000_000)]
    reload: bool = False
    #: refuse the whole request if any record is rejected
    atomic: bool = False
    #: multi-request atomic import: batches with the same ``stage`` and ``final: false``
    #: are held on this connection; the ``final: true`` one commits them all at once
    stage: Name | None = None
    final: bool = True


Row = dict[str, Any]


@dataclass
class Stage:
    """Rows of a multi-request import, held until its ``final`` request."""

    campaign: str
    list_name: str
    rows: builtins.list[Row] = field(default_factory=builtins.list)
    ids: set[str] = field(default_factory=set)


class ImportState:
    """Imports in progress: stages by (connection, name), voided stages, and record ids
    whose insert is still committing (a second import of them must wait its turn)."""

    def __init__(self) -> None:
        self.stages: dict[tuple[int, str], Stage] = {}
        #: stages voided by a rejected row: later batches of them are refused, not restarted
        self.void: set[tuple[int, str]] = set()
        self.importing: set[str] = set()

    def discard(self, conn_id: int) -> None:
        """A connection closed: its stages were never committed; forget them."""
        for key in [k for k in self.stages if k[0] == conn_id]:
            del self.stages[key]
        self.void = {k for k in self.void if k[0] != conn_id}


def _checked(i: int, raw: Any, camp_tz: str, seen: set[str]) -> Row:
    """Row ``i`` validated and normalised.

    Raises:
        NextcallError: naming the row's field.
    """
    where = f"records[{i}]"
    try:
        r = P.ImportRecord.model_validate(raw)
    except ValidationError as exc:
        raise P.validation_error(exc, where) from None
    if r.id in seen:
        raise BadRequest(f"duplicate id {r.id!r} in this import", field=f"{where}.id")
    numbers: list[str] = []
    for k, p in enumerate(r.phones):
        e164 = phonelib.normalise(p, f"{where}.phones[{k}]")
        if e164 not in numbers:
            numbers.append(e164)
    if r.timezone is not None:
        calendar.zone(r.timezone, f"{where}.timezone")
        tz = r.timezone
    else:
        tz = phonelib.derive_timezone(numbers, camp_tz)
    seen.add(r.id)
    return {"index": i, "id": r.id, "phones": numbers, "timezone": tz,
            "priority": r.priority, "team": r.team, "data": _data_text(r.data, where)}


def _data_text(data: dict[str, Any], where: str) -> str:
    """A row's ``data`` as the JSON text stored.

    Raises:
        BadRequest: nested deeper than ``DATA_DEPTH``, or not encodable (field
            ``<where>.data``).
    """
    if P.depth(data, DATA_DEPTH) > DATA_DEPTH:
        raise BadRequest(f"data may nest at most {DATA_DEPTH} levels",
                         field=f"{where}.data")
    try:
        return orjson.dumps(data).decode()
    except orjson.JSONEncodeError as exc:
        raise BadRequest(f"data cannot be stored: {exc}", field=f"{where}.data") from None


def validate_rows(req: ImportReq, camp_tz: str, seen: set[str]
                  ) -> tuple[list[Row], list[Row]]:
    """The good rows, normalised, and the rejected ones with their errors."""
    good: list[Row] = []
    rejected: list[Row] = []
    for i, raw in enumerate(req.records):
        try:
            good.append(_checked(i, raw, camp_tz, seen))
        except NextcallError as err:
            rid = raw.get("id") if isinstance(raw, dict) else None
            rejected.append({"index": i, "id": rid if isinstance(rid, str) else None,
                             **err.to_wire()})
    return good, rejected


def _not_done(rejected: list[Row], **extra: Any) -> Body:
    return {"inserted": 0, "updated": 0, "rejected": rejected, **extra, "committed": False}


def _stage(svc: Service, req: ImportReq, peer: Peer) -> Stage | None:
    """The stage this request adds to (None: not staged).

    Raises:
        BadRequest: the stage was voided, or names another campaign or list.
    """
    if req.stage is None:
        return None
    st = svc.imports
    key = (peer.conn_id, req.stage)
    if key in st.void:
        if req.final:
            st.void.discard(key)
        raise BadRequest(f"stage {req.stage!r} was voided by rejected rows; nothing of it "
                         "will be imported", field="stage")
    stage = st.stages.get(key)
    if stage is None:
        stage = st.stages[key] = Stage(req.campaign, req.list)
    elif (stage.campaign, stage.list_name) != (req.campaign, req.list):
        raise BadRequest("a stage keeps one campaign and list", field="stage")
    return stage


async def import_(svc: Service, req: ImportReq, peer: Peer) -> Body:
    """``records.import`` (supervisor): insert or update records, per-row rejections;
    ``stage``/``final`` make several requests one atomic import; ``reload`` reopens the
    list's records closed until a reload."""
    camp = svc.engine.campaign(req.campaign)
    limit = svc.settings.daemon.max_import_records
    if len(req.records) > limit:
        raise BadRequest(f"at most {limit} records per request; use stage/final for more",
                         field="records")
    stage = _stage(svc, req, peer)
    good, rejected = validate_rows(req, camp.timezone, stage.ids if stage else set())
    if stage is not None:
        assert req.stage is not None
        key = (peer.conn_id, req.stage)
        stage.rows.extend(good)
        if rejected:
            # an atomic multi-batch import is void as soon as one row is bad
            del svc.imports.stages[key]
            if not req.final:
                svc.imports.void.add(key)
            return _not_done(rejected, staged=0)
        if not req.final:
            return _not_done([], staged=len(stage.rows))
        del svc.imports.stages[key]
        good = stage.rows
    elif rejected and req.atomic:
        return _not_done(rejected)
    all_or_nothing = req.atomic or stage is not None
    inserted, updated, more_rejected = await _apply(svc, req, good, all_or_nothing)
    rejected.extend(more_rejected)
    if all_or_nothing and more_rejected:
        return _not_done(rejected)
    reopened = await _reload_list(svc, req.campaign, req.list) if req.reload else 0
    if inserted or updated or reopened:
        svc.notify()
    logger.info("records_imported campaign=%s list=%s inserted=%d updated=%d rejected=%d "
                "reopened=%d", req.campaign, req.list, inserted, updated, len(rejected),
                reopened)
    return {"inserted": inserted, "updated": updated, "rejected": rejected,
            "reopened": reopened, "committed": True}


async def _reload_list(svc: Service, campaign: str, list_name: str) -> int:
    """A list reload: every record of the list closed ``until_reload`` is ready again."""
    rows = await svc.store.records_where(campaign, list_name, CLOSED, "until_reload")
    now = svc.clock()
    changes: list[Change] = []
    for row in rows:
        if svc.engine.is_open(row["rid"]):
            continue
        rec = record_of(row)
        changes += transitions.reopen(svc.engine, rec, now, actor="@reload", code="@reload")
    if changes:
        await svc.store.write(changes)
    return len(rows)


def _conflicts(svc: Service, req: ImportReq, rows: list[Row],
               known: dict[str, tuple[int, str, str]], busy: set[str]) -> list[Row]:
    """Rows that cannot be applied now: another import has them in flight, they belong
    to another campaign (moving a record is a roll, not an import), or they are leased
    (their numbers must not change under a call in progress)."""
    rejected = []
    for r in rows:
        problem = None
        if r["id"] in busy:
            problem = f"record {r['id']!r} is being imported by another request"
        elif r["id"] in known:
            rid, _, owner = known[r["id"]]
            if owner != req.campaign:
                problem = f"record {r['id']!r} exists in campaign {owner!r}"
            elif svc.engine.lease_of(rid) is not None:
                problem = (f"record {r['id']!r} is leased; import it again once its "
                           "disposition is in")
        if problem is not None:
            rejected.append({"index": r["index"], "id": r["id"], "code": "conflict",
                             "message": problem, "field": f"records[{r['index']}].id"})
    return rejected


async def _apply(svc: Service, req: ImportReq, rows: list[Row], all_or_nothing: bool
                 ) -> tuple[int, int, list[Row]]:
    """Insert or update ``rows``. Their ids are reserved before the database is asked
    which exist, and until the changes are committed: a second import of an id meanwhile
    is a conflict, never a second insert that the database would refuse (which would stop
    the daemon)."""
    ids = {r["id"] for r in rows}
    importing = svc.imports.importing
    busy = ids & importing
    reserved = ids - busy
    importing.update(reserved)
    try:
        return await _apply_reserved(svc, req, rows, all_or_nothing, busy)
    finally:
        importing.difference_update(reserved)


async def _apply_reserved(svc: Service, req: ImportReq, rows: list[Row],
                          all_or_nothing: bool, busy: set[str]
                          ) -> tuple[int, int, list[Row]]:
    eng = svc.engine
    known = await svc.store.existing_ids([r["id"] for r in rows])
    now = svc.clock()
    svc.expire(now)  # a lease that ran out while the ids were read no longer holds its row
    rejected = _conflicts(svc, req, rows, known, busy)
    if rejected:
        if all_or_nothing:
            return 0, 0, rejected
        bad = {x["index"] for x in rejected}
        rows = [r for r in rows if r["index"] not in bad]
    changes: list[Change] = []
    listed = eng.listed
    new_ids = []
    updated = 0
    for r in rows:
        # numbers already on the DNC or block list show so from the start
        phones = [[n, "dnc" if listed.get(n) == "dnc" else "blocked" if n in listed
                   else "active"] for n in r["phones"]]
        if r["id"] in known:
            rid, _, campaign = known[r["id"]]
            changes += transitions.reimport(eng, rid, r, req.list, phones, now, campaign)
            updated += 1
            continue
        rid = eng.next_rid
        eng.next_rid += 1
        rec = Record(rid, r["id"], req.campaign, req.list, phones, r["timezone"],
                     r["priority"], r["data"], team=r["team"])
        changes += transitions.import_record(eng, rec, now)
        new_ids.append(r["id"])
    if changes:
        await svc.store.write(changes)
    return len(new_ids), updated, rejected
