"""Applies requests: validates, changes the core, persists, answers.

The only module that touches both the core and storage. Every state change is applied to
the engine synchronously (so two concurrent requests can never both take one record) and
then committed; the answer is sent only after the commit. If a commit fails the store is
broken and the daemon stops (fail-stop), so nothing unacknowledged survives in memory.

Handlers come in three kinds (``HANDLERS``): ``sync`` ones answer at once from memory;
``deferred`` ones change the engine at once and answer from the commit's callback (the
hot ops: ``next``, ``dispose``, ``release``, ``extend``, logins), so a request costs no
task and no future; ``async`` ones read the database first and run as a task.
"""

from __future__ import annotations

import asyncio
import builtins
import ctypes
import ctypes.util
import gc
import logging
import os
import pwd
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from . import __version__, phones as phonelib
from . import protocol as P
from . import config as configlib
from . import views
from .config import Settings
from .core import calendar
from .core import reload as reloadlib
from .core.engine import SLOTS, Engine, ReadyGroup, callback_standing
from .core.errors import (BadRequest, ConfigError, Conflict, Forbidden, LeaseEnded, LeaseExpired, NextcallError,
                          NotFound, NotLeaseHolder, StorageError, Unavailable, UnknownCampaign)
from .core.records import CLOSED, CallbackIntent, Lease, Record
from .core.model import ResultCode
from .core.results import CallbackRequest, Disposition, decide, resolve_callback
from .notify.events import Subscriptions
from .storage import statements as S
from .storage.snapshot import OTHER_COLUMNS, record_from_row
from .storage.sql import SqlStore
from .storage.writer import Fetched

logger = logging.getLogger(__name__)

ROLE_AGENT, ROLE_SUPERVISOR, ROLE_ADMIN = "agent", "supervisor", "admin"
_RANK = {ROLE_AGENT: 0, ROLE_SUPERVISOR: 1, ROLE_ADMIN: 2}
#: allocations between young-generation collections (the default is 700)
GC_YOUNG = 50_000
#: a long poll's wake-up timer is armed this much early, then the loop spins to the
#: instant (timers on both event loops have millisecond granularity)
SPIN_S = 0.002

Body = dict[str, Any]
#: answers a request: a body, an error, or a body already encoded as JSON bytes
Reply = Callable[[Body | bytes | NextcallError], None]


@dataclass(slots=True)
class Peer:
    """Who is on the other end of a connection (SO_PEERCRED)."""

    conn_id: int
    pid: int
    uid: int
    gid: int
    role: str = ROLE_AGENT
    #: set when the connection closes; long polls stop waiting
    gone: bool = False
    #: writes one line to the connection (the server sets it; ``subscribe`` needs it)
    send: Callable[[bytes], Awaitable[None]] | None = None


@dataclass
class _Stage:
    campaign: str
    list_name: str
    rows: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    ids: set[str] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class _Waiter:
    """A long-polling ``next``."""

    req: P.NextReq
    peer: Peer
    reply: Reply
    campaigns: tuple[str, ...]
    teams: tuple[str, ...]
    deadline: float
    t0: float


def peer_groups(uid: int, gid: int) -> set[int]:
    """The peer's primary and supplementary groups (from the user database)."""
    groups = {gid}
    try:
        groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        pass
    return groups


def role_for(settings: Settings, uid: int, gid: int) -> str:
    """The role a peer has: admin, supervisor or agent (docs/protocol.md)."""
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


