"""What the op handlers share: the engine, the store, the clock and the wake-ups.

The handlers themselves live in ``ops/`` by concern; this module is their context. Every
state change is applied to the engine synchronously (so two concurrent requests can never
both take one record) and then committed as changes (``core/changes.py``) through the
store; the answer is sent only after the commit. If a commit fails the store is broken and
the daemon stops (fail-stop), so nothing unacknowledged survives in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from . import config as configlib
from .clock import WallClock
from .config import Settings
from .core import transitions
from .core.changes import Change
from .core.engine import Engine, ReadyGroup
from .core.errors import ConfigError, Unavailable
from .core.records import Lease, Record
from .notify.events import Subscriptions
from .observer import Disposed, Observer
from .ops.base import Body, Reply, fill_record
from .ops.imports import ImportState
from .ops.waits import LongPolls
from .roles import Peer
from .storage.base import Fetched, Store

logger = logging.getLogger(__name__)

#: allocations between young-generation collections (the default is 700)
GC_YOUNG = 50_000
__all__ = ["Body", "Observer", "Peer", "Reply", "Service", "WallClock", "fill_record"]

def _give_back_memory() -> None:
    """Return the rebuild's freed buffers to the system (glibc keeps freed small blocks
    in its arenas otherwise, and the RSS would stay at the rebuild's peak)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class Service:
    """The context of every handler: one engine over one store."""

    def __init__(self, settings: Settings, store: Store,
                 clock: Callable[[], float] | None = None, *,
                 observer: Observer | None = None,
                 reload_listeners: Iterable[Callable[[Settings], None]] = (),
                 callback_listeners: Iterable[Callable[[Record], None]] = (),
                 disposition_listeners: Iterable[Callable[[Disposed], None]] = (),
                 reminder_status: Callable[[Record], dict[str, Any] | None] | None = None
                 ) -> None:
        self.settings = settings
        self.store = store
        #: the wall clock; a ``WallClock`` (the default) also tells when it was set. A
        #: plain function (tests' clocks) is never "set": its jumps are time passing
        self.clock: Callable[[], float] = clock if clock is not None else WallClock()
        self.engine = Engine(settings.campaigns)
        self.ready = False
        self.stopping = False
        #: staged multi-request imports, and records whose insert is committing
        self.imports = ImportState()
        #: dispositions not yet durable, by lease id: retried identical dispositions wait
        #: here for the original's commit
        self.inflight: dict[int, list[Callable[[], None]]] = {}
        #: records with an amendment between its read and its commit (one at a time)
        self.amending: set[str] = set()
        self.rebuild_stats: dict[str, float] = {}
        #: told about hand-outs, dispositions and expiries (metrics)
        self.observer = observer or Observer()
        #: long polls waiting now
        self.polls = LongPolls(self)
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_at = float("inf")
        #: called with the new settings after a reload (the server keeps a reference)
        self.reload_listeners: list[Callable[[Settings], None]] = list(reload_listeners)
        #: connections that asked for agents' events (``subscribe``)
        self.subscriptions = Subscriptions()
        #: called with a record once a change that may have set, moved or ended its
        #: callback is committed (reminders reschedule from it)
        self.callback_listeners: list[Callable[[Record], None]] = list(callback_listeners)
        #: called once a disposition of a code with ``notify`` is committed (e-mails)
        self.disposition_listeners: list[Callable[[Disposed], None]] = \
            list(disposition_listeners)
        #: a callback's reminder as the ``callbacks`` view shows it (set by reminders)
        self.reminder_status = reminder_status

    @property
    def waiting(self) -> Counter[str]:
        """``next`` long polls waiting now, by campaign they draw from."""
        return self.polls.waiting()

    # ------------------------------------------------------------------ wake-ups
    def notify(self) -> None:
        """Something may have become available: serve the long polls (once per loop
        iteration, however many changes happened in it)."""
        self.polls.notify()

    def expire(self, now: float) -> None:
        """End the leases whose time is up (every op that reads leases calls this first,
        so none sees a lease past its instant, nor one a clock step moved wrongly)."""
        clock = self.clock
        if isinstance(clock, WallClock):
            step = clock.step()
            if step:
                self._clock_stepped(step, now)
        if not self.engine.expiry_due(now):
            return
        expired, changes = transitions.expire(self.engine, now)
        if expired:
            self.store.submit(changes, self._background_done)
            logger.info("leases_expired count=%d", len(expired))
            self.observer.leases_expired(expired)
            self.notify()
        self.arm_expiry(self.engine.next_expiry())

    def _clock_stepped(self, step: float, now: float) -> None:
        """The wall clock was set by ``step`` seconds. A lease is a length of time, and so
        is a long poll's wait: their instants move with the clock, so each keeps the time
        it had left (the moved expiries are written too, for a restart). Due times,
        callbacks and windows follow the wall clock as it reads now: after a step back,
        callbacks and appointments whose instant lies ahead again wait for it again."""
        again, changes = transitions.clock_stepped(self.engine, step, now)
        waiting = self.polls.shift(step)
        logger.warning("clock_stepped step_s=%.3f leases_moved=%d waits_moved=%d "
                       "callbacks_not_due_again=%d", step, len(changes), len(waiting), again)
        if changes:
            self.store.submit(changes, self._background_done)
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        self._expiry_at = float("inf")
        self.arm_expiry(self.engine.next_expiry())
        self.notify()  # the long polls' timer is armed again from the moved deadlines

    def _background_done(self, result: Fetched | BaseException) -> None:
        if isinstance(result, BaseException):
            logger.error("background_write_failed error=%r", result)

    def arm_expiry(self, at: float) -> None:
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

    def expiry_armed_at(self) -> float:
        """The instant the expiry timer is armed for (``inf``: not armed)."""
        return self._expiry_at

    def _on_expiry(self) -> None:
        self._expiry_timer = None
        self._expiry_at = float("inf")
        self.expire(self.clock())
        self.arm_expiry(self.engine.next_expiry())

    def callback_changed(self, rec: Record) -> None:
        """Tell the listeners (reminders) that ``rec``'s callback change is durable."""
        for listener in self.callback_listeners:
            try:
                listener(rec)
            except Exception:  # a listener bug must not fail a committed request
                logger.exception("callback_listener_failed record=%s", rec.id)

    def disposition_committed(self, notice: Disposed) -> None:
        """Tell the listeners (notifications) that a disposition to notify is durable."""
        for listener in self.disposition_listeners:
            try:
                listener(notice)
            except Exception:  # a listener bug must not fail a committed request
                logger.exception("disposition_listener_failed record=%s", notice.record)

    def owner_check(self, campaign: str) -> Callable[[str], bool]:
        """Whether a name may own a callback of ``campaign``: an agent whose (last) login
        included it, logged in now or not ("another agent of the campaign")."""
        def allowed(name: str) -> bool:
            s = self.engine.agents.get(name)
            return s is not None and campaign in s.campaigns
        return allowed

    def commit_then(self, changes: list[Change], reply: Reply,
                    body: Callable[[], Body]) -> None:
        """Commit ``changes``, then answer with ``body()`` (or the storage failure)."""
        def done(result: Fetched | BaseException) -> None:
            reply(Unavailable(str(result)) if isinstance(result, BaseException) else body())
        self.store.submit(changes, done)

    # ------------------------------------------------------------------ connections
    def discard_connection(self, conn_id: int) -> None:
        """Forget staged imports (nothing was committed), event subscriptions and long
        polls of a closed connection."""
        self.imports.discard(conn_id)
        self.subscriptions.discard(conn_id)
        self.polls.discard(conn_id)

    def end_waits(self, conn_id: int) -> None:
        """A client half-closed: answer its long polls now (empty)."""
        self.polls.end(conn_id)

    def stop_waiting(self) -> None:
        """Shutdown: answer every long poll now (empty); stop the timers."""
        self.stopping = True
        self.polls.stop()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()

    # ------------------------------------------------------------------ rebuild
    async def rebuild(self, prefetched: Any = None) -> dict[str, float]:
        """Load every open record, lease and login from the database into the engine
        (``prefetched``: the read ``nextcall serve`` started before its imports)."""
        t0 = time.perf_counter()
        snap = await self.store.snapshot(prefetched)
        versions = await self.store.list_versions()
        now = self.clock()
        horizon = self.engine.budget_horizon_s
        # attempt budgets count hand-outs: only with budgets is the lease history read
        attempts = await self.store.attempts_since(now - horizon) if horizon else []
        t1 = time.perf_counter()
        # the few objects a rebuild makes live for good; the collector need not scan them
        gc.disable()
        try:
            self._build(snap, now)
            self.engine.list_versions.update(versions)
            self.engine.load_attempts(attempts)
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
        eng.bulk_load(groups, snap.phones, snap.others, now, snap.quotes)
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
                fill_record(lz.record, got.get(lz.record.rid))
        self.arm_expiry(self.engine.next_expiry())

    # ------------------------------------------------------------------ reload
    def reload(self, new: Settings, dry_run: bool) -> dict[str, Any]:
        """Plan, and unless ``dry_run`` apply, a new configuration (``ops/admin.py``)."""
        from .ops.admin import apply_settings
        return apply_settings(self, new, dry_run)

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
