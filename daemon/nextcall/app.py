"""The daemon's life: startup, run, shutdown, as named phases in reverse order.

Startup: open the store, migrate, rebuild the heap from the database, restore leases,
then accept connections and tell systemd READY=1. Each step registers its undoing on an
``AsyncExitStack`` as it begins, so a failure part-way unwinds exactly what started, and
shutdown is the same stack unwound. SIGTERM/SIGINT: stop accepting, let in-flight
requests finish, commit what is queued, exit 0. A storage failure, or the death of a side
task (store writer, checkpointer, watchdog, metrics refresh, loop-lag probe, reminders;
``supervise.py``), stops the daemon with status 70 so systemd restarts it from the
database: a daemon that fails stops, it never hangs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any

from prometheus_client import CollectorRegistry

from . import __version__, systemd
from .config import Settings
from .core.errors import ConfigError
from .metrics import Exporter, Metrics
from .notify.notices import Notifications
from .notify.reminders import Reminders
from .server import Server
from .service import Service
from .storage.sql import SqlStore
from .supervise import Supervisor, cancel_and_wait, signal_handlers

logger = logging.getLogger(__name__)

#: exit status after a storage failure or a side task's death (sysexits EX_SOFTWARE);
#: non-zero, so ``Restart=on-failure`` restarts the daemon
EXIT_FAILURE = 70


def setup_logging(level: str) -> None:
    """One line per event to stderr; no timestamps when journald adds its own."""
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s %(message)s" if under_journal else \
        "%(asctime)s %(levelname)s %(name)s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    # alembic narrates every context it opens at INFO; keep its warnings only
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    # APScheduler narrates every job it adds and runs; nextcall logs its own events
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING,
                                                   logging.getLogger().level))


class Daemon:
    """Owns the store, service and server of one running daemon.

    ``run`` is the whole life under signal handlers; ``start`` and ``stop`` are its two
    phases, for tests and embedding (``stop`` is safe to call twice, or after a failed
    ``start``).
    """

    def __init__(self, settings: Settings, prefetched: Any = None) -> None:
        self.settings = settings
        #: the start-up read ``nextcall serve`` began before importing the daemon
        self._prefetched = prefetched
        self.stop_event = asyncio.Event()
        #: set once ``start`` returned: the daemon accepts connections
        self.started = asyncio.Event()
        self.exit_code = 0
        #: watches every side task; a death stops the daemon with EXIT_FAILURE
        self.supervisor = Supervisor(on_death=self._side_task_died)
        watch = self.supervisor.watch
        # Every hook goes in through a constructor. The store reports to the server, which
        # needs the service, which needs the store; the reminders need the service that
        # reports to them: those hooks are bound late, through the daemon.
        registry = CollectorRegistry()
        #: the Prometheus families every component reports to; None when metrics are off
        self.metrics = Metrics(registry, campaigns=lambda: self.service.engine.campaigns) \
            if settings.metrics.active else None
        m = self.metrics
        self.store = SqlStore(settings.daemon.database,
                              synchronous=settings.daemon.sqlite_synchronous,
                              on_failure=self._storage_failed, watch=watch,
                              commit_observer=m.commit_done if m else None,
                              after_batch=lambda: self.server.flush(),
                              commit_now_when=lambda: self.server.calm(),
                              committed_now=lambda s: self.server.pacing.committed_inline(s))
        self.service = Service(settings, self.store, observer=m,
                               reload_listeners=[self._apply_settings],
                               callback_listeners=[lambda rec: self.reminders.sync(rec)],
                               disposition_listeners=[
                                   lambda n: self.notifications.committed(n)],
                               reminder_status=lambda rec: self.reminders.status(rec))
        self.server = Server(settings, self.service, metrics=m.request_done if m else None,
                             observer=m)
        #: callback reminders (APScheduler); started after the rebuild
        self.reminders = Reminders(self.service, on_death=self.supervisor.died)
        #: e-mails on committed dispositions of ``notify`` codes
        self.notifications = Notifications(self.service)
        #: the Prometheus endpoint and side tasks; None when ``[metrics]`` is off
        self.exporter = Exporter(settings.metrics, self.service, m, registry, watch=watch) \
            if m is not None else None
        #: what ``stop`` unwinds; None before ``start`` and after ``stop``
        self._stack: AsyncExitStack | None = None

    def reload(self) -> None:
        """SIGHUP: re-read campaigns and result codes; a bad config is refused and logged,
        and the running one stays."""
        logger.info("config_reload_requested signal=SIGHUP")
        systemd.notify("RELOADING=1", "STATUS=reloading configuration")
        try:
            self.service.reload_from_disk()
        except ConfigError as exc:
            for where, msg in exc.problems:
                logger.error("config_problem where=%s problem=%s", where, msg)
        except Exception:  # a reload bug must not kill a serving daemon
            logger.exception("config_reload_failed")
        systemd.notify("READY=1", f"STATUS=serving on {self.server.path}")

    def _apply_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.server.apply_settings(settings)

    def _storage_failed(self, exc: BaseException) -> None:
        logger.critical("storage_failed error=%r action=stopping", exc)
        self._fail()

    def _side_task_died(self, name: str, error: BaseException | str) -> None:
        # the supervisor logged side_task_died with the name and the error
        self._fail()

    def _fail(self) -> None:
        self.exit_code = EXIT_FAILURE
        self.stop_event.set()

    # ------------------------------------------------------------------ startup
    async def start(self) -> None:
        """Startup phase; returns once the daemon accepts connections.

        Raises:
            Whatever a step raised (``StorageError``, ``OSError`` for a socket that
            cannot be bound, ...), after undoing the steps that had begun.
        """
        if self._stack is not None:
            raise RuntimeError("the daemon is started already")
        stack = AsyncExitStack()
        try:
            stats = await self._start_steps(stack)
        except BaseException:
            # the unwinding ends side tasks on purpose: not deaths
            self.supervisor.stop()
            try:
                await stack.aclose()
            except Exception:  # the start's own error is the one to raise
                logger.exception("startup_unwind_failed")
            raise
        self._stack = stack
        self.started.set()
        systemd.notify("READY=1", f"STATUS=serving {int(stats['records'])} records on "
                       f"{self.server.path}")
        logger.info("daemon_ready version=%s socket=%s records=%d rebuild_s=%.3f",
                    __version__, self.server.path, int(stats["records"]), stats["total_s"])

    async def _start_steps(self, stack: AsyncExitStack) -> dict[str, float]:
        """The steps in order. Each registers its undoing before it begins: every
        component's stop copes with a partial start (a store whose open failed still
        disposes of the engines it created)."""
        systemd.notify("STATUS=opening database")
        interval = systemd.watchdog_interval_s()
        if interval:
            # first started, last stopped: pings go on while the daemon drains and the
            # store commits (systemd does not enforce them during startup)
            self._side_task(stack, self._watchdog(interval), "watchdog")
        stack.push_async_callback(self.store.close)
        await self.store.open()
        for step in await self.store.migrate():
            logger.info("schema_migrated step=%s", step)
        systemd.notify("STATUS=rebuilding heap", "EXTEND_TIMEOUT_USEC=120000000")
        stats = await self.service.rebuild(self._prefetched)
        self._prefetched = None
        stack.callback(self.service.stop_waiting)  # cancels the lease-expiry timer
        await self.service.fill_leases()
        # after the server (no new callbacks), before the store (sent rows committed)
        stack.push_async_callback(self.reminders.stop)
        await self.reminders.start()
        # after the server stops (no new dispositions), before the store closes
        stack.push_async_callback(self.notifications.stop)
        if self.exporter is not None:
            stack.push_async_callback(self.exporter.stop)
            await self.exporter.start()
        stack.push_async_callback(self.server.stop)
        socks = systemd.listen_sockets()
        await self.server.start(socks[0] if socks else None)
        # the drain's first step: long polls answered, queued answers written
        stack.callback(self._drain_begins)
        return stats

    def _side_task(self, stack: AsyncExitStack, coro: Coroutine[Any, Any, None],
                   name: str) -> asyncio.Task[None]:
        """Start a side task of the daemon's own: watched, and ended by the stack."""
        task = asyncio.create_task(coro, name=name)
        self.supervisor.watch(task, name)
        stack.push_async_callback(cancel_and_wait, task)
        return task

    async def _watchdog(self, interval: float) -> None:
        # pinged from the loop: a blocked loop stops the pings and systemd restarts us
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _drain_begins(self) -> None:
        self.service.stop_waiting()
        self.server.flush()

    # ------------------------------------------------------------------ shutdown
    async def stop(self) -> None:
        """Shutdown phase: the startup steps undone in reverse order. Safe to call twice.

        A step that fails to stop does not keep the others from stopping: it is logged
        and the exit status becomes EXIT_FAILURE.
        """
        stack, self._stack = self._stack, None
        if stack is None:
            return
        systemd.notify("STOPPING=1", "STATUS=draining")
        logger.info("daemon_stopping")
        self.supervisor.stop()
        try:
            await stack.aclose()
        except Exception:  # stop what can be stopped, then exit non-zero
            logger.exception("daemon_stop_failed")
            self.exit_code = EXIT_FAILURE
        logger.info("daemon_stopped exit=%d", self.exit_code)

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, a storage failure or a side task's death,
        stop; returns the exit status. The signal handlers that were there before are
        back when it returns."""
        handlers = {signal.SIGTERM: self.stop_event.set, signal.SIGINT: self.stop_event.set,
                    signal.SIGHUP: self.reload}
        with signal_handlers(asyncio.get_running_loop(), handlers):
            await self.start()
            try:
                await self.stop_event.wait()
            finally:
                await self.stop()
        return self.exit_code


def loop_factory(choice: str) -> Any:
    """The event loop class to run on: uvloop when asked for (or "auto" and installed)."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("event_loop = \"uvloop\" but uvloop is not installed") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def serve(settings: Settings, prefetched: Any = None) -> int:
    """Run the daemon in the foreground; returns the process exit status."""
    setup_logging(settings.daemon.log_level)
    t0 = time.perf_counter()
    factory = loop_factory(settings.daemon.event_loop)
    logger.info("event_loop_selected loop=%s", factory.__module__.split(".")[0])
    with asyncio.Runner(loop_factory=factory) as runner:
        code = runner.run(Daemon(settings, prefetched).run())
    logger.debug("daemon_exited ran_for_s=%.1f", time.perf_counter() - t0)
    return code