def _give_back_memory() -> None:
    """Return the rebuild's freed buffers to the system (glibc keeps freed small blocks
    in its arenas otherwise, and the RSS would stay at the rebuild's peak)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _fill(rec: Record, payload: tuple[str, str, str, str | None] | None) -> None:
    """Complete a record value with the fields kept only in the database."""
    if payload is not None:
        rec.id, rec.list, rec.data = payload[0], payload[1], payload[2]
        if rec.team is None:
            rec.team = payload[3]


class Service:
    """Request handlers over one engine and one store."""

    def __init__(self, settings: Settings, store: SqlStore,
                 clock: Callable[[], float] = time.time, *,
                 reload_listeners: Iterable[Callable[[Settings], None]] = ()) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.engine = Engine(settings.campaigns)
        self.ready = False
        self.stopping = False
        self._stages: dict[tuple[int, str], _Stage] = {}
        #: stages voided by a rejected row: later batches of them are refused, not restarted
        self._void: set[tuple[int, str]] = set()
        #: dispositions not yet durable, by lease id: retried identical dispositions wait
        #: here for the original's commit
        self._inflight: dict[int, list[Callable[[], None]]] = {}
        #: record ids inserted by an import whose commit is still running
        self._importing: set[str] = set()
        self.rebuild_stats: dict[str, float] = {}
        #: told about hand-outs, dispositions and expiries (metrics)
        self.observer = Observer()
        #: long polls waiting now, in arrival order
        self._waiters: list[_Waiter] = []
        self._serve_scheduled = False
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_at = float("inf")
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_at = float("inf")
        #: called with the new settings after a reload (the server keeps a reference)
        self.reload_listeners: list[Callable[[Settings], None]] = list(reload_listeners)
        #: connections that asked for agents' events (``subscribe``)
        self.subscriptions = Subscriptions()
        #: called with a record once a change that may have set, moved or ended its
        #: callback is committed (reminders reschedule from it)
        self.callback_listeners: list[Callable[[Record], None]] = []
        #: a callback's reminder as the ``callbacks`` view shows it (set by reminders)
        self.reminder_status: Callable[[Record], dict[str, Any] | None] | None = None
        s, d, a = "sync", "deferred", "async"
        self.handlers: dict[str, tuple[str, Callable[..., Any]]] = {
            "ping": (s, self.op_ping), "campaigns": (s, self.op_campaigns),
            "agent.login": (d, self.op_login), "agent.logout": (d, self.op_logout),
            "next": (d, self.op_next), "dispose": (d, self.op_dispose),
            "release": (d, self.op_release), "extend": (d, self.op_extend),
            "record.get": (a, self.op_record_get), "records.import": (a, self.op_import),
            "stats": (s, self.op_stats), "config.reload": (s, self.op_reload),
            "record.reopen": (a, self.op_reopen), "callback.schedule": (a, self.op_schedule),
            "resolution": (a, self.op_resolution), "callbacks": (s, self.op_callbacks),
            "subscribe": (s, self.op_subscribe),
        }

    @property
    def waiting(self) -> Counter[str]:
        """``next`` long polls waiting now, by campaign they draw from."""
        c: Counter[str] = Counter()
        for w in self._waiters:
            c.update(w.campaigns)
        return c

    # ------------------------------------------------------------------ plumbing
    def notify(self) -> None:
        """Something may have become available: serve the long polls (once per loop
        iteration, however many changes happened in it)."""
        if self._waiters and not self._serve_scheduled:
            self._serve_scheduled = True
            asyncio.get_running_loop().call_soon(self._serve_waiters)

    def _expire(self, now: float) -> None:
        if not self.engine.expiry_due(now):
            return
        expired = self.engine.expire(now)
        if expired:
            ops = [S.lease_ended(lz.lid, now, "expired") for lz in expired]
            self.store.submit(ops, self._background_done)
            logger.info("leases_expired count=%d", len(expired))
            self.observer.leases_expired(expired)
            self.notify()
        self._arm_expiry(self.engine.next_expiry())

    def _background_done(self, result: Fetched | BaseException) -> None:
        if isinstance(result, BaseException):
            logger.error("background_write_failed error=%r", result)

    def _arm_expiry(self, at: float) -> None:
        """Expire leases at their instant, not only when a request happens to look:
        ``at`` is a lease's expiry; the timer is moved if it is earlier than the one set."""
        if at >= self._expiry_at or at == float("inf"):
            return
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        loop = asyncio.get_running_loop()
        self._expiry_at = at
        self._expiry_timer = loop.call_at(loop.time() + max(at - self.clock(), 0.0),
                                          self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry_timer = None
        self._expiry_at = float("inf")
        self._expire(self.clock())
        self._arm_expiry(self.engine.next_expiry())

    def discard_connection(self, conn_id: int) -> None:
        """Forget staged imports (nothing was committed), event subscriptions and long
        polls of a closed connection."""
        for key in [k for k in self._stages if k[0] == conn_id]:
            del self._stages[key]
        self._void = {k for k in self._void if k[0] != conn_id}
        self.subscriptions.discard(conn_id)
        self._waiters = [w for w in self._waiters if w.peer.conn_id != conn_id]

    def _callback_changed(self, rec: Record) -> None:
        """Tell the listeners (reminders) that ``rec``'s callback change is durable."""
        for listener in self.callback_listeners:
            try:
                listener(rec)
            except Exception:  # a listener bug must not fail a committed request
                logger.exception("callback_listener_failed record=%s", rec.id)

    def _owner_check(self, campaign: str) -> Callable[[str], bool]:
        """Whether a name may own a callback of ``campaign``: an agent whose (last) login
        included it, logged in now or not ("another agent of the campaign")."""
        def allowed(name: str) -> bool:
            s = self.engine.agents.get(name)
            return s is not None and campaign in s.campaigns
        return allowed

    def _commit_then(self, ops: list[S.Op], reply: Reply, body: Callable[[], Body]) -> None:
        """Commit ``ops``, then answer with ``body()`` (or the storage failure)."""
        def done(result: Fetched | BaseException) -> None:
            reply(Unavailable(str(result)) if isinstance(result, BaseException) else body())
        self.store.submit(ops, done)

    # ------------------------------------------------------------------ rebuild
    async def rebuild(self, prefetched: Any = None) -> dict[str, float]:
        """Load every open record, lease and login from the database into the engine
        (``prefetched``: the read ``nextcall serve`` started before its imports)."""
        t0 = time.perf_counter()
        snap = await self.store.snapshot(prefetched)
        now = self.clock()
        t1 = time.perf_counter()
        # the few objects a rebuild makes live for good; the collector need not scan them
        gc.disable()
        try:
            self._build(snap, now)
        finally:
            gc.enable()
            gc.freeze()
            # Requests make short-lived objects that reference counting frees; a young-
            # generation collection every 700 allocations kept finding nothing but the
            # requests in flight (3 % of the loop's time). Every 50,000 is plenty.
            gc.set_threshold(GC_YOUNG, 20, 20)
        del snap
        _give_back_memory()
        t2 = time.perf_counter()
        n = len(self.engine)
        self.rebuild_stats = {"records": float(n), "leases": float(len(self.engine.leases)),
                              "read_s": t1 - t0, "build_s": t2 - t1, "total_s": t2 - t0}
        logger.info("heap_rebuilt records=%d leases=%d read_s=%.3f build_s=%.3f", n,
                    len(self.engine.leases), t1 - t0, t2 - t1)
        self.ready = True
        return self.rebuild_stats

    def _build(self, snap: Any, now: float) -> None:
        eng = self.engine
        eng.set_listed(snap.listed)
        groups: list[ReadyGroup] = snap.groups
        eng.bulk_load(groups, snap.phones, snap.others, now)
        eng.next_rid = max(eng.next_rid, snap.max_rid + 1)
        eng.next_lid = max(eng.next_lid, snap.max_lid + 1)
        for campaign, reason, count in snap.closed_counts:
            eng.set_closed_counts(campaign, reason, count)
        for (lid, secret, rid, agent, uid, issued, expires, phone, pidx, why) in snap.leases:
            if expires <= now:
                continue  # ran out while the daemon was down: the record is free
            rec = eng.record(rid)
            if rec is None or rec.lease is not None or eng.lease_of(rid) is not None:
                continue
            eng.restore_lease(Lease(lid, secret, rec, agent, uid, issued, expires, phone,
                                    pidx, why))
        for agent, campaigns, teams, logged_in in snap.agents:
            cs = [c for c in orjson.loads(campaigns) if c in eng.campaigns]
            s = eng.login(agent, cs, orjson.loads(teams))
            s.logged_in = bool(logged_in)

    async def fill_leases(self) -> None:
        """After a rebuild: complete restored leases' records from the database (their
        holders may ask for them, and a disposition needs the record's team)."""
        leases = list(self.engine.leases.values())
        if leases:
            got = await self.store.payloads([lz.record.rid for lz in leases])
            for lz in leases:
                _fill(lz.record, got.get(lz.record.rid))
        self._arm_expiry(self.engine.next_expiry())

    # ------------------------------------------------------------------ ops: sync
    def op_ping(self, req: P.PingReq, peer: Peer) -> Body:
        """``ping``: the daemon's version and the caller's role."""
        return {"version": __version__, "role": peer.role, "uid": peer.uid,
                "records": len(self.engine)}

    def op_campaigns(self, req: P.CampaignsReq, peer: Peer) -> Body:
        """``campaigns``: each campaign's settings and result codes (what an agent screen
        draws its buttons from)."""
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

    def op_stats(self, req: P.StatsReq, peer: Peer) -> Body:
        """``stats``: open records by slot, closed by reason, zones, leases."""
        now = self.clock()
        self._expire(now)
        eng = self.engine
        names = [req.campaign] if req.campaign else sorted(eng.queues)
        if req.campaign and req.campaign not in eng.queues:
            eng.campaign(req.campaign)
        out = {}
        for name in names:
            q = eng.queues.get(name)
            if q is None:
                out[name] = {"configured": True, **dict.fromkeys(SLOTS, 0), "closed": {}}
                continue
            camp = eng.campaigns.get(name)
            eng.promote(name, now)
            zones = {}
            for tz, (is_open, until, _) in sorted(eng.zone_states(name, now).items()):
                if camp is not None:
                    zones[tz] = {"open": is_open, "changes_at": calendar.utc_iso(until)
                                 if until != float("inf") else None}
            out[name] = {"configured": camp is not None,
                         "enabled": bool(camp and camp.enabled),
                         **q.counts, "zones": zones,
                         # reasons whose records were all reopened read as absent, as after
                         # a restart
                         "closed": {k: v for k, v in q.closed.items() if v}}
        agents = [a for a, s in eng.agents.items() if s.logged_in]
        return {"campaigns": out, "leases": len(eng.leases),
                "agents_logged_in": len(agents), "records_in_memory": len(eng),
                "rebuild": self.rebuild_stats}

    def op_subscribe(self, req: P.SubscribeReq, peer: Peer) -> Body:
        """``subscribe``: this connection receives ``agent``'s reminder events."""
        if peer.send is None:
            raise Unavailable("this connection cannot carry events")
        n = self.subscriptions.add(peer.conn_id, req.agent, peer.send)
        logger.info("events_subscribed conn=%d agent_connections=%d", peer.conn_id, n)
        return {"agent": req.agent, "subscribed": True, "connections": n,
                "events": ["reminder"]}

    def op_reload(self, req: P.ReloadReq, peer: Peer) -> Body:
        """``config.reload`` (admin): re-read the config file; ``dry_run`` only reports."""
        if peer.role != ROLE_ADMIN:
            raise Forbidden("config.reload needs the admin role")
        return self.reload_from_disk(req.dry_run)

    # ------------------------------------------------------------------ ops: agents
    def op_login(self, req: P.LoginReq, peer: Peer, reply: Reply) -> None:
        """``agent.login``: the campaigns and teams an agent works (persisted)."""
        s = self.engine.login(req.agent, req.campaigns, req.teams)
        ops = S.agent_saved(req.agent, list(s.campaigns), list(s.teams), True, self.clock())
        self.notify()
        self._commit_then(ops, reply, lambda: {"agent": req.agent,
                                                "campaigns": list(s.campaigns),
                                                "teams": list(s.teams)})

    def op_logout(self, req: P.LogoutReq, peer: Peer, reply: Reply) -> None:
        """``agent.logout``: the agent's personal-then-team callbacks go to its team."""
        s = self.engine.agents.get(req.agent)
        if s is None:
            raise NotFound(f"agent {req.agent!r} never logged in", field="agent")
        self.engine.logout(req.agent)
        ops = S.agent_saved(req.agent, list(s.campaigns), list(s.teams), False, self.clock())
        self.notify()
        self._commit_then(ops, reply, lambda: {"agent": req.agent, "logged_in": False})

    # ------------------------------------------------------------------ ops: leases
    def op_next(self, req: P.NextReq, peer: Peer, reply: Reply) -> None:
        """``next``: lease the best records for the agent, or long-poll up to ``wait``
        seconds for one; answered once the leases are committed."""
        cfg = self.settings.daemon
        if req.count > cfg.max_count:
            raise BadRequest(f"count must be at most {cfg.max_count}", field="count")
        if req.wait > cfg.max_wait_s:
            raise BadRequest(f"wait must be at most {cfg.max_wait_s} s", field="wait")
        campaigns, teams = self.engine.scope_for(req.agent, req.campaigns)
        t0 = time.perf_counter()
        now = self.clock()
        self._expire(now)
        leases = self.engine.next(req.agent, campaigns, teams, req.count, peer.uid, now)
        if leases:
            self._hand_out(leases, now, reply, t0)
        elif req.wait > 0 and not self.stopping:
            self._waiters.append(_Waiter(req, peer, reply, campaigns, teams,
                                         now + req.wait, t0))
            self._arm(now)
        else:
            self.observer.next_answered(time.perf_counter() - t0, [])
            reply({"leases": []})

    def _hand_out(self, leases: list[Lease], now: float, reply: Reply, t0: float) -> None:
        """Commit ``leases`` (reading their records' stored fields in the same
        transaction), then answer."""
        def done(result: Fetched | BaseException) -> None:
            if isinstance(result, BaseException):
                reply(Unavailable(str(result)))
                return
            for lz in leases:
                _fill(lz.record, result.get(lz.record.rid))
            self.observer.next_answered(time.perf_counter() - t0, leases)
            reply({"leases": [views.lease_view(lz, now) for lz in leases]})
        self.store.submit([S.lease_issued(lz) for lz in leases], done,
                          [lz.record.rid for lz in leases])
        self._arm_expiry(leases[0].expires_at)

    def _serve_waiters(self) -> None:
        """Hand records to waiting long polls, oldest first; answer those whose time is
        up; arm the timer for the next instant something may become possible."""
        self._serve_scheduled = False
        if not self._waiters:
            return
        now = self.clock()
        self._expire(now)
        keep = []
        for w in self._waiters:
            if w.peer.gone:
                continue
            leases = self.engine.next(w.req.agent, w.campaigns, w.teams, w.req.count,
                                      w.peer.uid, now)
            if leases:
                self._hand_out(leases, now, w.reply, time.perf_counter())
            elif now >= w.deadline or self.stopping:
                self.observer.next_answered(0.0, [])
                w.reply({"leases": []})
            else:
                keep.append(w)
        self._waiters = keep
        self._arm(now)

    def _arm(self, now: float) -> None:
        """One timer for the earliest instant any long poll may be served: a record
        falls due, a window opens, a grace period ends, a lease expires, a deadline."""
        if not self._waiters:
            return
        at = min(w.deadline for w in self._waiters)
        for camps in {w.campaigns for w in self._waiters}:
            at = min(at, self.engine.next_wake(camps, now))
        if self._timer is not None:
            if at == self._timer_at:
                return
            self._timer.cancel()
        self._timer_at = at
        loop = asyncio.get_running_loop()
        delay = at - self.clock()
        if delay <= SPIN_S:
            self._timer = loop.call_soon(self._on_timer)
        else:
            self._timer = loop.call_at(loop.time() + delay - SPIN_S, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at, self._timer_at = self._timer_at, float("inf")
        if self.clock() < at and at - self.clock() <= SPIN_S + 0.001:
            # early by less than the timer's granularity: spin to the instant
            self._timer_at = at
            self._timer = asyncio.get_running_loop().call_soon(self._on_timer)
            return
        self._serve_waiters()

    def end_waits(self, conn_id: int) -> None:
        """A client half-closed: answer its long polls now (empty)."""
        keep = []
        for w in self._waiters:
            if w.peer.conn_id == conn_id:
                w.reply({"leases": []})
            else:
                keep.append(w)
        self._waiters = keep

    def stop_waiting(self) -> None:
        """Shutdown: answer every long poll now (empty)."""
        self.stopping = True
        for w in self._waiters:
            if not w.peer.gone:
                w.reply({"leases": []})
        self._waiters = []
        for t in (self._timer, self._expiry_timer):
            if t is not None:
                t.cancel()

    def _live_lease(self, token: str, peer: Peer, agent: str | None, now: float,
                    code: str | None = None
                    ) -> Lease | bytes | Callable[[Reply], None] | Coroutine[Any, Any, Body]:
        """The live lease for ``token``; or, for an identical retried disposition, the
        original answer (``bytes``) or a function that answers once the original is
        committed; or a coroutine that finds an old lease in the database.

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
        if ended is None:
            return self._stored_lease(lid, secret, now, code)
        if ended.secret != secret:
            raise NotLeaseHolder("the lease token is not valid", field="lease")
        return self._ended_answer(lid, ended.kind, ended.code, ended.result, code)

    def _ended_answer(self, lid: int, kind: str, e_code: str | None, result: bytes | None,
                      code: str | None) -> bytes | Callable[[Reply], None]:
        """The answer to a request on an ended lease: the original answer of an identical
        retried disposition (once it is committed), else the error saying how it ended.

        Raises:
            LeaseExpired, LeaseEnded.
        """
        if kind in ("expired", "open"):
            raise LeaseExpired(field="lease")
        if kind == "disposed" and code is not None and code == e_code and result:
            dup = result[:-1] + b',"duplicate":true}'
            pending = self._inflight.get(lid)
            if pending is None:
                return dup
            return lambda reply: pending.append(lambda: reply(dup))
        raise LeaseEnded(f"the lease was already {kind}"
                         + (f" with code {e_code!r}" if e_code else ""), field="lease")

    async def _stored_lease(self, lid: int, secret: str, now: float, code: str | None
                            ) -> Body:
        """A lease the engine no longer remembers: its row decides the answer."""
        row = await self.store.get_lease(lid)
        if row is None:
            raise NotFound("no such lease", field="lease")
        if row["secret"] != secret:
            raise NotLeaseHolder("the lease token is not valid", field="lease")
        kind = row["end"] or ("expired" if row["expires_at"] <= now else "open")
        result = row["result"].encode() if row["result"] else None
        got = self._ended_answer(lid, kind, row["code"], result, code)
        assert isinstance(got, bytes)
        body: Body = orjson.loads(got)
        return body

    def op_dispose(self, req: P.DisposeReq, peer: Peer, reply: Reply
                   ) -> Coroutine[Any, Any, Body] | None:
        """``dispose``: apply a result code to a leased record; answered with the
        record's new state once committed. A retried identical disposition is answered
        with the original result."""
        now = self.clock()
        got = self._live_lease(req.lease, peer, req.agent, now, req.code)
        if isinstance(got, bytes):
            reply(got)
            return None
        if not isinstance(got, Lease):
            if asyncio.iscoroutine(got):
                return got
            got(reply)  # type: ignore[operator]
            return None
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
        result: Body = {
            "record": rec.id, "code": req.code, "state": outcome.state,
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
        # an exact-size copy: orjson's own bytes sit in a 4 KiB block, and this one is
        # kept for retries (``Engine.ended``)
        answer = bytes(memoryview(orjson.dumps(result)))
        moved = outcome.phones is not None or outcome.campaign is not None
        self.engine.dispose(lease, outcome, now, answer, req.code)
        ops: list[S.Op] = [
            S.history(rec, lid=lease.lid, at=now, agent=agent, code=req.code, phone=phone,
                      note=req.note, revenue=req.revenue, fields=disp.fields),
            S.lease_ended(lease.lid, now, "disposed", req.code, answer),
        ]
        for number, which in outcome.listed:
            ops += S.listed(number, which, now, rec.rid, agent)
        ops.append(S.record_state(rec, now, moved=moved))
        self.notify()
        waiting: list[Callable[[], None]] = []
        self._inflight[lease.lid] = waiting
        campaign, code, lid = rec.campaign, req.code, lease.lid

        def done(res: Fetched | BaseException) -> None:
            self._inflight.pop(lid, None)
            if isinstance(res, BaseException):
                reply(Unavailable(str(res)))
                return
            # counted once durable, even if the client left while it was committing
            self.observer.disposed(campaign, code)
            reply(answer)
            # reminders follow the record once the new state is durable
            self._callback_changed(rec)
            for w in waiting:
                w()
        self.store.submit(ops, done)
        return None

    def op_release(self, req: P.LeaseReq, peer: Peer, reply: Reply
                   ) -> Coroutine[Any, Any, Body] | None:
        """``release``: give the record back unchanged."""
        now = self.clock()
        got = self._live_lease(req.lease, peer, req.agent, now)
        if not isinstance(got, Lease):
            return self._not_live(got)
        self.engine.release(got, now)
        self.notify()
        rec = got.record
        self._commit_then([S.lease_ended(got.lid, now, "released")], reply,
                          lambda: {"record": rec.id, "state": rec.state})
        return None

    def op_extend(self, req: P.ExtendReq, peer: Peer, reply: Reply
                  ) -> Coroutine[Any, Any, Body] | None:
        """``extend``: renew the lease for ``seconds`` (default: the campaign's length)."""
        now = self.clock()
        got = self._live_lease(req.lease, peer, req.agent, now)
        if not isinstance(got, Lease):
            return self._not_live(got)
        camp = self.engine.campaigns.get(got.record.campaign)
        seconds = req.seconds or (camp.lease_s if camp else self.settings.daemon.lease_s)
        self.engine.extend(got, now, seconds)
        lz = got
        self._commit_then([S.lease_extended(lz.lid, lz.expires_at)], reply,
                          lambda: {"token": lz.token, "expires_at": views.utc_iso(lz.expires_at),
                                   "expires_in_s": round(lz.expires_at - now, 3)})
        return None

    @staticmethod
    def _not_live(got: Any) -> Coroutine[Any, Any, Body]:
        """Release and extend of a lease that is not live: the stored answer is an error
        (only a disposition has a retry answer)."""
        if asyncio.iscoroutine(got):
            async def check() -> Body:
                await got
                raise LeaseEnded("the lease was already disposed", field="lease")
            return check()
        raise LeaseEnded("the lease was already disposed", field="lease")

    # ------------------------------------------------------------------ ops: records
    async def _row(self, record_id: str) -> dict[str, Any]:
        """The stored record with its history and leases.

        Raises:
            NotFound.
        """
        row = await self.store.get_record(record_id)
        if row is None:
            raise NotFound(f"no record {record_id!r}", field="record")
        return row

    def _current(self, r: dict[str, Any]) -> Record:
        """A record's present value: the engine's (an open record, completed with its
        stored fields) or the stored row's (closed)."""
        live = self.engine.record(r["rid"])
        if live is None:
            return record_from_row(tuple(r[c] for c in OTHER_COLUMNS))
        live.id, live.list, live.data = r["id"], r["list"], r["data"]
        if live.team is None:
            live.team = r["team"]
        return live

    async def op_record_get(self, req: P.RecordGetReq, peer: Peer) -> Body:
        """``record.get``: the record with its contact history and leases."""
        row = await self._row(req.record)
        rec = self._current(row["record"])
        view = views.record_view(rec)
        if not self.engine.is_open(rec.rid):
            view["score"] = None  # closed: no pool score
        live = self.engine.lease_of(rec.rid)
        view["history"] = [views.history_view(h) for h in row["history"]]
        view["leases"] = [{
            "lease": x["lid"], "agent": x["agent"], "issued_at": calendar.utc_iso(
                x["issued_at"]), "expires_at": calendar.utc_iso(x["expires_at"]),
            "phone": x["phone"], "reason": x["reason"],
            "end": x["end"] or ("active" if live is not None and live.lid == x["lid"]
                                else "expired"),
            "code": x["code"]} for x in row["leases"]]
        return {"record": view}

    async def _load(self, record_id: str) -> Record:
        """The record's present value.

        Raises:
            NotFound, Conflict (leased).
        """
        rec = self._current((await self._row(record_id))["record"])
        if rec.lease is not None:
            raise Conflict(f"record {record_id!r} is leased; it must be disposed or released "
                           "first", field="record")
        return rec

    def _change_ops(self, rec: Record, now: float, actor: str, code: str,
                    note: str | None = None) -> list[S.Op]:
        return [S.history(rec, lid=None, at=now, agent=actor, code=code, phone=None,
                          note=note),
                S.record_state(rec, now)]

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

    async def op_reopen(self, req: P.ReopenReq, peer: Peer) -> Body:
        """``record.reopen`` (admin): back into the pool now, at ``at``, or as a
        callback."""
        if peer.role != ROLE_ADMIN:
            raise Forbidden("record.reopen needs the admin role")
        if req.at is not None and req.callback is not None:
            raise BadRequest("give at or callback, not both", field="callback")
        rec = await self._load(req.record)
        now = self.clock()
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
        self.notify()
        await self.store.write(self._change_ops(rec, now, actor, "@reopen", req.note))
        self._callback_changed(rec)
        logger.info("record_reopened campaign=%s state=%s", rec.campaign, rec.state)
        return {"record": views.record_view(rec)}

    async def op_schedule(self, req: P.ScheduleReq, peer: Peer) -> Body:
        """``callback.schedule`` (supervisor, or an agent of a team allowed to reopen a
        record closed as special): give the record a callback."""
        rec = await self._load(req.record)
        now = self.clock()
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
        self.notify()
        actor = req.agent or f"uid:{peer.uid}"
        await self.store.write(self._change_ops(rec, now, actor, "@callback", req.reason))
        self._callback_changed(rec)
        logger.info("callback_scheduled campaign=%s scope=%s", rec.campaign, cb.scope)
        return {"record": views.record_view(rec)}

    async def op_resolution(self, req: P.ResolutionReq, peer: Peer) -> Body:
        """``resolution``: records whose appointment has passed, waiting for an admin."""
        if req.campaign is not None:
            self.engine.campaign(req.campaign)
        now = self.clock()
        recs = self.engine.held_records(req.campaign, now)
        got = await self.store.payloads([r.rid for r in recs])
        for r in recs:
            _fill(r, got.get(r.rid))
        return {"records": [{**views.record_view(r), "state": "resolution",
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

    def op_callbacks(self, req: P.CallbacksReq, peer: Peer) -> Body:
        """``callbacks``: the callback queue (upcoming, due, overdue), for an agent, a
        team or a campaign."""
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
        for rid in self.engine.callback_rids():
            rec = self.engine.record(rid)
            if rec is None or rec.callback is None or not lo <= rec.due_at <= hi:
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
        status = self.reminder_status
        return {"now": calendar.utc_iso(now), "count": len(picked), "counts": counts,
                "truncated": len(picked) > len(shown),
                "callbacks": [views.callback_entry(rec, self.engine.campaigns.get(
                    rec.campaign), now, status(rec) if status is not None else None)
                    for _, _, rec, _ in shown]}

    # ------------------------------------------------------------------ imports
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

    async def op_import(self, req: P.ImportReq, peer: Peer) -> Body:
        """``records.import`` (supervisor): insert or update records, per-row rejections;
        ``stage``/``final`` make several requests one atomic import; ``reload`` reopens
        the list's records closed until a reload."""
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
        rows = await self.store.records_where(campaign, list_name, CLOSED, "until_reload")
        now = self.clock()
        ops: list[S.Op] = []
        for row in rows:
            if self.engine.is_open(row["rid"]):
                continue
            rec = record_from_row(tuple(row[c] for c in OTHER_COLUMNS))
            self.engine.reopen(rec, now)
            ops += self._change_ops(rec, now, "@reload", "@reload")
        if ops:
            await self.store.write(ops)
        return len(rows)

    async def _apply_import(self, req: P.ImportReq, rows: list[dict[str, Any]],
                            all_or_nothing: bool) -> tuple[int, int, list[dict[str, Any]]]:
        eng = self.engine
        known = await self.store.existing_ids([r["id"] for r in rows])
        now = self.clock()
        # a record belongs to one campaign; moving it is an action (roll), not an import
        rejected = []
        for r in rows:
            where = f"records[{r['index']}].id"
            problem = None
            if r["id"] in self._importing:
                problem = f"record {r['id']!r} is being imported by another request"
            elif r["id"] in known:
                rid, _, owner = known[r["id"]]
                if owner != req.campaign:
                    problem = f"record {r['id']!r} exists in campaign {owner!r}"
                elif eng.lease_of(rid) is not None:
                    # its numbers must not change under a call in progress
                    problem = (f"record {r['id']!r} is leased; import it again once its "
                               "disposition is in")
            if problem is not None:
                rejected.append({"index": r["index"], "id": r["id"], "code": "conflict",
                                 "message": problem, "field": where})
        if rejected:
            if all_or_nothing:
                return 0, 0, rejected
            bad = {x["index"] for x in rejected}
            rows = [r for r in rows if r["index"] not in bad]
        ops: list[S.Op] = []
        inserted = updated = 0
        listed = eng.listed
        new_ids = []
        for r in rows:
            # numbers already on the DNC or block list show so from the start
            phones = [[n, "dnc" if listed.get(n) == "dnc" else "blocked" if n in listed
                       else "active"] for n in r["phones"]]
            if r["id"] in known:
                rid = known[r["id"]][0]
                ops.append(S.record_data(rid, list_name=req.list, phones=phones,
                                         timezone=r["timezone"], priority=r["priority"],
                                         data=r["data"], team=r["team"], now=now))
                live = eng.record(rid)
                if live is not None:
                    live.phones, live.timezone, live.priority = phones, r["timezone"], \
                        r["priority"]
                    if r["team"] is not None:
                        live.team = r["team"]
                    eng.update_record(live, now)
                updated += 1
                continue
            rid = eng.next_rid
            eng.next_rid += 1
            rec = Record(rid, r["id"], req.campaign, req.list, phones, r["timezone"],
                         r["priority"], r["data"], team=r["team"])
            ops.append(S.record_inserted(rec, now))
            eng.add(rec, now)
            new_ids.append(r["id"])
            inserted += 1
        if ops:
            self._importing.update(new_ids)
            try:
                await self.store.write(ops)
            finally:
                self._importing.difference_update(new_ids)
        return inserted, updated, rejected

    # ------------------------------------------------------------------ reload
    def reload(self, new: Settings, dry_run: bool) -> dict[str, Any]:
        """Plan, and unless ``dry_run`` apply, a new configuration in one synchronous step.

        Campaigns, result codes and ``[auth]`` take effect at once (roles for new
        connections); ``[daemon]`` keys other than ``log_level``, and ``[metrics]``, need a
        restart and are reported, not applied. Leases and in-flight requests are untouched.
        """
        now = self.clock()
        changes = reloadlib.plan(self.engine, new.campaigns, now)
        self._sample_ids(changes)
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

    def _sample_ids(self, changes: list[reloadlib.CampaignChange]) -> None:
        """Name the sampled records: by id where the engine knows it, else by number
        (``#rid``; pool records' ids live in the database)."""
        for c in changes:
            out = []
            for rid in c.sample_rids:
                rec = self.engine.record(rid)
                out.append(rec.id if rec is not None and rec.id else f"#{rid}")
            c.sample = out

