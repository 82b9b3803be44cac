"""``amend``: replace a committed disposition's result code (and fields) as if the new
code had been given.

The record's fields before the disposition are stored with its history entry; the new
code is decided again from there (``core/amending.py``), and the outcome replaces the
record's present value: state, attempts, due time, score, numbers, callback, campaign.
Pending reminders follow the new callback. The history keeps both entries; the new one
names the one it replaces, who amended it, when and why.

Who: a supervisor or an admin at any time; the agent who disposed within its campaign's
``amend_grace_s``. An amendment that reopens a closed record also needs a role its
closing code's ``reopen_roles`` name. Refused with ``moved_on`` when the record has moved
on since the disposition: leased again, another history entry after it (a disposition, a
reopen, a scheduled callback, a list reload), or a present state that differs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import Field, model_validator

from .. import views
from ..core import amending, transitions
from ..core.errors import (
    AmendGraceOver,
    BadRequest,
    Conflict,
    Forbidden,
    MovedOn,
    NotFound,
    UnknownCampaign,
)
from ..core.records import CLOSED, Record
from ..core.results import CallbackRequest, Disposition, Outcome, decide
from ..protocol import CallbackReq, Name, Request
from ..roles import SUPERVISOR, Peer
from ..storage.current import current_rows
from . import permits
from .base import Body
from .leases import AppointmentReq
from .records import _current, _row

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)

Row = Mapping[str, Any]


class AmendReq(Request):
    """``amend``: the disposition of ``lease`` (its number or token), or the latest one of
    ``record``, gets ``code`` and the fields that code takes, for ``reason``."""

    lease: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    record: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    code: Annotated[str, Field(min_length=1, max_length=32)]
    reason: Annotated[str, Field(min_length=1, max_length=1000)]
    #: the agent amending (an agent-role peer must name the agent who disposed)
    agent: Name | None = None
    phone: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    note: Annotated[str, Field(max_length=10_000)] | None = None
    revenue: Annotated[float, Field(allow_inf_nan=False)] | None = None
    callback: CallbackReq | None = None
    appointment: AppointmentReq | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    campaign: Name | None = None

    @model_validator(mode="after")
    def _one_target(self) -> AmendReq:
        if (self.lease is None) == (self.record is None):
            raise ValueError("give lease or record (one of them)")
        return self


def _lid(text: str) -> int:
    """The lease number of ``"12"`` or a token ``"12.secret"``.

    Raises:
        BadRequest: naming ``lease``.
    """
    head = text.split(".", 1)[0]
    if not head.isdigit() or len(head) > 18:
        raise BadRequest("lease must be a lease number or token", field="lease")
    return int(head)


async def _record_id(svc: Service, req: AmendReq) -> tuple[str, int | None]:
    """The record's id, and the lease number when the request names a lease.

    Raises:
        NotFound, BadRequest.
    """
    if req.record is not None:
        return req.record, None
    assert req.lease is not None
    lid = _lid(req.lease)
    lease = await svc.store.get_lease(lid)
    if lease is None:
        raise NotFound(f"no lease {lid}", field="lease")
    got = await svc.store.payloads([lease["rid"]])
    if lease["rid"] not in got:
        raise NotFound(f"the record of lease {lid} is gone", field="lease")
    return got[lease["rid"]][0], lid


def target_entry(history: list[Row], lid: int | None) -> Row:
    """The current history entry to amend: the disposition of lease ``lid``, or the
    record's latest disposition.

    Raises:
        NotFound.
    """
    current = [h for h in current_rows(history) if h["lid"] is not None]
    if lid is not None:
        current = [h for h in current if h["lid"] == lid]
    if not current:
        raise NotFound("no disposition to amend" + (f" for lease {lid}" if lid else ""),
                       field="lease" if lid is not None else "record")
    return max(current, key=lambda h: h["hid"])


def moved_on(rec: Record, history: list[Row], leases: list[Row], target: Row) -> None:
    """Refuse when the record has moved on since ``target`` (see the module docstring).

    Raises:
        MovedOn, Conflict (an entry from before dispositions kept their record fields).
    """
    last = max(history, key=lambda h: h["hid"])
    if last["hid"] != target["hid"]:
        raise MovedOn(f"the record has a later history entry ({last['code']!r} by "
                      f"{last['agent']!r})", field="lease")
    later = [x["lid"] for x in leases if x["lid"] > target["lid"]]
    if later or rec.lease is not None:
        raise MovedOn(f"the record was leased again (lease {max(later, default=0) or ''})"
                      .replace(" ()", ""), field="lease")
    now_state = (rec.state, rec.reason if rec.state == CLOSED else None, rec.attempts,
                 rec.campaign)
    then = (target["state"], target["reason"] if target["state"] == CLOSED else None,
            target["attempts"], target["campaign"])
    if now_state != then:
        raise MovedOn(f"the record is {rec.state} now, not {target['state']} as the "
                      "disposition left it", field="lease")
    if not target.get("prior"):
        raise Conflict("this disposition was recorded before amendments were possible",
                       field="lease")


def _root(history: list[Row], target: Row) -> Row:
    """The original disposition of an amendment chain."""
    by_hid = {h["hid"]: h for h in history}
    row = target
    while row.get("amends") in by_hid:
        row = by_hid[row["amends"]]
    return row


def may_amend(svc: Service, peer: Peer, req: AmendReq, history: list[Row], target: Row,
              grace_s: int, now: float) -> None:
    """Supervisors and admins at any time; the agent who disposed within ``grace_s``.

    Raises:
        Forbidden, AmendGraceOver.
    """
    if peer.at_least(SUPERVISOR):
        return
    root = _root(history, target)
    if req.agent is None or req.agent != root["agent"]:
        raise Forbidden(f"an agent amends only its own dispositions (this one is "
                        f"{root['agent']!r}'s); name it in agent", field="agent")
    if now - root["at"] > grace_s:
        raise AmendGraceOver(f"agents may amend for {grace_s} s after the disposition; "
                             "a supervisor may amend it now", field="lease")


def _disposition(svc: Service, req: AmendReq, base: Record, target: Row,
                 listed: dict[str, str]) -> Disposition:
    """The new disposition as the core takes it, on the number the call dialled."""
    numbers = [n for n, _ in base.phone_list()]
    phone = req.phone or target["phone"]
    if req.phone is not None and req.phone not in numbers:
        raise BadRequest(f"{req.phone!r} is not a number of record {base.id!r}",
                         field="phone")
    idx = numbers.index(phone) if phone in numbers else base.phone_idx
    cb = None
    if req.callback is not None:
        c = req.callback
        cb = CallbackRequest(at=c.at, timezone=c.timezone, scope=c.scope, owner=c.owner,
                             team=c.team, reason=c.reason, override_window=c.override_window)
    appt = req.appointment
    return Disposition(
        code=req.code, agent=req.agent or target["agent"], phone_idx=idx, note=req.note,
        revenue=req.revenue, callback=cb, fields=dict(req.fields),
        appointment_at=appt.at if appt else None,
        appointment_tz=appt.timezone if appt else None, listed=listed,
        owner_allowed=svc.owner_check(base.campaign), campaign=req.campaign)


def _decide(svc: Service, req: AmendReq, base: Record, target: Row, unlist: dict[str, str],
            now: float) -> tuple[Outcome, str | None]:
    """The new code's outcome on the record as it was, and the number dialled.

    Raises:
        what ``decide`` raises; UnknownCampaign.
    """
    camp = svc.engine.campaign(base.campaign, "record")
    listed = {n: w for n, w in svc.engine.listed.items() if n not in unlist} if unlist \
        else svc.engine.listed
    disp = _disposition(svc, req, base, target, listed)
    outcome = decide(base, camp, disp, now)
    if outcome.campaign is not None and outcome.campaign not in svc.engine.campaigns:
        raise UnknownCampaign(f"roll target {outcome.campaign!r} is not configured",
                              field="campaign" if req.campaign else "code")
    phones = base.phone_list()
    phone = phones[disp.phone_idx][0] if phones else target["phone"]
    return outcome, phone


async def amend(svc: Service, req: AmendReq, peer: Peer) -> Body:
    """``amend``: see the module docstring."""
    svc.expire(svc.clock())
    record_id, lid = await _record_id(svc, req)
    # two amendments of one record would each read the history before the other's row is
    # written, and both replace the same disposition: the second waits for nothing and
    # is refused (after the first commits, it may be sent again)
    if record_id in svc.amending:
        raise MovedOn("another amendment of this record is being committed; read it and "
                      "amend again", field="lease")
    svc.amending.add(record_id)
    try:
        return await _amend(svc, req, peer, record_id, lid)
    finally:
        svc.amending.discard(record_id)


async def _amend(svc: Service, req: AmendReq, peer: Peer, record_id: str, lid: int | None
                 ) -> Body:
    row = await _row(svc, record_id)
    history, leases = row["history"], row["leases"]
    target = target_entry(history, lid)
    now = svc.clock()
    current = _current(svc, row["record"])  # from here on, nothing awaits until the write
    moved_on(current, history, leases, target)
    camp = svc.engine.campaigns.get(current.campaign) \
        or svc.engine.campaign(target["campaign"], "record")
    may_amend(svc, peer, req, history, target, camp.amend_grace_s, now)
    prior = _json(target["prior"])
    base = amending.before(current, prior)
    candidates = amending.unlisted(prior, svc.engine.listed)
    outcome, phone = _decide(svc, req, base, target, candidates, now)
    if current.state == CLOSED and outcome.state != CLOSED:
        permits.may_reopen(svc, peer, current, history)
    new = amending.after(base, outcome)
    keep = {n for n, _ in outcome.listed}
    changes = transitions.amend(
        svc.engine, current, new, outcome, now, lid=target["lid"], code=req.code,
        agent=req.agent or f"{peer.role}:{peer.ident}", phone=phone, note=req.note,
        revenue=req.revenue, prior=prior, amends=target["hid"], why=req.reason,
        unlist=[n for n in candidates if n not in keep])
    svc.notify()
    await svc.store.write(changes)
    svc.callback_changed(new)
    svc.observer.amended(new.campaign, target["code"], req.code)
    logger.info("disposition_amended campaign=%s from=%s to=%s", new.campaign,
                target["code"], req.code)
    return {"record": views.record_view(new), "code": req.code,
            "amended": {"entry": target["hid"], "lease": target["lid"],
                        "code": target["code"]}}


def _json(text: str | dict[str, Any]) -> dict[str, Any]:
    """A stored JSON column as a dict."""
    if isinstance(text, dict):
        return text
    got: dict[str, Any] = orjson.loads(text)
    return got
