"""Side tasks under watch, and signal handlers that are given back.

A side task that dies quietly is worse than a daemon that stops: a dead writer leaves
every caller waiting, a dead checkpointer lets the log grow without end, a dead refresher
freezes the gauges. So every task or thread meant to live as long as the daemon is
watched: if it ends while the daemon runs (with an exception, cancelled, or by returning),
the supervisor logs ``side_task_died`` and calls the daemon's failure hook, which stops the
daemon with a non-zero status for systemd to restart it from the database (procrastinate
stops its worker the same way when a side task fails).

Components receive ``Supervisor.watch`` (or ``Supervisor.died``, for something without a
handle, such as a scheduler job) as a constructor argument and put their side tasks under
watch where they create them; nothing here knows what the tasks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)

#: what can be watched: an asyncio task (or any future) or a thread
Watched = asyncio.Future[Any] | threading.Thread
#: the hook a component gets to put a side task under watch: (task or thread, name)
Watch = Callable[[Watched, str], None]
#: the hook for a death that comes without a handle: (name, the error or how it ended)
Died = Callable[[str, BaseException | str], None]


class Supervisor:
    """Watches side tasks and threads; reports every death.

    ``on_death`` runs on the event loop, once per death, after the ``side_task_died``
    line: the daemon sets its exit status and its stop event there. Once ``stop`` is
    called (the daemon is stopping and ends its side tasks itself), a task that returns or
    is cancelled is expected; one that fails with an exception is still reported, and so
    is one that had ended before the stop began (often the stop's cause).
    """

    def __init__(self, on_death: Callable[[str, BaseException | str], None]) -> None:
        self._on_death = on_death
        self._stopping = False
        #: watched and not yet reported; a future leaves when it ends
        self._futures: dict[asyncio.Future[Any], str] = {}
        self._threads: dict[threading.Thread, str] = {}
        #: (name, error or how it ended) of every death reported, oldest first
        self.deaths: list[tuple[str, BaseException | str]] = []

    @property
    def stopping(self) -> bool:
        """Whether the daemon is stopping (clean ends are then expected)."""
        return self._stopping

    def stop(self) -> None:
        """The daemon is stopping: from now on side tasks end on purpose.

        What had ended already is reported first, even if its callback has not run yet:
        a death that set the stop event is still a death.
        """
        for fut in [f for f in self._futures if f.done()]:
            self._future_ended(fut)
        for thread in [t for t in self._threads if not t.is_alive()]:
            self._thread_ended(thread)
        self._stopping = True

    def watch(self, what: Watched, name: str) -> None:
        """Report ``what`` if it ends before ``stop``, or fails at any time. Call on the
        event loop.

        A thread (started already) has no completion callback: a small daemon thread
        joins it and reports its end through the loop (``call_soon_threadsafe``), without
        its error. A thread that can should rather resolve a future when it ends (the
        SQLite writer's ``ended``) and have that watched.
        """
        if isinstance(what, threading.Thread):
            self._threads[what] = name
            self._join_in_background(what)
        else:
            self._futures[what] = name
            what.add_done_callback(self._future_ended)

    def died(self, name: str, error: BaseException | str) -> None:
        """Report the death of ``name`` (a side task without a handle). On the loop."""
        self.deaths.append((name, error))
        logger.critical("side_task_died name=%s error=%s action=stopping", name,
                        error if isinstance(error, str) else repr(error))
        self._on_death(name, error)

    def _future_ended(self, fut: asyncio.Future[Any]) -> None:
        name = self._futures.pop(fut, None)
        if name is None:
            return  # reported by ``stop`` already
        if fut.cancelled():
            if not self._stopping:
                self.died(name, "cancelled")
            return
        # retrieved even at stop, so asyncio never warns "exception was never retrieved"
        exc = fut.exception()
        if exc is not None:
            self.died(name, exc)
        elif not self._stopping:
            self.died(name, "returned")

    def _thread_ended(self, thread: threading.Thread) -> None:
        name = self._threads.pop(thread, None)
        if name is not None and not self._stopping:
            self.died(name, "thread ended")

    def _join_in_background(self, thread: threading.Thread) -> None:
        loop = asyncio.get_running_loop()

        def join() -> None:
            thread.join()
            # a closed loop means the daemon is gone: nobody left to tell
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._thread_ended, thread)

        threading.Thread(target=join, name=f"watch-{thread.name}", daemon=True).start()


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, without raising what it raised (the
    supervisor reports that)."""
    task.cancel()
    await asyncio.wait([task])


@contextlib.contextmanager
def signal_handlers(loop: asyncio.AbstractEventLoop,
                    handlers: Mapping[signal.Signals, Callable[[], object]]) -> Iterator[None]:
    """Run ``handlers`` on ``loop`` for their signals inside the block; give the previous
    handlers back on leaving it.

    ``loop.remove_signal_handler`` alone resets a signal to its default (SIGINT: raise
    KeyboardInterrupt), not to what was there before: ``asyncio.Runner``'s own SIGINT
    handler, or the handlers of a program or test that runs the daemon in-process. So the
    previous Python-level handlers are recorded and put back, as uvicorn does.
    """
    previous = {sig: signal.getsignal(sig) for sig in handlers}
    installed: list[signal.Signals] = []
    try:
        for sig, fn in handlers.items():
            loop.add_signal_handler(sig, fn)
            installed.append(sig)
        yield
    finally:
        for sig in reversed(installed):
            loop.remove_signal_handler(sig)
            old = previous[sig]
            if old is not None:  # None: set outside Python; the default stays
                signal.signal(sig, old)
