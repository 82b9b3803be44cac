"""The daemon's life: startup, run, shutdown, as named phases in reverse order.

Startup: open the store, migrate, rebuild the heap from the database, restore leases,
then accept connections and tell systemd READY=1. SIGTERM/SIGINT: stop accepting, let
in-flight requests finish, commit what is queued, exit 0. A storage failure stops the
daemon with a non-zero status so a supervisor restarts it from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from . import __version__, systemd
from .config import Settings
from .core.errors import ConfigError
from .metrics import Exporter
from .notify.reminders import Reminders
from .server import Server
from .service import Service
from .storage.sql import SqlStore

logger = logging.getLogger(__name__)


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
    """Owns the store, service and server of one running daemon."""

    def __init__(self, settings: Settings, prefetched: Any = None) -> None:
        self.settings = settings
        #: the start-up read ``nextcall serve`` began before importing the daemon
        self._prefetched = prefetched
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.store = SqlStore(settings.daemon.database,
                              synchronous=settings.daemon.sqlite_synchronous,
                              on_failure=self._storage_failed)
        self.service = Service(settings, self.store)
        self.server = Server(settings, self.service)
        self.store.after_batch = self.server.flush
        self.store.commit_now_when = self.server.calm
        #: callback reminders (APScheduler); started after the rebuild
        self.reminders = Reminders(self.service)
        self.service.reload_listeners.append(self._apply_settings)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: the Prometheus endpoint and its hooks; None when ``[metrics]`` is off
        self.exporter = Exporter(settings.metrics, self.service, self.store, self.server) \
            if settings.metrics.active else None

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
        except Exception:  # noqa: BLE001 - a reload bug must not kill a serving daemon
            logger.exception("config_reload_failed")
        systemd.notify("READY=1", f"STATUS=serving on {self.server.path}")

    def _apply_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.server.settings = settings

    def _storage_failed(self, exc: BaseException) -> None:
        logger.critical("storage_failed error=%r action=stopping", exc)
        self.exit_code = 70
        self.stop_event.set()

    async def start(self) -> None:
        """Startup phase; returns once the daemon accepts connections."""
        systemd.notify("STATUS=opening database")
        await self.store.open()
        applied = await self.store.migrate()
        for step in applied:
            logger.info("schema_migrated step=%s", step)
        systemd.notify("STATUS=rebuilding heap", "EXTEND_TIMEOUT_USEC=120000000")
        stats = await self.service.rebuild(self._prefetched)
        self._prefetched = None
        await self.service.fill_leases()
        await self.reminders.start()
        if self.exporter is not None:
            await self.exporter.start()
        socks = systemd.listen_sockets()
        await self.server.start(socks[0] if socks else None)
        interval = systemd.watchdog_interval_s()
        if interval:
            t = asyncio.create_task(self._watchdog(interval), name="watchdog")
            self._tasks.add(t)
        systemd.notify("READY=1", f"STATUS=serving {int(stats['records'])} records on "
                       f"{self.server.path}")
        logger.info("daemon_ready version=%s socket=%s records=%d rebuild_s=%.3f",
                    __version__, self.server.path, int(stats["records"]), stats["total_s"])

    async def _watchdog(self, interval: float) -> None:
        # pinged from the loop: a blocked loop stops the pings and systemd restarts us
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Shutdown phase, in reverse order of startup."""
        systemd.notify("STOPPING=1", "STATUS=draining")
        logger.info("daemon_stopping")
        self.service.stop_waiting()
        self.server.flush()
        await self.server.stop()
        # after the server (no new callbacks), before the store (sent rows committed)
        await self.reminders.stop()
        for t in self._tasks:
            t.cancel()
        if self.exporter is not None:
            await self.exporter.stop()
        await self.store.close()
        logger.info("daemon_stopped exit=%d", self.exit_code)

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT or a storage failure, stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.start()
        except BaseException:
            await self.reminders.stop()
            if self.exporter is not None:
                await self.exporter.stop()
            await self.store.close()
            raise
        await self.stop_event.wait()
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
