"""One record at a time: ``record.get`` shows it with its history and leases;
``record.reopen`` and ``callback.schedule`` bring it back; ``resolution`` lists the records
whose appointment has passed.

These read the database first (a record's stored row; the engine keeps only what
selection needs), so they run as tasks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from .. import views
from ..core import calendar, transitions
from ..core.errors import BadRequest, Conflict, NextcallError, NotFound
from ..core.model import ResultCode
from ..core.records import CallbackIntent, Record
from ..core.results import CallbackRequest, resolve_callback
from ..protocol import CallbackReq, Name, Request
from ..roles import Peer, may_read_record
from ..storage.snapshot import record_of
from . import permits
from .base import Body, fill_record

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)


class RecordGetReq(Request):
    """``record.get``."""

    record: Annotated[str, Field(min_length=1, max_length=200)]


class ReopenReq(Request):
    """``record.reopen``: back into the pool now, at ``at``, or as a callback."""

    record: Annotated[str, Field(min_length=1, max_length=200)]
    at: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    callback: CallbackReq | None = None
    note: Annotated[str, Field(max_length=10_000)] | None = None


class ScheduleReq(Request):
    """``callback.schedule``: give the record a callback (who may: ``ops.permits``)."""

    record: Annotated[str, Field(min_length=1, max_length=200)]
    at: Annotated[str, Field(min_length=1, max_length=64)]
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    owner: Name | None = None
    team: Name | None = None
    scope: Literal["personal", "personal_then_team", "team", "anyone"] | None = None
    reason: Annotated[str, Field(max_length=1000)] = ""
    override_window: bool = False
    #: a callback window: due at ``at``, promised until ``until`` (same zone)
    until: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    contact_priority: Annotated[int, Field(ge=0, le=9)] = 4
    #: the acting agent (an agent-role peer must name one: logged in to the campaign, or
    #: for special closures to an allowed team); the history names it
    agent: Name | None = None
    #: remind the recipients this many minutes before (no reminder when absent)
    reminder_min: Annotated[int, Field(ge=0, le=1440)] | None = None


class ResolutionReq(Request):
    """``resolution``: records whose appointment has passed, waiting for an admin."""

    campaign: Name | None = None


async def _row(svc: Service, record_id: str) -> dict[str, Any]:
    """The stored record with its history and leases, settled: a record that closed
    while the row was read (a disposition commits after it changes memory) is read again
    once everything changed before now is committed (an empty write commits after it).

    Raises:
        NotFound.
    """
    engine = svc.engine
    row: dict[str, Any] = {}
    for _ in range(3):
        closings = engine.closings
        found = await svc.store.get_record(record_id)
        if found is None:
            raise NotFound(f"no record {record_id!r}", field="record")
        row = found
        if engine.closings == closings or engine.is_open(row["record"]["rid"]):
            break  # nothing closed meanwhile, or the engine's value is the present one
        await svc.store.write([])
    return row


def _current(svc: Service, r: dict[str, Any]) -> Record:
    """A record's present value: the engine's (an open record, completed with its stored
    fields) or the stored row's (closed). Leases whose time ran out while the row was
    being read end first, so an expired lease never shows as live."""
    svc.expire(svc.clock())
    live = svc.engine.record(r["rid"])
    if live is None:
        return record_of(r)
    live.id, live.list, live.data = r["id"], r["list"], r["data"]
    if live.team is None:
        live.team = r["team"]
    return live


def _lease_view(x: dict[str, Any], live_lid: int | None) -> dict[str, Any]:
    return {"lease": x["lid"], "agent": x["agent"],
            "issued_at": calendar.utc_iso(x["issued_at"]),
            "expires_at": calendar.utc_iso(x["expires_at"]), "phone": x["phone"],
            "reason": x["reason"],
            "end": x["end"] or ("active" if live_lid == x["lid"] else "expired"),
            "code": x["code"], "audit": views.audit_view(x)}


async def get(svc: Service, req: RecordGetReq, peer: Peer) -> Body:
    """``record.get``: the record with its contact history and leases."""
    row = await _row(svc, req.record)
    may_read_record(peer, row["leases"], svc.settings.auth, svc.settings.bindings)
    rec = _current(svc, row["record"])  # expires first: the lease list below agrees
    view = views.record_view(rec)
    if not svc.engine.is_open(rec.rid):
        view["score"] = None  # closed: no pool score
    live = svc.engine.lease_of(rec.rid)
    replaced = {h["amends"]: h["hid"] for h in row["history"] if h.get("amends")}
    view["history"] = [views.history_view(h, replaced.get(h["hid"])) for h in row["history"]]
    view["leases"] = [_lease_view(x, live.lid if live is not None else None)
                      for x in row["leases"]]
    return {"record": view}


async def _unleased(svc: Service, record_id: str) -> tuple[Record, list[dict[str, Any]]]:
    """The record's present value, which no lease holds, and its history (the code that
    closed it decides who may reopen it).

    Raises:
        NotFound, Conflict (leased).
    """
    row = await _row(svc, record_id)
    rec = _current(svc, row["record"])
    if rec.lease is not None:
        raise Conflict(f"record {record_id!r} is leased; it must be disposed or released "
                       "first", field="record")
    return rec, row["history"]


def _callback_intent(svc: Service, rec: Record, req: Any, agent: str, scope_default: str,
                     cp: int, now: float) -> CallbackIntent:
    camp = svc.engine.campaign(rec.campaign, "record")
    rc = ResultCode(code="@callback", description="scheduled callback", action="callback",
                    scope=scope_default, contact_priority=cp,
                    reminder_min=getattr(req, "reminder_min", None))
    return resolve_callback(rec, camp, rc, CallbackRequest(
        at=req.at, timezone=req.timezone, scope=req.scope, owner=req.owner, team=req.team,
        reason=req.reason, override_window=req.override_window,
        until=getattr(req, "until", None)),
        agent, now, svc.owner_check(rec.campaign))


async def reopen(svc: Service, req: ReopenReq, peer: Peer) -> Body:
    """``record.reopen`` (a closed record: the roles its closing code names; any other:
    admin): back into the pool now, at ``at``, or as a callback."""
    if req.at is not None and req.callback is not None:
        raise BadRequest("give at or callback, not both", field="callback")
    rec, history = await _unleased(svc, req.record)
    permits.may_reopen(svc, peer, rec, history)
    now = svc.clock()
    cb = None
    due = None
    if req.callback is not None:
        c = req.callback
        # an owner named here must be an agent of the campaign (agent "" checks it)
        cb = _callback_intent(svc, rec, c, "", "team" if c.team else "anyone", 4, now)
        if cb.scope == "personal" and not c.owner:
            raise BadRequest("a personal callback needs callback.owner",
                             field="callback.owner")
    elif req.at is not None:
        due = calendar.resolve_local(req.at, req.timezone or rec.timezone, field="at")
    changes = transitions.reopen(svc.engine, rec, now, actor=f"{peer.role}:{peer.ident}",
                                 code="@reopen", note=req.note, due_at=due, callback=cb)
    svc.notify()
    await svc.store.write(changes)
    svc.callback_changed(rec)
    logger.info("record_reopened campaign=%s state=%s", rec.campaign, rec.state)
    return {"record": views.record_view(rec)}


async def schedule(svc: Service, req: ScheduleReq, peer: Peer) -> Body:
    """``callback.schedule``: give the record a callback (who may: ``ops.permits``)."""
    rec, history = await _unleased(svc, req.record)
    now = svc.clock()
    permits.may_schedule(svc, peer, rec, history, req.agent)
    scope = req.scope or ("personal" if req.owner else "team" if (req.team or rec.team)
                          else "anyone")
    try:
        cb = _callback_intent(svc, rec, req, req.agent or "", scope, req.contact_priority,
                              now)
    except NextcallError as err:
        # this op's fields are top-level (at, timezone, owner, ...), not under "callback."
        # as in dispose and record.reopen: name the field sent
        if err.field is not None:
            err.field = err.field.removeprefix("callback.")
        raise
    changes = transitions.reopen(svc.engine, rec, now, actor=req.agent or peer.who,
                                 code="@callback", note=req.reason, callback=cb)
    svc.notify()
    await svc.store.write(changes)
    svc.callback_changed(rec)
    logger.info("callback_scheduled campaign=%s scope=%s", rec.campaign, cb.scope)
    return {"record": views.record_view(rec)}


async def resolution(svc: Service, req: ResolutionReq, peer: Peer) -> Body:
    """``resolution``: records whose appointment has passed, waiting for an admin."""
    if req.campaign is not None:
        svc.engine.campaign(req.campaign)
    now = svc.clock()
    recs = svc.engine.held_records(req.campaign, now)
    got = await svc.store.payloads([r.rid for r in recs])
    for r in recs:
        fill_record(r, got.get(r.rid))
    return {"records": [{**views.record_view(r), "state": "resolution",
                         "appointment_at": calendar.utc_iso(r.due_at),
                         "waiting_s": round(now - r.due_at, 3)} for r in recs]}
