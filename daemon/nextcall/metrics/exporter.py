"""The daemon's metrics at run time: hooks into service, store and server, the snapshot
refresher, the event-loop lag probe and the HTTP endpoint (``Exporter``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry

from ..addresses import listen_address
from ..config import MetricsCfg
from ..service import Service
from .collect import EngineCollector, EngineSampler
from .families import LAG_PROBE_S, Metrics

logger = logging.getLogger(__name__)


class Exporter:
    """The daemon's metrics at run time: the snapshot refresher, the loop-lag probe and
    the HTTP endpoint, over the families the service, store and server report to.

    ``start`` after the rebuild (the endpoint then never shows an empty engine), ``stop``
    after the server stopped. The constructor only builds objects.
    """

    def __init__(self, cfg: MetricsCfg, service: Service, metrics: Metrics,
                 registry: CollectorRegistry, *,
                 watch: Callable[[Any, str], None] | None = None) -> None:
        self.cfg = cfg
        #: puts the refresher and the loop-lag probe under watch (``supervise.Watch``)
        self.watch = watch
        self.service = service
        self.registry = registry
        #: the families the service, the store and the server report to (their
        #: constructors took its hooks)
        self.metrics = metrics
        self.collector = EngineCollector()
        self.registry.register(self.collector)
        self.sampler = EngineSampler(cfg.callback_overdue_s)
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) the endpoint listens on, once started (port 0 is resolved)."""
        if self._httpd is None:
            return None
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def refresh(self) -> None:
        """Count the recorded events and recompute the engine snapshot (on the event
        loop): without a scrape the events must not pile up."""
        self.metrics.drain()
        engine = self.service.engine
        self.metrics.ensure_campaigns(engine.campaigns)
        self.collector.snapshot = self.sampler.sample(engine, self.service.clock(),
                                                      self.service.waiting)

    async def start(self) -> None:
        """Attach the hooks, take the first snapshot, serve HTTP, start the side tasks.

        An address that cannot be bound (in use, not local) is logged as an error and the
        daemon serves on without an endpoint: a monitoring clash must not stop the
        dialing; the missing scrape target shows as ``up == 0``.
        """
        m = self.metrics
        m.rebuilt(self.service.rebuild_stats.get("total_s", 0.0))
        self.refresh()
        # started even without an endpoint: the refresher drains the recorded events,
        # which would otherwise pile up with nobody scraping
        for coro, name in ((self._refresher(), "metrics-refresh"),
                           (self._lag_probe(), "metrics-loop-lag")):
            task = asyncio.create_task(coro, name=name)
            self._tasks.add(task)
            if self.watch is not None:
                self.watch(task, name)
        host, port = listen_address(self.cfg.address)
        try:
            # start_http_server's default address is 0.0.0.0: always pass ours
            self._httpd, self._thread = prometheus_client.start_http_server(
                port, addr=host, registry=self.registry)
        except OSError as exc:
            logger.error("metrics_unavailable address=%s error=%r", self.cfg.address, exc)
            return
        bound = self.address
        assert bound is not None
        logger.info("metrics_serving address=%s port=%d path=/metrics", *bound)

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.refresh_s)
            try:
                self.refresh()
            except Exception:  # a sampling bug must not stop the refresher
                logger.exception("metrics_refresh_failed")

    async def _lag_probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.metrics.loop_lag.observe(max(loop.time() - t0 - LAG_PROBE_S, 0.0))

    async def stop(self) -> None:
        """Stop the side tasks and the HTTP endpoint. Safe to call twice."""
        tasks, self._tasks = self._tasks, set()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            addr = self._wake_address(httpd)
            done = asyncio.ensure_future(asyncio.to_thread(httpd.shutdown))
            # serve_forever looks at the shutdown flag every 0.5 s, or at once after
            # handling a connection: poke it until it notices
            while not done.done():
                with contextlib.suppress(OSError):
                    socket.create_connection(addr, timeout=0.1).close()
                await asyncio.wait([done], timeout=0.02)
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @staticmethod
    def _wake_address(httpd: Any) -> tuple[str, int]:
        host, port = httpd.server_address[:2]
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
        return wildcard.get(host, host), port
