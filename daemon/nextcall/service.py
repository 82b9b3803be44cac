"""Applies requests: validates, changes the core, persists, answers.

The only module that touches both the core and storage. Every state change is applied to
the engine synchronously (so two concurrent requests can never both take one record) and
then committed; the answer is sent only after the commit. If a commit fails the store is
broken and the daemon stops (fail-stop), so nothing unacknowledged survives in memory.
"""

from __future__ import annotations

import asyncio
import builtins
import gc
import logging
import os
import pwd
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from . import __version__, phones as phonelib
from . import protocol as P
from . import config as configlib
from .config import Settings
from .core import calendar
from .core import reload as reloadlib
from .core.engine import S_RESOLUTION, SLOTS, Engine, callback_standing
from .core.errors import (BadRequest, ConfigError, Conflict, Forbidden, LeaseEnded, LeaseExpired, NextcallError,
                          NotFound, NotLeaseHolder, Unavailable, UnknownCampaign)
from .core.records import CLOSED, LEASED, CallbackIntent, Lease, Record
from .core.model import ResultCode
from .core.results import CallbackRequest, Disposition, decide, resolve_callback
from .notify.events import Subscriptions
from .storage import sql as S

logger = logging.getLogger(__name__)

ROLE_AGENT, ROLE_SUPERVISOR, ROLE_ADMIN = "agent", "supervisor", "admin"
_RANK = {ROLE_AGENT: 0, ROLE_SUPERVISOR: 1, ROLE_ADMIN: 2}


@dataclass(slots=True)
class Peer:
    """Who is on the other end of a connection (SO_PEERCRED)."""

    conn_id: int
    pid: int
    uid: int
    gid: int
    role: str = ROLE_AGENT
    #: set when the connection closes; long polls stop waiting
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    #: writes one line to the connection (the server sets it; ``subscribe`` needs it)
    send: Callable[[bytes], Awaitable[None]] | None = None


@dataclass
class _Stage:
    campaign: str
    list_name: str
    rows: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    ids: set[str] = field(default_factory=set)


def peer_groups(uid: int, gid: int) -> set[int]:
    """The peer's primary and supplementary groups (from the user database)."""
    groups = {gid}
    try:
        groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        pass
    return groups


def role_for(settings: Settings, uid: int, gid: int) -> str:
    """The role SPEC §5 grants a peer: admin, supervisor or agent."""
    a = settings.auth
    if a.trust_own_uid and uid in (0, os.getuid()):
        return ROLE_ADMIN
    if uid in a.admin_uids:
        return ROLE_ADMIN
    groups = peer_groups(uid, gid) if (a.admin_gids or a.supervisor_gids) else {gid}
    if groups & set(a.admin_gids):
        return ROLE_ADMIN
    if uid in a.supervisor_uids or groups & set(a.supervisor_gids):
        return ROLE_SUPERVISOR
    return ROLE_AGENT


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


class Observer:
    """What the service reports as it works (metrics.py implements it); this one ignores
    everything. Called synchronously on the event loop: be quick, never raise."""

    def next_answered(self, seconds: float, leases: list[Lease]) -> None:
        """A ``next`` was answered with ``leases`` (maybe none) after ``seconds`` of work,
        long-poll waiting excluded."""

    def disposed(self, campaign: str, code: str) -> None:
        """A disposition with ``code`` was committed (a retried duplicate is not)."""

    def leases_expired(self, leases: list[Lease]) -> None:
        """``leases`` ran out without a disposition and were ended."""

    def reminder_sent(self, channel: str) -> None:
        """A callback reminder went out on ``channel`` (``event``: to at least one
        subscribed connection; ``email``: accepted by the SMTP server)."""

    def reminder_failed(self, channel: str) -> None:
        """A callback reminder could not be delivered on ``channel`` (``email``: the SMTP
        server was unreachable or refused it; ``scheduler``: its job failed)."""


