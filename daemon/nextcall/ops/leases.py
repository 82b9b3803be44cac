"""The call cycle: ``next`` hands a record out, ``dispose`` records its result,
``release`` gives it back unchanged, ``extend`` renews the lease.

These are the hot ops: each changes the engine at once and answers from the commit's
callback (no task, no future). A lease token is ``<lid>.<secret>``; a disposition retried
with the same token and code gets the original answer (marked ``duplicate``), even after
a restart (the answer is stored with the lease's end).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import Field

from .. import views
from ..core import transitions
from ..core.changes import Change
from ..core.errors import (
    BadRequest,
    Conflict,
    LeaseExpired,
    NotFound,
    NotLeaseHolder,
    Unavailable,
    UnknownCampaign,
)
from ..core.errors import (
    LeaseEnded as LeaseEndedError,
)
from ..core.model import ResultCode
from ..core.records import CLOSED, HELD, Lease, Record
from ..core.results import CallbackRequest, Disposition, Outcome, decide
from ..observer import Disposed
from ..protocol import CallbackReq, Name, Request
from ..roles import ADMIN, Peer, may_act_as
from ..storage.base import Fetched
from .base import Body, Reply, hand_out
from .waits import Waiter

if TYPE_CHECKING:
    from ..service import Service

class NextReq(Request):
    """``next``."""

    agent: Name
    campaigns: Annotated[list[Name], Field(min_length=1, max_length=100)] | None = None
    count: Annotated[int, Field(ge=1, le=10_000)] = 1
    wait: Annotated[float, Field(ge=0, le=3600)] = 0.0


class AppointmentReq(Request):
    """``dispose.appointment``: when the appointment is (wall time in ``timezone``, or the
    record's), after which the record waits for an admin (resolution)."""

    at: Annotated[str, Field(min_length=1, max_length=64)]
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class DisposeReq(Request):
    """``dispose``."""

    lease: Annotated[str, Field(min_length=3, max_length=100)]
    code: Annotated[str, Field(min_length=1, max_length=32)]
    agent: Name | None = None
    phone: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    note: Annotated[str, Field(max_length=10_000)] | None = None
    revenue: Annotated[float, Field(allow_inf_nan=False)] | None = None
    callback: CallbackReq | None = None
    appointment: AppointmentReq | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    #: roll codes with ``roll_targets``: the campaign the agent moves the record to
    campaign: Name | None = None


class LeaseReq(Request):
    """``release``."""

    lease: Annotated[str, Field(min_length=3, max_length=100)]
    agent: Name | None = None


class ExtendReq(Request):
    """``extend``: renew for ``seconds`` (default: the campaign's lease length)."""

    lease: Annotated[str, Field(min_length=3, max_length=100)]
    agent: Name | None = None
    seconds: Annotated[int, Field(ge=5, le=86_400)] | None = None


#: what a token lookup found: the live lease, a retry's stored answer, a function that
#: answers once the original commit is in, or a coroutine reading an old lease's row
Found = Lease | bytes | Callable[[Reply], None] | Coroutine[Any, Any, Body]


def _campaign_max_count(svc: Service, campaigns: tuple[str, ...], count: int) -> None:
    """Refuse a ``count`` above the ``max_count`` of any campaign the ``next`` draws from
    (each record is chosen across all of them, so the smallest limit holds).

    Raises:
        BadRequest: naming ``count``.
    """
    for name in campaigns:
        camp = svc.engine.campaigns.get(name)
        if camp is not None and camp.max_count is not None and count > camp.max_count:
            raise BadRequest(f"count must be at most {camp.max_count} for campaign "
                             f"{name!r} (its max_count)", field="count")


def next_(svc: Service, req: NextReq, peer: Peer, reply: Reply) -> None:
    """``next``: lease the best records for the agent, or long-poll up to ``wait``
    seconds for one; answered once the leases are committed."""
    cfg = svc.settings.daemon
    if req.count > cfg.max_count:
        raise BadRequest(f"count must be at most {cfg.max_count}", field="count")
    if req.wait > cfg.max_wait_s:
        raise BadRequest(f"wait must be at most {cfg.max_wait_s} s", field="wait")
    campaigns, teams = svc.engine.scope_for(req.agent, req.campaigns)
    if req.count > 1:
        _campaign_max_count(svc, campaigns, req.count)
    t0 = time.perf_counter()
    now = svc.clock()
    svc.expire(now)
    leases, changes = transitions.issue(svc.engine, req.agent, campaigns, teams, req.count,
                                        peer.uid, now)
    if leases:
        hand_out(svc, leases, changes, now, reply, t0)
    elif req.wait > 0 and not svc.stopping:
        svc.polls.add(Waiter(req, peer, reply, campaigns, teams, now + req.wait, t0), now)
    else:
        svc.observer.next_answered(time.perf_counter() - t0, [])
        reply({"leases": []})


def live_lease(svc: Service, token: str, peer: Peer, agent: str | None, now: float,
               code: str | None = None) -> Found:
    """The live lease for ``token``; or, for an identical retried disposition, the
    original answer (``bytes``) or a function that answers once the original is
    committed; or a coroutine that finds an old lease in the database.

    Raises:
        NotFound, LeaseExpired, LeaseEnded, NotLeaseHolder, BadRequest.
    """
    svc.expire(now)
    lid, secret = svc.engine.find_lease(token)
    lease = svc.engine.leases.get(lid)
    if lease is not None:
        if lease.secret != secret:
            raise NotLeaseHolder("the lease token is not valid", field="lease")
        if agent is not None and agent != lease.agent:
            raise NotLeaseHolder(f"the lease is held by agent {lease.agent!r}",
                                 field="agent")
        if peer.uid != lease.uid and peer.role != ADMIN:
            raise NotLeaseHolder("the lease was taken by another user", field="lease")
        may_act_as(peer, lease.agent, svc.settings.bindings, "lease")
        return lease
    ended = svc.engine.ended.get(lid)
    if ended is None:
        return _stored_lease(svc, lid, secret, now, code)
    if ended.secret != secret:
        raise NotLeaseHolder("the lease token is not valid", field="lease")
    return _ended_answer(svc, lid, ended.kind, ended.code, ended.result, code)


def _ended_answer(svc: Service, lid: int, kind: str, e_code: str | None,
                  result: bytes | None, code: str | None) -> bytes | Callable[[Reply], None]:
    """The answer to a request on an ended lease: the original answer of an identical
    retried disposition (once it is committed), else the error saying how it ended.

    Raises:
        LeaseExpired, LeaseEnded.
    """
    if kind in ("expired", "open"):
        raise LeaseExpired(field="lease")
    if kind == "disposed" and code is not None and code == e_code and result:
        dup = result[:-1] + b',"duplicate":true}'
        pending = svc.inflight.get(lid)
        if pending is None:
            return dup
        return lambda reply: pending.append(lambda: reply(dup))
    raise LeaseEndedError(f"the lease was already {kind}"
                          + (f" with code {e_code!r}" if e_code else ""), field="lease")


async def _stored_lease(svc: Service, lid: int, secret: str, now: float, code: str | None
                        ) -> Body:
    """A lease the engine no longer remembers: its row decides the answer."""
    row = await svc.store.get_lease(lid)
    if row is None:
        raise NotFound("no such lease", field="lease")
    if row["secret"] != secret:
        raise NotLeaseHolder("the lease token is not valid", field="lease")
    kind = row["end"] or ("expired" if row["expires_at"] <= now else "open")
    result = row["result"].encode() if row["result"] else None
    got = _ended_answer(svc, lid, kind, row["code"], result, code)
    assert isinstance(got, bytes)
    body: Body = orjson.loads(got)
    return body


def dialled_index(rec: Record, lease: Lease) -> int:
    """Where the number the lease dialled is among ``rec``'s numbers: a disposition is
    about the call placed, so it follows the number, not a position (``records.import``
    refuses leased records, so their numbers do not change under a lease; this holds
    even if they did).

    Raises:
        Conflict: the dialled number is no longer one of the record's numbers.
    """
    idx = lease.phone_idx
    if not lease.phone:
        return idx  # no number was callable at hand-out: there is none to follow
    phones = rec.phone_list()
    if 0 <= idx < len(phones) and phones[idx][0] == lease.phone:
        return idx  # the common case
    for i, (number, _) in enumerate(phones):
        if number == lease.phone:
            return i
    raise Conflict(f"the number this lease dialled, {lease.phone}, is no longer one of "
                   f"record {rec.id!r}'s numbers", field="lease")


def _disposition(svc: Service, req: DisposeReq, lease: Lease) -> Disposition:
    """The request as the core's rules take it.

    Raises:
        BadRequest: ``phone`` is not one of the record's numbers.
        Conflict: no ``phone``, and the dialled number is no longer the record's.
    """
    rec = lease.record
    if req.phone is not None:
        numbers = [n for n, _ in rec.phone_list()]
        if req.phone not in numbers:
            raise BadRequest(f"{req.phone!r} is not a number of record {rec.id!r}",
                             field="phone")
        phone_idx = numbers.index(req.phone)
    else:
        phone_idx = dialled_index(rec, lease)
    cb = None
    if req.callback is not None:
        c = req.callback
        cb = CallbackRequest(at=c.at, timezone=c.timezone, scope=c.scope, owner=c.owner,
                             team=c.team, reason=c.reason, override_window=c.override_window,
                             until=c.until)
    appt = req.appointment
    return Disposition(
        code=req.code, agent=req.agent or lease.agent, phone_idx=phone_idx, note=req.note,
        revenue=req.revenue, callback=cb, fields=dict(req.fields),
        appointment_at=appt.at if appt else None,
        appointment_tz=appt.timezone if appt else None,
        listed=svc.engine.listed, owner_allowed=svc.owner_check(rec.campaign),
        campaign=req.campaign)


def _answer(rec: Record, code: str, outcome: Outcome) -> bytes:
    """The disposition's answer, encoded once: it is sent now and kept for retries."""
    result: Body = {
        "record": rec.id, "code": code, "state": outcome.state,
        "reason": outcome.reason, "attempts": outcome.attempts,
        "due_at": views.utc_iso(outcome.due_at) if outcome.state != CLOSED else None,
        "owner": outcome.owner, "team": outcome.team,
        "callback": outcome.callback.to_json() if outcome.callback else None,
    }
    if outcome.phones is not None:
        result["phones"] = [{"number": n, "status": s} for n, s in outcome.phones]
    if outcome.campaign is not None:
        result["campaign"], result["list"] = outcome.campaign, outcome.list_name
    if outcome.listed:
        result["listed"] = [{"number": n, "list": w} for n, w in outcome.listed]
    # an exact-size copy: orjson's own bytes sit in a 4 KiB block, and this one is kept
    # for retries (``Engine.ended``)
    return bytes(memoryview(orjson.dumps(result)))


def dispose(svc: Service, req: DisposeReq, peer: Peer, reply: Reply
            ) -> Coroutine[Any, Any, Body] | None:
    """``dispose``: apply a result code to a leased record; answered with the record's new
    state once committed. A retried identical disposition is answered with the original
    result."""
    now = svc.clock()
    got = live_lease(svc, req.lease, peer, req.agent, now, req.code)
    if isinstance(got, bytes):
        reply(got)
        return None
    if not isinstance(got, Lease):
        if asyncio.iscoroutine(got):
            return got
        got(reply)
        return None
    lease, rec = got, got.record
    camp = svc.engine.campaigns.get(rec.campaign)
    if camp is None:
        raise UnknownCampaign(f"campaign {rec.campaign!r} is no longer configured",
                              field="lease")
    disp = _disposition(svc, req, lease)
    outcome = decide(rec, camp, disp, now)
    phone = rec.phone_list()[disp.phone_idx][0] if rec.phone_list() else lease.phone
    if outcome.campaign is not None and outcome.campaign not in svc.engine.campaigns:
        raise UnknownCampaign(f"roll target {outcome.campaign!r} is not configured",
                              field="campaign" if req.campaign else "code")
    answer = _answer(rec, req.code, outcome)
    rc = camp.codes[req.code]
    # gathered before the engine applies the outcome (a roll changes the campaign)
    notice = _notice(lease, rc, disp, outcome, now) if rc.notify else None
    changes = transitions.dispose(svc.engine, lease, outcome, now, code=req.code,
                                  agent=disp.agent, phone=phone, note=req.note,
                                  revenue=req.revenue, answer=answer)
    svc.notify()
    _commit_disposition(svc, changes, lease.lid, rec, req.code, answer, reply, notice)
    return None


def _notice(lease: Lease, rc: ResultCode, disp: Disposition, outcome: Outcome, now: float
            ) -> Disposed:
    """What the code's ``notify`` e-mail tells of this disposition."""
    rec = lease.record
    held = outcome.state == HELD
    return Disposed(
        rid=rec.rid, lid=lease.lid, record=rec.id, campaign=rec.campaign, list=rec.list,
        data=rec.data, code=rc, agent=disp.agent, at=now, state=outcome.state,
        timezone=rec.timezone, appointment_at=outcome.due_at if held else None,
        appointment_tz=(disp.appointment_tz or rec.timezone) if held else None,
        callback=outcome.callback, note=disp.note, fields=dict(outcome.fields))


def _commit_disposition(svc: Service, changes: list[Change], lid: int, rec: Record,
                        code: str, answer: bytes, reply: Reply,
                        notice: Disposed | None = None) -> None:
    """Commit a disposition; identical retries that arrive meanwhile wait for it. The
    code's notifications go out only once it is durable: never for a disposition that a
    failed commit undid."""
    waiting: list[Callable[[], None]] = []
    svc.inflight[lid] = waiting
    campaign = rec.campaign

    def done(res: Fetched | BaseException) -> None:
        svc.inflight.pop(lid, None)
        if isinstance(res, BaseException):
            reply(Unavailable(str(res)))
            return
        # counted once durable, even if the client left while it was committing
        svc.observer.disposed(campaign, code)
        reply(answer)
        # reminders follow the record once the new state is durable
        svc.callback_changed(rec)
        if notice is not None:
            svc.disposition_committed(notice)
        for w in waiting:
            w()
    svc.store.submit(changes, done)


def _not_live(got: Found) -> Coroutine[Any, Any, Body]:
    """Release and extend of a lease that is not live: the stored answer is an error
    (only a disposition has a retry answer)."""
    if asyncio.iscoroutine(got):
        async def check() -> Body:
            await got
            raise LeaseEndedError("the lease was already disposed", field="lease")
        return check()
    raise LeaseEndedError("the lease was already disposed", field="lease")


def release(svc: Service, req: LeaseReq, peer: Peer, reply: Reply
            ) -> Coroutine[Any, Any, Body] | None:
    """``release``: give the record back unchanged."""
    now = svc.clock()
    got = live_lease(svc, req.lease, peer, req.agent, now)
    if not isinstance(got, Lease):
        return _not_live(got)
    changes = transitions.release(svc.engine, got, now)
    svc.notify()
    rec = got.record
    svc.commit_then(changes, reply, lambda: {"record": rec.id, "state": rec.state})
    return None


def extend(svc: Service, req: ExtendReq, peer: Peer, reply: Reply
           ) -> Coroutine[Any, Any, Body] | None:
    """``extend``: renew the lease for ``seconds`` (default: the campaign's length)."""
    now = svc.clock()
    got = live_lease(svc, req.lease, peer, req.agent, now)
    if not isinstance(got, Lease):
        return _not_live(got)
    camp = svc.engine.campaigns.get(got.record.campaign)
    seconds = req.seconds or (camp.lease_s if camp else svc.settings.daemon.lease_s)
    changes = transitions.extend(svc.engine, got, now, seconds)
    # ``seconds`` may shorten the lease: the expiry timer must not wait for the old end
    svc.arm_expiry(got.expires_at)
    lz = got
    svc.commit_then(changes, reply,
                    lambda: {"token": lz.token, "expires_at": views.utc_iso(lz.expires_at),
                             "expires_in_s": round(lz.expires_at - now, 3)})
    return None