class Service:
    """Request handlers over one engine and one store."""

    def __init__(self, settings: Settings, store: S.SqlStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.engine = Engine(settings.campaigns)
        self.ready = False
        self.stopping = False
        self._changed = asyncio.Event()
        self._stages: dict[tuple[int, str], _Stage] = {}
        #: stages voided by a rejected row: later batches of them are refused, not restarted
        self._void: set[tuple[int, str]] = set()
        #: commits of dispositions not yet durable, by lease id: a retried identical
        #: disposition is answered only once the original is committed
        self._inflight: dict[int, asyncio.Future[None]] = {}
        self._background: set[asyncio.Future[None]] = set()
        self.rebuild_stats: dict[str, float] = {}
        #: told about hand-outs, dispositions and expiries (metrics)
        self.observer = Observer()
        #: ``next`` long polls waiting now, by campaign they draw from
        self.waiting: Counter[str] = Counter()
        #: called with the new settings after a reload (the server keeps a reference)
        self.reload_listeners: list[Callable[[Settings], None]] = []
        #: connections that asked for agents' events (``subscribe``)
        self.subscriptions = Subscriptions()
        #: called with a record once a change that may have set, moved or ended its
        #: callback is committed (reminders reschedule from it)
        self.callback_listeners: list[Callable[[Record], None]] = []
        #: a callback's reminder as the ``callbacks`` view shows it (set by reminders)
        self.reminder_status: Callable[[Record], dict[str, Any] | None] | None = None
        self.handlers: dict[str, Callable[[Any, Peer], Any]] = {
            "ping": self.op_ping, "campaigns": self.op_campaigns,
            "agent.login": self.op_login, "agent.logout": self.op_logout,
            "next": self.op_next, "dispose": self.op_dispose, "release": self.op_release,
            "extend": self.op_extend, "record.get": self.op_record_get,
            "records.import": self.op_import, "stats": self.op_stats,
            "config.reload": self.op_reload, "record.reopen": self.op_reopen,
            "callback.schedule": self.op_schedule, "resolution": self.op_resolution,
            "callbacks": self.op_callbacks, "subscribe": self.op_subscribe,
        }

    # ------------------------------------------------------------------ plumbing
    def notify(self) -> None:
        """Wake every long-polling ``next``: something may have become available."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _background_write(self, ops: list[S.Op]) -> None:
        """Persist something nobody waits for (lease expiry marks)."""
        fut = self.store.submit(ops)
        self._background.add(fut)
        fut.add_done_callback(self._background_done)

    def _background_done(self, fut: asyncio.Future[None]) -> None:
        self._background.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            logger.error("background_write_failed error=%r", fut.exception())

    def _expire(self, now: float) -> None:
        expired = self.engine.expire(now)
        if expired:
            self._background_write([(S.END_LEASE, {
                "b_lid": lz.lid, "ended_at": now, "end": "expired", "code": None,
                "result": None}) for lz in expired])
            logger.info("leases_expired count=%d", len(expired))
            self.observer.leases_expired(expired)
            self.notify()

    def discard_connection(self, conn_id: int) -> None:
        """Forget staged imports (nothing was committed) and event subscriptions of a
        closed connection."""
        for key in [k for k in self._stages if k[0] == conn_id]:
            del self._stages[key]
        self._void = {k for k in self._void if k[0] != conn_id}
        self.subscriptions.discard(conn_id)

    def _callback_changed(self, rec: Record) -> None:
        """Tell the listeners (reminders) that ``rec``'s callback change is durable."""
        for listener in self.callback_listeners:
            try:
                listener(rec)
            except Exception:  # a listener bug must not fail a committed request
                logger.exception("callback_listener_failed record=%s", rec.id)

    def _owner_check(self, campaign: str) -> Callable[[str], bool]:
        """Whether a name may own a callback of ``campaign``: an agent whose (last) login
        included it, logged in now or not (SPEC §2: "another agent of the campaign")."""
        def allowed(name: str) -> bool:
            s = self.engine.agents.get(name)
            return s is not None and campaign in s.campaigns
        return allowed

    async def dispatch(self, op: str, req: Any, peer: Peer) -> dict[str, Any]:
        """Run one decoded request.

        Raises:
            NextcallError: the request is refused; nothing changed.
        """
        if not self.ready:
            raise Unavailable("the daemon is starting")
        result: dict[str, Any] = await self.handlers[op](req, peer)
        return result

    # ------------------------------------------------------------------ rebuild
    async def rebuild(self) -> dict[str, float]:
        """Load every open record, lease and login from the database into the engine."""
        t0 = time.perf_counter()
        now = self.clock()
        # A million long-lived objects would trigger the cyclic GC over and over while
        # they are created (each full pass scans them all); none of them is garbage.
        gc.disable()
        try:
            return await self._rebuild(now, t0)
        finally:
            gc.enable()
            gc.freeze()  # keep the rebuilt heap out of later collections

    async def _rebuild(self, now: float, t0: float) -> dict[str, float]:
        snap = await self.store.snapshot(now)
        t1 = time.perf_counter()
        self.engine.listed = dict(snap.listed)
        intern: dict[Any, Any] = {}
        get = intern.setdefault
        lease_rids = {row[2] for row in snap.leases}
        by_rid: dict[int, Record] = {}
        recs: list[Record] = []
        append = recs.append
        from_json = CallbackIntent.from_json
        loads = orjson.loads
        for (rid, rec_id, campaign, lst, phones, tz, prio, data, state, reason, due, attempts,
             owner, team, best_cp, phone_idx, callback) in snap.records:
            # interning the few distinct strings halves the memory of a big rebuild
            rec = Record(rid, rec_id, get(campaign, campaign), get(lst, lst), phones,
                         get(tz, tz), prio, data, get(state, state), reason, due, attempts,
                         owner, team if team is None else get(team, team), best_cp,
                         phone_idx, from_json(loads(callback)) if callback else None)
            append(rec)
            if rid in lease_rids:
                by_rid[rid] = rec
        snap.records = []
        # records under a live lease must not enter the heaps: load them, then lease them
        n = self.engine.bulk_load(recs, now)
        self.engine.next_rid = max(self.engine.next_rid, snap.max_rid + 1)
        self.engine.next_lid = max(self.engine.next_lid, snap.max_lid + 1)
        for campaign, reason, count in snap.closed_counts:
            self.engine.set_closed_counts(campaign, reason, count)
        restored = 0
        for (lid, secret, rid, agent, uid, issued, expires, phone, pidx, why) in snap.leases:
            held = by_rid.get(rid)
            if held is None or held.lease is not None:
                continue
            self.engine.restore_lease(Lease(lid, secret, held, agent, uid, issued, expires,
                                            phone, pidx, why))
            restored += 1
        for agent, campaigns, teams, logged_in in snap.agents:
            cs = [c for c in orjson.loads(campaigns) if c in self.engine.campaigns]
            s = self.engine.login(agent, cs, orjson.loads(teams))
            s.logged_in = bool(logged_in)
        t2 = time.perf_counter()
        self.rebuild_stats = {"records": float(n), "leases": float(restored),
                              "read_s": t1 - t0, "build_s": t2 - t1, "total_s": t2 - t0}
        logger.info("heap_rebuilt records=%d leases=%d read_s=%.3f build_s=%.3f", n,
                    restored, t1 - t0, t2 - t1)
        self.ready = True
        return self.rebuild_stats

    # ------------------------------------------------------------------ views
    def _record_view(self, rec: Record) -> dict[str, Any]:
        return {
            "id": rec.id, "campaign": rec.campaign, "list": rec.list,
            "phones": [{"number": n, "status": s} for n, s in rec.phone_list()],
            "timezone": rec.timezone, "priority": rec.priority,
            "data": orjson.Fragment(rec.data),
            "state": LEASED if rec.lease is not None else
            "resolution" if rec.slot == S_RESOLUTION else rec.state, "reason": rec.reason,
            "due_at": calendar.utc_iso(rec.due_at) if rec.due_at else None,
            "attempts": rec.attempts, "owner": rec.owner, "team": rec.team,
            "score": rec.score,
            "callback": rec.callback.to_json() if rec.callback else None,
        }

    def _lease_view(self, lease: Lease, now: float) -> dict[str, Any]:
        return {
            "token": lease.token, "expires_at": calendar.utc_iso(lease.expires_at),
            "expires_in_s": round(lease.expires_at - now, 3), "phone": lease.phone,
            "reason": lease.reason, "agent": lease.agent,
            "record": self._record_view(lease.record),
        }

    # ------------------------------------------------------------------ ops
    async def op_ping(self, req: P.PingReq, peer: Peer) -> dict[str, Any]:
        return {"version": __version__, "role": peer.role, "uid": peer.uid,
                "records": len(self.engine.records)}

    async def op_campaigns(self, req: P.CampaignsReq, peer: Peer) -> dict[str, Any]:
        names = list(self.engine.campaigns)
        if req.agent:
            s = self.engine.agents.get(req.agent)
            names = [c for c in names if s and s.logged_in and c in s.campaigns]
        out = []
        for name in names:
            c = self.engine.campaigns[name]
            out.append({
                "name": name, "description": c.description, "enabled": c.enabled,
                "max_attempts": c.max_attempts, "lease_s": c.lease_s, "grace_s": c.grace_s,
                "timezone": c.timezone, "legal_window": str(c.legal_window),
                "window": {d: [str(iv) for iv in c.window[i]] for i, d in
                           enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
                "codes": [{
                    "code": rc.code, "description": rc.description, "action": rc.action,
                    "enabled": rc.enabled, "category": rc.category,
                    "dial_status": rc.dial_status, "contact": rc.contact,
                    "presentation": rc.presentation, "success": rc.success,
                    "contact_priority": rc.contact_priority,
                    "scope": rc.scope if rc.action == "callback" else None,
                    "requires": rc.requires()} for rc in c.codes.values()],
            })
        return {"campaigns": out}

    async def op_login(self, req: P.LoginReq, peer: Peer) -> dict[str, Any]:
        s = self.engine.login(req.agent, req.campaigns, req.teams)
        await self.store.write(self._agent_ops(req.agent, list(s.campaigns), list(s.teams),
                                               True))
        self.notify()
        return {"agent": req.agent, "campaigns": list(s.campaigns), "teams": list(s.teams)}

    async def op_logout(self, req: P.LogoutReq, peer: Peer) -> dict[str, Any]:
        s = self.engine.agents.get(req.agent)
        if s is None:
            raise NotFound(f"agent {req.agent!r} never logged in", field="agent")
        self.engine.logout(req.agent)
        await self.store.write(self._agent_ops(req.agent, list(s.campaigns), list(s.teams),
                                               False))
        self.notify()
        return {"agent": req.agent, "logged_in": False}

    def _agent_ops(self, agent: str, campaigns: list[str], teams: list[str],
                   logged_in: bool) -> list[S.Op]:
        return [(S.DEL_AGENT, {"b_agent": agent}),
                (S.INS_AGENT, {"agent": agent, "campaigns": _json(campaigns),
                               "teams": _json(teams), "logged_in": logged_in,
                               "updated_at": self.clock()})]

    async def op_next(self, req: P.NextReq, peer: Peer) -> dict[str, Any]:
        cfg = self.settings.daemon
        if req.count > cfg.max_count:
            raise BadRequest(f"count must be at most {cfg.max_count}", field="count")
        if req.wait > cfg.max_wait_s:
            raise BadRequest(f"wait must be at most {cfg.max_wait_s} s", field="wait")
        campaigns, teams = self.engine.scope_for(req.agent, req.campaigns)
        deadline = self.clock() + req.wait
        t0 = time.perf_counter()
        parked_s = 0.0
        first = True
        while True:
            # a client that half-closed still gets its first answer; a long poll whose
            # client left stops before selecting again, so no record is leased to nobody
            if not first and peer.gone.is_set():
                leases = []
                break
            first = False
            now = self.clock()
            self._expire(now)
            leases = self.engine.next(req.agent, campaigns, teams, req.count, peer.uid, now)
            if leases or now >= deadline or self.stopping or peer.gone.is_set():
                break
            wake = min(self.engine.next_wake(campaigns, now), deadline)
            waits = [asyncio.ensure_future(self._changed.wait()),
                     asyncio.ensure_future(peer.gone.wait())]
            self.waiting.update(campaigns)
            t_park = time.perf_counter()
            try:
                await asyncio.wait(waits, timeout=max(wake - now, 0.0) + 0.001,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                parked_s += time.perf_counter() - t_park
                self.waiting.subtract(campaigns)
                for w in waits:
                    w.cancel()
        if leases:
            await self.store.write([(S.INS_LEASE, {
                "lid": lz.lid, "secret": lz.secret, "rid": lz.record.rid, "agent": lz.agent,
                "uid": lz.uid, "issued_at": lz.issued_at, "expires_at": lz.expires_at,
                "phone": lz.phone, "phone_idx": lz.phone_idx, "reason": lz.reason,
                "ended_at": None, "end": None, "code": None, "result": None})
                for lz in leases])
        self.observer.next_answered(time.perf_counter() - t0 - parked_s, leases)
        return {"leases": [self._lease_view(lz, now) for lz in leases]}

    async def _live_lease(self, token: str, peer: Peer, agent: str | None, now: float,
                          code: str | None = None) -> Lease | dict[str, Any]:
        """The live lease for ``token``, or the stored answer of an identical retried
        disposition.

        Raises:
            NotFound, LeaseExpired, LeaseEnded, NotLeaseHolder, BadRequest.
        """
        self._expire(now)
        lid, secret = self.engine.find_lease(token)
        lease = self.engine.leases.get(lid)
        if lease is not None:
            if lease.secret != secret:
                raise NotLeaseHolder("the lease token is not valid", field="lease")
            if agent is not None and agent != lease.agent:
                raise NotLeaseHolder(f"the lease is held by agent {lease.agent!r}",
                                     field="agent")
            if peer.uid != lease.uid and peer.role != ROLE_ADMIN:
                raise NotLeaseHolder("the lease was taken by another user", field="lease")
            return lease
        ended = self.engine.ended.get(lid)
        if ended is not None:
            kind, e_secret, e_code, result = ended.kind, ended.secret, ended.code, ended.result
        else:
            row = await self.store.get_lease(lid)
            if row is None:
                raise NotFound("no such lease", field="lease")
            kind = row["end"] or ("expired" if row["expires_at"] <= now else "open")
            e_secret, e_code = row["secret"], row["code"]
            result = orjson.loads(row["result"]) if row["result"] else None
        if e_secret != secret:
            raise NotLeaseHolder("the lease token is not valid", field="lease")
        if kind == "expired" or kind == "open":
            raise LeaseExpired(field="lease")
        if kind == "disposed" and code is not None and code == e_code and result:
            pending = self._inflight.get(lid)
            if pending is not None:
                await asyncio.shield(pending)
            return {**result, "duplicate": True}
        raise LeaseEnded(f"the lease was already {kind}"
                         + (f" with code {e_code!r}" if e_code else ""), field="lease")

    async def op_dispose(self, req: P.DisposeReq, peer: Peer) -> dict[str, Any]:
        now = self.clock()
        got = await self._live_lease(req.lease, peer, req.agent, now, req.code)
        if isinstance(got, dict):
            return got
        lease = got
        rec = lease.record
        camp = self.engine.campaigns.get(rec.campaign)
        if camp is None:
            raise UnknownCampaign(f"campaign {rec.campaign!r} is no longer configured",
                                  field="lease")
        phone_idx = lease.phone_idx
        if req.phone is not None:
            numbers = [n for n, _ in rec.phone_list()]
            if req.phone not in numbers:
                raise BadRequest(f"{req.phone!r} is not a number of record {rec.id!r}",
                                 field="phone")
            phone_idx = numbers.index(req.phone)
        cb = None
        if req.callback is not None:
            c = req.callback
            cb = CallbackRequest(at=c.at, timezone=c.timezone, scope=c.scope, owner=c.owner,
                                 team=c.team, reason=c.reason,
                                 override_window=c.override_window)
        agent = req.agent or lease.agent
        appt = req.appointment
        disp = Disposition(
            code=req.code, agent=agent, phone_idx=phone_idx, note=req.note,
            revenue=req.revenue, callback=cb, fields=dict(req.fields),
            appointment_at=appt.at if appt else None,
            appointment_tz=appt.timezone if appt else None,
            listed=self.engine.listed, owner_allowed=self._owner_check(rec.campaign))
        outcome = decide(rec, camp, disp, now)
        phone = rec.phone_list()[phone_idx][0] if rec.phone_list() else lease.phone
        if outcome.campaign is not None and outcome.campaign not in self.engine.campaigns:
            raise UnknownCampaign(f"roll target {outcome.campaign!r} is not configured",
                                  field="code")
        result: dict[str, Any] = {
            "record": rec.id, "code": req.code, "state": outcome.state,
            "reason": outcome.reason, "attempts": outcome.attempts,
            "due_at": calendar.utc_iso(outcome.due_at) if outcome.state != CLOSED else None,
            "owner": outcome.owner, "team": outcome.team,
            "callback": outcome.callback.to_json() if outcome.callback else None,
        }
        if outcome.phones is not None:
            result["phones"] = [{"number": n, "status": s} for n, s in outcome.phones]
        if outcome.campaign is not None:
            result["campaign"], result["list"] = outcome.campaign, outcome.list_name
        if outcome.listed:
            result["listed"] = [{"number": n, "list": w} for n, w in outcome.listed]
        cb_json = _json(outcome.callback.to_json()) if outcome.callback else None
        ops: list[S.Op] = [
            (S.INS_HISTORY, {
                "rid": rec.rid, "lid": lease.lid, "at": now, "agent": agent,
                "campaign": rec.campaign, "code": req.code, "phone": phone,
                "note": req.note, "revenue": req.revenue,
                "fields": _json(disp.fields) if disp.fields else None, "callback": cb_json,
                "state": outcome.state, "reason": outcome.reason, "due_at": outcome.due_at,
                "attempts": outcome.attempts}),
            (S.END_LEASE, {"b_lid": lease.lid, "ended_at": now, "end": "disposed",
                           "code": req.code, "result": _json(result)}),
        ]
        for number, which in outcome.listed:
            ops += [(S.DEL_LISTED, {"b_number": number}),
                    (S.INS_LISTED, {"number": number, "list": which, "added_at": now,
                                    "rid": rec.rid, "agent": agent})]
        self.engine.dispose(lease, outcome, now, result, req.code)
        ops.append(self._record_update(rec, now, moved=outcome.phones is not None
                                       or outcome.campaign is not None))
        self.notify()
        fut = self._inflight[lease.lid] = self.store.submit(ops)
        # counted once durable, even if the client left while it was committing
        campaign, code = rec.campaign, req.code
        fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() is not None
                              else self.observer.disposed(campaign, code))
        # reminders follow the record once the new state is durable (client gone or not)
        fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() is not None
                              else self._callback_changed(rec))
        try:
            await asyncio.shield(fut)
        finally:
            self._inflight.pop(lease.lid, None)
        return result

    async def op_release(self, req: P.LeaseReq, peer: Peer) -> dict[str, Any]:
        now = self.clock()
        got = await self._live_lease(req.lease, peer, req.agent, now)
        assert isinstance(got, Lease)
        self.engine.release(got, now)
        self.notify()
        await self.store.write([(S.END_LEASE, {"b_lid": got.lid, "ended_at": now,
                                               "end": "released", "code": None,
                                               "result": None})])
        return {"record": got.record.id, "state": got.record.state}

    async def op_extend(self, req: P.ExtendReq, peer: Peer) -> dict[str, Any]:
        now = self.clock()
        got = await self._live_lease(req.lease, peer, req.agent, now)
        assert isinstance(got, Lease)
        camp = self.engine.campaigns.get(got.record.campaign)
        seconds = req.seconds or (camp.lease_s if camp else self.settings.daemon.lease_s)
        self.engine.extend(got, now, seconds)
        await self.store.write([(S.EXT_LEASE, {"b_lid": got.lid,
                                               "expires_at": got.expires_at})])
        return {"token": got.token, "expires_at": calendar.utc_iso(got.expires_at),
                "expires_in_s": round(got.expires_at - now, 3)}

    async def op_record_get(self, req: P.RecordGetReq, peer: Peer) -> dict[str, Any]:
        row = await self.store.get_record(req.record)
        if row is None:
            raise NotFound(f"no record {req.record!r}", field="record")
        r = row["record"]
        live = self.engine.records.get(req.record)
        if live is not None and live.rid == r["rid"]:
            view = self._record_view(live)
        else:
            # not in memory (closed): the same view, from the row; it has no pool score
            view = {**self._record_view(self._record_from_row(r)), "score": None}
        view["history"] = [{
            "at": calendar.utc_iso(h["at"]), "agent": h["agent"], "code": h["code"],
            "phone": h["phone"], "note": h["note"], "revenue": h["revenue"],
            "fields": orjson.loads(h["fields"]) if h["fields"] else {},
            "state": h["state"], "reason": h["reason"],
            "due_at": calendar.utc_iso(h["due_at"]) if h["due_at"] else None,
            "attempts": h["attempts"]} for h in row["history"]]
        view["leases"] = [{
            "lease": x["lid"], "agent": x["agent"], "issued_at": calendar.utc_iso(
                x["issued_at"]), "expires_at": calendar.utc_iso(x["expires_at"]),
            "phone": x["phone"], "reason": x["reason"],
            "end": x["end"] or ("active" if live and live.lease and live.lease.lid == x["lid"]
                                else "expired"),
            "code": x["code"]} for x in row["leases"]]
        return {"record": view}

    def _validate_rows(self, req: P.ImportReq, camp_tz: str, seen: set[str]
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        good: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for i, raw in enumerate(req.records):
            where = f"records[{i}]"
            rid = raw.get("id") if isinstance(raw, dict) else None
            try:
                try:
                    r = P.ImportRecord.model_validate(raw)
                except ValidationError as exc:
                    raise P.validation_error(exc, where) from None
                if r.id in seen:
                    raise BadRequest(f"duplicate id {r.id!r} in this import",
                                     field=f"{where}.id")
                numbers = []
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
                good.append({"index": i, "id": r.id, "phones": numbers, "timezone": tz,
                             "priority": r.priority, "team": r.team,
                             "data": orjson.dumps(r.data).decode()})
            except NextcallError as err:
                rejected.append({"index": i, "id": rid if isinstance(rid, str) else None,
                                 **err.to_wire()})
        return good, rejected

    async def op_import(self, req: P.ImportReq, peer: Peer) -> dict[str, Any]:
        if _RANK[peer.role] < _RANK[ROLE_SUPERVISOR]:
            raise Forbidden("records.import needs the supervisor or admin role")
        camp = self.engine.campaign(req.campaign)
        if len(req.records) > self.settings.daemon.max_import_records:
            raise BadRequest(f"at most {self.settings.daemon.max_import_records} records "
                             "per request; use stage/final for more", field="records")
        stage = None
        if req.stage is not None:
            key = (peer.conn_id, req.stage)
            if key in self._void:
                if req.final:
                    self._void.discard(key)
                raise BadRequest(f"stage {req.stage!r} was voided by rejected rows; nothing "
                                 "of it will be imported", field="stage")
            stage = self._stages.get(key)
            if stage is None:
                stage = self._stages[key] = _Stage(req.campaign, req.list)
            elif (stage.campaign, stage.list_name) != (req.campaign, req.list):
                raise BadRequest("a stage keeps one campaign and list", field="stage")
        seen = stage.ids if stage is not None else set()
        good, rejected = self._validate_rows(req, camp.timezone, seen)
        if stage is not None:
            stage.rows.extend(good)
            if rejected:
                # an atomic multi-batch import is void as soon as one row is bad
                del self._stages[(peer.conn_id, req.stage)]  # type: ignore[arg-type]
                if not req.final:
                    self._void.add((peer.conn_id, req.stage))  # type: ignore[arg-type]
                return {"inserted": 0, "updated": 0, "rejected": rejected, "staged": 0,
                        "committed": False}
            if not req.final:
                return {"inserted": 0, "updated": 0, "rejected": [],
                        "staged": len(stage.rows), "committed": False}
            del self._stages[(peer.conn_id, req.stage)]  # type: ignore[arg-type]
            good = stage.rows
        elif rejected and req.atomic:
            return {"inserted": 0, "updated": 0, "rejected": rejected, "committed": False}
        all_or_nothing = req.atomic or stage is not None
        inserted, updated, more_rejected = await self._apply_import(req, good, all_or_nothing)
        rejected.extend(more_rejected)
        if all_or_nothing and more_rejected:
            return {"inserted": 0, "updated": 0, "rejected": rejected, "committed": False}
        reopened = await self._reload_list(req.campaign, req.list) if req.reload else 0
        if inserted or updated or reopened:
            self.notify()
        logger.info("records_imported campaign=%s list=%s inserted=%d updated=%d rejected=%d "
                    "reopened=%d", req.campaign, req.list, inserted, updated, len(rejected),
                    reopened)
        return {"inserted": inserted, "updated": updated, "rejected": rejected,
                "reopened": reopened, "committed": True}

    async def _reload_list(self, campaign: str, list_name: str) -> int:
        """A list reload: every record of the list closed ``until_reload`` is ready again."""
        now = self.clock()
        rows = await self.store.records_where(campaign, list_name, CLOSED, "until_reload")
        ops: list[S.Op] = []
        for row in rows:
            if row["id"] in self.engine.records:
                continue
            rec = self._record_from_row(row)
            self.engine.reopen(rec, now)
            ops += self._change_ops(rec, now, "@reload", "@reload")
        if ops:
            await self.store.write(ops)
        return len(rows)

    async def _apply_import(self, req: P.ImportReq, rows: list[dict[str, Any]],
                            all_or_nothing: bool) -> tuple[int, int, list[dict[str, Any]]]:
        now = self.clock()
        eng = self.engine
        known = await self.store.existing_ids([r["id"] for r in rows
                                               if r["id"] not in eng.records])
        # a record belongs to one campaign; moving it is an action (roll), not an import
        rejected = []
        for r in rows:
            live = eng.records.get(r["id"])
            owner = live.campaign if live is not None else \
                known[r["id"]][2] if r["id"] in known else req.campaign
            if owner != req.campaign:
                rejected.append({"index": r["index"], "id": r["id"], "code": "conflict",
                                 "message": f"record {r['id']!r} exists in campaign "
                                            f"{owner!r}", "field": f"records[{r['index']}].id"})
        if rejected:
            if all_or_nothing:
                return 0, 0, rejected
            bad = {x["index"] for x in rejected}
            rows = [r for r in rows if r["index"] not in bad]
        ops: list[S.Op] = []
        new_recs: list[Record] = []
        updates: list[tuple[Record, dict[str, Any]]] = []
        inserted = updated = 0
        listed = eng.listed
        for r in rows:
            # numbers already on the DNC or block list show so from the start
            phones = [[n, "dnc" if listed.get(n) == "dnc" else "blocked" if n in listed
                       else "active"] for n in r["phones"]]
            live = eng.records.get(r["id"])
            if live is not None or r["id"] in known:
                rid = live.rid if live is not None else known[r["id"]][0]
                ops.append((S.UPD_RECORD_DATA, {
                    "b_rid": rid, "list": req.list, "phones": _json(phones),
                    "timezone": r["timezone"], "priority": r["priority"], "data": r["data"],
                    "team": r["team"], "updated_at": now}))
                if live is not None:
                    updates.append((live, {**r, "phones": phones}))
                updated += 1
                continue
            rid = eng.next_rid
            eng.next_rid += 1
            rec = Record(rid, r["id"], req.campaign, req.list, phones, r["timezone"],
                         r["priority"], r["data"], team=r["team"])
            ops.append((S.INS_RECORD, {
                "rid": rid, "id": r["id"], "campaign": req.campaign, "list": req.list,
                "phones": _json(phones), "timezone": r["timezone"],
                "priority": r["priority"], "data": r["data"], "state": "ready",
                "reason": None, "due_at": 0.0, "attempts": 0, "owner": None,
                "team": r["team"], "best_cp": 0, "phone_idx": 0, "callback": None,
                "imported_at": now, "updated_at": now}))
            new_recs.append(rec)
            inserted += 1
        for rec in new_recs:
            eng.add(rec, now)
        for live, r in updates:
            live.list, live.phones = req.list, r["phones"]
            live.timezone, live.priority, live.data = r["timezone"], r["priority"], r["data"]
            if r["team"] is not None:
                live.team = r["team"]
            eng.rescore(live)
            if live.lease is None:
                eng.place(live, now)
        if ops:
            await self.store.write(ops)
        return inserted, updated, rejected

    async def op_stats(self, req: P.StatsReq, peer: Peer) -> dict[str, Any]:
        now = self.clock()
        self._expire(now)
        names = [req.campaign] if req.campaign else sorted(self.engine.queues)
        if req.campaign and req.campaign not in self.engine.queues:
            self.engine.campaign(req.campaign)
        out = {}
        for name in names:
            q = self.engine.queues.get(name)
            if q is None:
                out[name] = {"configured": True, **dict.fromkeys(SLOTS, 0), "closed": {}}
                continue
            camp = self.engine.campaigns.get(name)
            self.engine.promote(q, now)
            zones = {}
            for tz, heap in sorted(q.zones.items()):
                if camp is not None and heap:
                    is_open, until = self.engine.window_open(camp, tz, now)
                    zones[tz] = {"open": is_open, "changes_at": calendar.utc_iso(until)
                                 if until != float("inf") else None}
            out[name] = {"configured": camp is not None,
                         "enabled": bool(camp and camp.enabled),
                         **q.counts, "zones": zones,
                         # reasons whose records were all reopened read as absent, as after
                         # a restart
                         "closed": {k: v for k, v in q.closed.items() if v}}
        agents = [a for a, s in self.engine.agents.items() if s.logged_in]
        return {"campaigns": out, "leases": len(self.engine.leases),
                "agents_logged_in": len(agents), "records_in_memory":
                len(self.engine.records), "rebuild": self.rebuild_stats}

    # ------------------------------------------------------------------ reload
    def reload(self, new: Settings, dry_run: bool) -> dict[str, Any]:
        """Plan, and unless ``dry_run`` apply, a new configuration in one synchronous step.

        Campaigns, result codes and ``[auth]`` take effect at once (roles for new
        connections); ``[daemon]`` keys other than ``log_level``, and ``[metrics]``, need a
        restart and are reported, not applied. Leases and in-flight requests are untouched.
        """
        now = self.clock()
        changes = reloadlib.plan(self.engine, new.campaigns, now)
        old_d, new_d = self.settings.daemon, new.daemon
        restart = sorted(k for k in type(old_d).model_fields
                         if k != "log_level" and getattr(old_d, k) != getattr(new_d, k))
        old_m, new_m = self.settings.metrics, new.metrics
        restart += sorted(f"metrics.{k}" for k in type(old_m).model_fields
                          if getattr(old_m, k) != getattr(new_m, k))
        answer: dict[str, Any] = {
            "dry_run": dry_run, "applied": False,
            "campaigns": [c.to_json() for c in changes if c.status != "unchanged"],
            "unchanged": [c.campaign for c in changes if c.status == "unchanged"],
            "auth_changed": self.settings.auth != new.auth,
            "restart_required": restart,
        }
        if dry_run:
            return answer
        reloadlib.apply(self.engine, new.campaigns, now)
        daemon_cfg = old_d.model_copy(update={"log_level": new_d.log_level})
        self.settings = Settings(path=self.settings.path, daemon=daemon_cfg, auth=new.auth,
                                 campaigns=new.campaigns, files=new.files,
                                 resultsets=new.resultsets, metrics=old_m,
                                 smtp=new.smtp, agents=new.agents)
        logging.getLogger().setLevel(new_d.log_level.upper())
        for listener in self.reload_listeners:
            listener(self.settings)
        self.notify()
        answer["applied"] = True
        for c in changes:
            if c.status != "unchanged":
                logger.info("campaign_reloaded campaign=%s status=%s settings=%s "
                            "codes_added=%s codes_removed=%s eligibility_changed=%d "
                            "order_changed=%d", c.campaign, c.status, ",".join(c.settings),
                            ",".join(c.codes_added), ",".join(c.codes_removed),
                            c.eligibility_changed, c.order_changed)
        if restart:
            logger.warning("config_restart_required keys=%s", ",".join(restart))
        logger.info("config_reloaded campaigns=%d changed=%d", len(new.campaigns),
                    len(answer["campaigns"]))
        return answer

    def reload_from_disk(self, dry_run: bool = False) -> dict[str, Any]:
        """Re-read the config file the daemon started with.

        Raises:
            ConfigError: the new config is invalid; nothing changed.
        """
        try:
            new = configlib.load(self.settings.path)
        except ConfigError as exc:
            logger.error("config_reload_refused problems=%d first=%r", len(exc.problems),
                         f"{exc.problems[0][0]}: {exc.problems[0][1]}")
            raise
        return self.reload(new, dry_run)

    async def op_reload(self, req: P.ReloadReq, peer: Peer) -> dict[str, Any]:
        if peer.role != ROLE_ADMIN:
            raise Forbidden("config.reload needs the admin role")
        return self.reload_from_disk(req.dry_run)

    # ------------------------------------------------------------------ admin changes
    @staticmethod
    def _record_from_row(r: dict[str, Any]) -> Record:
        return Record(r["rid"], r["id"], r["campaign"], r["list"], r["phones"], r["timezone"],
                      r["priority"], r["data"], r["state"], r["reason"], r["due_at"],
                      r["attempts"], r["owner"], r["team"], r["best_cp"], r["phone_idx"],
                      CallbackIntent.from_json(orjson.loads(r["callback"]))
                      if r["callback"] else None)

    async def _load(self, record_id: str) -> tuple[Record, str | None]:
        """The record, from memory or (closed) from the database, and its last code.

        Raises:
            NotFound, Conflict (leased).
        """
        row = await self.store.get_record(record_id)
        if row is None:
            raise NotFound(f"no record {record_id!r}", field="record")
        last = row["history"][-1]["code"] if row["history"] else None
        live = self.engine.records.get(record_id)
        rec = live if live is not None else self._record_from_row(row["record"])
        if rec.lease is not None:
            raise Conflict(f"record {record_id!r} is leased; it must be disposed or released "
                           "first", field="record")
        return rec, last

    @staticmethod
    def _record_update(rec: Record, now: float, moved: bool = False) -> S.Op:
        """The row update that stores ``rec``'s current state (with its numbers, campaign
        and list too when a disposition ``moved`` them)."""
        row = {"b_rid": rec.rid, "state": rec.state, "reason": rec.reason,
               "due_at": rec.due_at, "attempts": rec.attempts, "owner": rec.owner,
               "team": rec.team, "best_cp": rec.best_cp, "phone_idx": rec.phone_idx,
               "callback": _json(rec.callback.to_json()) if rec.callback else None,
               "updated_at": now}
        if not moved:
            return (S.UPD_RECORD, row)
        return (S.UPD_RECORD_MOVE, {**row, "phones": _json(rec.phone_list()),
                                    "campaign": rec.campaign, "list": rec.list})

    def _change_ops(self, rec: Record, now: float, actor: str, code: str,
                    note: str | None = None) -> list[S.Op]:
        cb_json = _json(rec.callback.to_json()) if rec.callback else None
        return [
            (S.INS_HISTORY, {
                "rid": rec.rid, "lid": None, "at": now, "agent": actor,
                "campaign": rec.campaign, "code": code, "phone": None, "note": note,
                "revenue": None, "fields": None, "callback": cb_json, "state": rec.state,
                "reason": rec.reason, "due_at": rec.due_at, "attempts": rec.attempts}),
            self._record_update(rec, now),
        ]

    def _callback_intent(self, rec: Record, req: Any, agent: str, scope_default: str,
                         cp: int, now: float) -> CallbackIntent:
        camp = self.engine.campaign(rec.campaign, "record")
        rc = ResultCode(code="@callback", description="scheduled callback",
                        action="callback", scope=scope_default, contact_priority=cp,
                        reminder_min=getattr(req, "reminder_min", None))
        return resolve_callback(rec, camp, rc, CallbackRequest(
            at=req.at, timezone=req.timezone, scope=req.scope, owner=req.owner,
            team=req.team, reason=req.reason, override_window=req.override_window),
            agent, now, self._owner_check(rec.campaign))

    async def op_reopen(self, req: P.ReopenReq, peer: Peer) -> dict[str, Any]:
        if peer.role != ROLE_ADMIN:
            raise Forbidden("record.reopen needs the admin role")
        if req.at is not None and req.callback is not None:
            raise BadRequest("give at or callback, not both", field="callback")
        now = self.clock()
        rec, _ = await self._load(req.record)
        actor = f"admin:{peer.uid}"
        cb = None
        due = None
        if req.callback is not None:
            c = req.callback
            # an owner named here must be an agent of the campaign (agent "" checks it)
            cb = self._callback_intent(rec, c, "", "team" if c.team else "anyone", 4, now)
            if cb.scope == "personal" and not c.owner:
                raise BadRequest("a personal callback needs callback.owner",
                                 field="callback.owner")
        elif req.at is not None:
            due = calendar.resolve_local(req.at, req.timezone or rec.timezone, field="at")
        self.engine.reopen(rec, now, due, cb)
        await self.store.write(self._change_ops(rec, now, actor, "@reopen", req.note))
        self._callback_changed(rec)
        self.notify()
        logger.info("record_reopened campaign=%s state=%s", rec.campaign, rec.state)
        return {"record": self._record_view(rec)}

    async def op_schedule(self, req: P.ScheduleReq, peer: Peer) -> dict[str, Any]:
        now = self.clock()
        rec, last = await self._load(req.record)
        camp = self.engine.campaign(rec.campaign, "record")
        allowed = _RANK[peer.role] >= _RANK[ROLE_SUPERVISOR]
        if not allowed and rec.state == CLOSED and rec.reason == "special" and req.agent:
            teams = {t for rc in camp.codes.values() if rc.action == "special"
                     for t in rc.reopen_teams}
            s = self.engine.agents.get(req.agent)
            allowed = bool(s and s.logged_in and rec.campaign in s.campaigns
                           and teams & set(s.teams))
        if not allowed:
            raise Forbidden("callback.schedule needs the supervisor role, or (for a record "
                            "closed as special) an agent logged in to a team allowed to "
                            "reopen it", field="agent" if req.agent else None)
        if rec.state == CLOSED and rec.reason in ("dnc", "no_numbers") \
                and peer.role != ROLE_ADMIN:
            raise Forbidden(f"a record closed as {rec.reason!r} is reopened by an admin "
                            "(record.reopen)", field="record")
        scope = req.scope or ("personal" if req.owner else "team" if (req.team or rec.team)
                              else "anyone")
        try:
            cb = self._callback_intent(rec, req, req.agent or "", scope,
                                       req.contact_priority, now)
        except NextcallError as err:
            # this op's fields are top-level (at, timezone, owner, ...), not under
            # "callback." as in dispose and record.reopen: name the field sent
            if err.field is not None:
                err.field = err.field.removeprefix("callback.")
            raise
        self.engine.reopen(rec, now, None, cb)
        actor = req.agent or f"uid:{peer.uid}"
        await self.store.write(self._change_ops(rec, now, actor, "@callback", req.reason))
        self._callback_changed(rec)
        self.notify()
        logger.info("callback_scheduled campaign=%s scope=%s", rec.campaign, cb.scope)
        return {"record": self._record_view(rec)}

    async def op_resolution(self, req: P.ResolutionReq, peer: Peer) -> dict[str, Any]:
        if req.campaign is not None:
            self.engine.campaign(req.campaign)
        now = self.clock()
        recs = self.engine.held_records(req.campaign, now)
        return {"records": [{**self._record_view(r), "state": "resolution",
                             "appointment_at": calendar.utc_iso(r.due_at),
                             "waiting_s": round(now - r.due_at, 3)} for r in recs]}


    # ------------------------------------------------------------------ callbacks
    def _sees_callback(self, agent: str, rec: Record) -> bool:
        """Whether ``rec``'s callback is in ``agent``'s queue: its own, one of its teams'
        (scopes ``team`` and ``personal_then_team``), or an ``anyone`` callback of a
        campaign it works."""
        if rec.owner == agent:
            return True
        s = self.engine.agents.get(agent)
        cb = rec.callback
        if s is None or cb is None or rec.campaign not in s.campaigns:
            return False
        if cb.scope == "anyone":
            return True
        return cb.scope in ("team", "personal_then_team") and rec.team in s.teams

    def _callback_entry(self, rec: Record, now: float) -> dict[str, Any]:
        cb = rec.callback
        assert cb is not None
        camp = self.engine.campaigns.get(rec.campaign)
        standing, late_s = callback_standing(rec.due_at, camp.grace_s if camp else 0, now)
        status = self.reminder_status
        return {
            "record": rec.id, "campaign": rec.campaign, "owner": rec.owner or None,
            "team": rec.team, "scope": cb.scope, "due_at": calendar.utc_iso(rec.due_at),
            "local": cb.local, "timezone": cb.timezone,
            "callee_local": calendar.local_iso(rec.due_at, rec.timezone),
            "callee_timezone": rec.timezone, "contact_priority": cb.contact_priority,
            "reason": cb.reason, "code": cb.code, "state": standing,
            "late_s": round(late_s, 3), "in_s": round(max(rec.due_at - now, 0.0), 3),
            "leased": rec.lease is not None,
            "leased_to": rec.lease.agent if rec.lease is not None else None,
            "reminder": status(rec) if status is not None else None,
        }

    async def op_callbacks(self, req: P.CallbacksReq, peer: Peer) -> dict[str, Any]:
        if peer.role == ROLE_AGENT and req.agent is None:
            raise Forbidden("an agent sees its own and its teams' callbacks: give agent "
                            "(supervisors may list every callback)", field="agent")
        if req.campaign is not None:
            self.engine.campaign(req.campaign)
        lo = calendar.resolve_local(req.from_, "UTC", field="from") \
            if req.from_ is not None else float("-inf")
        hi = calendar.resolve_local(req.to, "UTC", field="to") \
            if req.to is not None else float("inf")
        if lo > hi:
            raise BadRequest("from must not be after to", field="to")
        states = set(req.states or P.CALLBACK_STATES)
        now = self.clock()
        self._expire(now)
        picked: list[tuple[float, int, Record, str]] = []
        counts = dict.fromkeys(P.CALLBACK_STATES, 0)
        for rec in self.engine.callbacks.values():
            if rec.callback is None or not lo <= rec.due_at <= hi:
                continue
            if req.campaign is not None and rec.campaign != req.campaign:
                continue
            if req.team is not None and rec.team != req.team:
                continue
            if req.agent is not None and not self._sees_callback(req.agent, rec):
                continue
            camp = self.engine.campaigns.get(rec.campaign)
            standing = callback_standing(rec.due_at, camp.grace_s if camp else 0, now)[0]
            if standing not in states:
                continue
            counts[standing] += 1
            picked.append((rec.due_at, rec.rid, rec, standing))
        picked.sort(key=lambda t: (t[0], t[1]))
        shown = picked[:req.limit]
        return {"now": calendar.utc_iso(now), "count": len(picked), "counts": counts,
                "truncated": len(picked) > len(shown),
                "callbacks": [self._callback_entry(rec, now) for _, _, rec, _ in shown]}

    async def op_subscribe(self, req: P.SubscribeReq, peer: Peer) -> dict[str, Any]:
        if peer.send is None:
            raise Unavailable("this connection cannot carry events")
        n = self.subscriptions.add(peer.conn_id, req.agent, peer.send)
        logger.info("events_subscribed conn=%d agent_connections=%d", peer.conn_id, n)
        return {"agent": req.agent, "subscribed": True, "connections": n,
                "events": ["reminder"]}
