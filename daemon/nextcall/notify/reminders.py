"""Callback reminders: N minutes before a callback, tell its recipients.

A callback whose intent carries ``reminder_min`` (from its result code, or from
``callback.schedule``) gets one reminder at ``at - reminder_min`` minutes: an ``event``
line to every connection subscribed to a recipient, and an e-mail to each recipient with
an address when ``[smtp]`` is configured, written from the campaign's template
(``mailcfg``) in the recipient's zone. Recipients are the owner, or for a ``team``
callback the team's logged-in agents in the record's campaign.

Timing runs on APScheduler 3 (``AsyncIOScheduler``, ``MemoryJobStore``, UTC), one
``date`` job per reminder with the record id as job id, replaced when the callback moves
and removed when it ends. Job stores are not trusted with state: the
database is. A reminder sent is a ``reminders`` row (record, callback instant), written in
the commit that records the sending; at start every pending reminder is rebuilt from the
callbacks in the engine minus those rows, so a restart loses none and repeats none.

Rules, in order:

- a callback that is already due when its reminder would be scheduled (set late, or
  reached while the daemon was down) gets no reminder: the agent is calling it now;
- a reminder whose time passed while the daemon was down, for a callback still in the
  future, is sent at once at start;
- a reminder is sent once per callback: moving the callback to another time earns a new
  reminder, re-setting the time it already has does not (moving it away and back again
  does: that is a new promise).

The crash window: the row is committed after delivery, so a ``kill -9`` between the two
repeats that one reminder at the next start (at least once); an orderly stop waits for
deliveries in flight (bounded) before the store closes, so it never repeats one.

Scale: an APScheduler job costs ~80 µs to add and its memory store is a sorted list, so
only reminders due within ``SCHEDULE_AHEAD_S`` are jobs; later
ones wait in a heap that the fixed-id ``reminders-refill`` job moves into the scheduler
every ``REFILL_EVERY_S``. A rebuild with 100 000 callbacks a week ahead adds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

# APScheduler 3 ships no type information
from apscheduler import events as aps_events  # type: ignore[import-untyped]
from apscheduler.jobstores.base import JobLookupError  # type: ignore[import-untyped]
from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers import SchedulerNotRunningError  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from ..core import calendar
from ..core.changes import ReminderSent
from ..core.records import CALLBACK, Record
from ..core.visibility import reminder_recipients
from ..mailcfg import render, subject_line, zoned
from .email import Mailer, MailError, reminder_message

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)

#: reminders due within this horizon are APScheduler jobs; later ones wait in a heap
SCHEDULE_AHEAD_S = 3600.0
#: how often the heap is moved into the scheduler (well inside the horizon)
REFILL_EVERY_S = 600.0
REFILL_JOB_ID = "reminders-refill"
#: an orderly stop waits this long for deliveries in flight (SMTP) before the store closes
STOP_TIMEOUT_S = 15.0
JOB_PROBLEMS = (aps_events.EVENT_JOB_ERROR | aps_events.EVENT_JOB_MISSED
                | aps_events.EVENT_JOB_MAX_INSTANCES)


class Reminders:
    """Schedules, sends and records callback reminders for one service.

    Constructing it does nothing; ``start`` (inside the running loop, after the rebuild)
    loads what was sent and schedules what is pending; ``stop`` shuts the scheduler down
    and drains deliveries.
    """

    def __init__(self, service: Service, stop_timeout_s: float = STOP_TIMEOUT_S, *,
                 on_death: Callable[[str, BaseException | str], None] | None = None) -> None:
        self.service = service
        #: told when the refill job fails: reminders beyond the horizon would never be
        #: scheduled (``supervise.Died``)
        self.on_death = on_death
        self.stop_timeout_s = stop_timeout_s
        self.scheduler: AsyncIOScheduler | None = None
        #: rid -> (callback instant reminded, sent_at): the current callback's reminder
        #: went out; older callbacks of the record are forgotten
        self._sent: dict[int, tuple[float, float]] = {}
        #: rid -> callback instant of the pending reminder (job or heap)
        self._want: dict[int, float] = {}
        #: rid -> callback instant of the APScheduler job now scheduled
        self._jobs: dict[int, float] = {}
        #: (remind_at, rid, callback instant) beyond the horizon; lazily deleted
        self._later: list[tuple[float, int, float]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load sent reminders, start the scheduler, schedule every pending reminder.

        Must run inside the event loop (APScheduler 3.11 binds to the running loop).

        Raises:
            StorageError: the sent reminders cannot be read.
        """
        engine = self.service.engine
        for rid, at, sent_at in await self.service.store.reminders_of_callbacks():
            rec = engine.callback_record(rid)
            if rec is not None and rec.callback is not None and rec.callback.at == at:
                self._sent[rid] = (at, sent_at)
        self.scheduler = AsyncIOScheduler(
            timezone=UTC, jobstores={"default": MemoryJobStore()},
            # None: a late job still runs (a busy loop must not drop a reminder);
            # coalesce: never a burst of catch-up runs
            job_defaults={"misfire_grace_time": None, "coalesce": True,
                          "max_instances": 1})
        self.scheduler.add_listener(self._job_event, JOB_PROBLEMS)
        self.scheduler.start()
        self.scheduler.add_job(self._refill, "interval", seconds=REFILL_EVERY_S,
                               id=REFILL_JOB_ID, name="move reminders into the horizon",
                               replace_existing=True)
        now = self.service.clock()
        for rid in engine.callback_rids():
            rec = engine.callback_record(rid)
            if rec is not None:
                self._plan(rec, now, rebuild=True)
        heapq.heapify(self._later)
        logger.info("reminders_started pending=%d scheduled=%d sent=%d", len(self._want),
                    len(self._jobs), len(self._sent))

    async def stop(self) -> None:
        """Stop scheduling, then wait (bounded) for deliveries in flight so their
        ``reminders`` rows are committed before the store closes."""
        if self.scheduler is not None:
            with contextlib.suppress(SchedulerNotRunningError):
                self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks),
                                               timeout=self.stop_timeout_s)
            for t in pending:
                logger.warning("reminder_abandoned task=%s", t.get_name())
                t.cancel()

    # ------------------------------------------------------------------ planning
    def sync(self, rec: Record) -> None:
        """``rec``'s callback was set, moved or ended (committed): schedule, replace or
        drop its reminder."""
        if self.scheduler is None:
            return
        self._plan(rec, self.service.clock(), rebuild=False)

    def _plan(self, rec: Record, now: float, rebuild: bool) -> None:
        cb = rec.callback
        if rec.state != CALLBACK or cb is None:
            self._sent.pop(rec.rid, None)
            self._drop(rec.rid)
            return
        sent = self._sent.get(rec.rid)
        if sent is not None and sent[0] != cb.at:
            del self._sent[rec.rid]  # an older callback's reminder
            sent = None
        if sent is not None or cb.reminder_min is None or cb.at <= now:
            # sent already, not asked for, or the callback is due: nothing to remind
            self._drop(rec.rid)
            return
        remind_at = cb.at - cb.reminder_min * 60.0
        if self._want.get(rec.rid) == cb.at:
            return  # pending already (a job, or in the heap)
        self._want[rec.rid] = cb.at
        if remind_at <= now + SCHEDULE_AHEAD_S:
            self._schedule(rec.rid, remind_at, cb.at, now)
        else:
            self._unschedule(rec.rid)
            entry = (remind_at, rec.rid, cb.at)
            if rebuild:
                self._later.append(entry)  # heapified once at the end of start()
            else:
                heapq.heappush(self._later, entry)

    def _drop(self, rid: int) -> None:
        self._want.pop(rid, None)
        self._unschedule(rid)

    def _unschedule(self, rid: int) -> None:
        if self._jobs.pop(rid, None) is not None and self.scheduler is not None:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(_job_id(rid))

    def _schedule(self, rid: int, remind_at: float, at: float, now: float) -> None:
        assert self.scheduler is not None
        run = datetime.fromtimestamp(max(remind_at, now), UTC)
        self.scheduler.add_job(self._fire, "date", run_date=run, args=[rid, at],
                               id=_job_id(rid), name=f"reminder of record #{rid}",
                               replace_existing=True)
        self._jobs[rid] = at

    async def _refill(self) -> None:
        """Housekeeping job: move reminders entering the horizon into the scheduler."""
        now = self.service.clock()
        later = self._later
        moved = 0
        while later and later[0][0] <= now + SCHEDULE_AHEAD_S:
            remind_at, rid, at = heapq.heappop(later)
            if self._want.get(rid) == at and self._jobs.get(rid) != at:
                self._schedule(rid, remind_at, at, now)
                moved += 1
        if len(later) > 2 * len(self._want) + 1024:
            # stale entries of moved or ended callbacks: compact
            self._later = [e for e in later if self._want.get(e[1]) == e[2]
                           and self._jobs.get(e[1]) != e[2]]
            heapq.heapify(self._later)
        if moved:
            logger.debug("reminders_refilled moved=%d waiting=%d", moved, len(self._later))

    # ------------------------------------------------------------------ firing
    async def _fire(self, rid: int, at: float) -> None:
        """The job: hand the delivery to a task of our own, so that a scheduler shutdown
        (which cancels running jobs) cannot cut it between sending and recording."""
        if self._jobs.get(rid) == at:
            del self._jobs[rid]
        if self._want.get(rid) != at:
            return  # moved or ended after the job was due: the new state rules
        del self._want[rid]
        task = asyncio.create_task(self._deliver(rid, at), name=f"reminder-{rid}")
        self._tasks.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("reminder_failed error=%r", task.exception())

    def recipients(self, rec: Record) -> list[str]:
        """Who is reminded (``core.visibility.reminder_recipients``): the owner; for a
        ``team`` callback, the team's agents logged in to the record's campaign now."""
        return reminder_recipients(rec, self.service.engine.agents)

    def _body(self, rec: Record, at: float, now: float) -> dict[str, Any]:
        cb = rec.callback
        assert cb is not None
        return {
            "record": rec.id, "campaign": rec.campaign, "owner": rec.owner or None,
            "team": rec.team, "scope": cb.scope, "due_at": calendar.utc_iso(at),
            "local": cb.local, "timezone": cb.timezone,
            "callee_local": calendar.local_iso(at, rec.timezone),
            "callee_timezone": rec.timezone, "in_s": round(at - now, 3),
            "reminder_min": cb.reminder_min, "contact_priority": cb.contact_priority,
            "reason": cb.reason, "code": cb.code, "data": orjson.Fragment(rec.data or "null"),
        }

    async def _deliver(self, rid: int, at: float) -> None:
        svc = self.service
        rec = svc.engine.callback_record(rid)
        cb = rec.callback if rec is not None else None
        if rec is None or cb is None or rec.state != CALLBACK or cb.at != at:
            return
        if self._sent.get(rec.rid, (None,))[0] == at:
            return
        now = svc.clock()
        # marked before the first await: nothing can send this reminder twice
        self._sent[rec.rid] = (at, now)
        payload = (await svc.store.payloads([rid])).get(rid)
        if payload is not None:
            rec.id, rec.list, rec.data = payload[0], payload[1], payload[2]  # not the team
        remind_at = at - (cb.reminder_min or 0) * 60.0
        recipients = self.recipients(rec)
        body = self._body(rec, at, now)
        connections = await svc.subscriptions.publish("reminder", body, recipients)
        channels: dict[str, Any] = {"event": connections}
        if connections:
            svc.observer.reminder_sent("event")
        settings = svc.settings
        if settings.smtp.active:
            channels.update(await self._email(rec, at, body, recipients))
        await svc.store.write([ReminderSent(rec.rid, at, remind_at, now, recipients,
                                            channels)])
        logger.info("reminder_sent campaign=%s scope=%s recipients=%d connections=%d "
                    "emails=%d late_s=%.1f", rec.campaign, cb.scope, len(recipients),
                    connections, len(channels.get("email", [])), max(now - remind_at, 0.0))

    async def _email(self, rec: Record, at: float, body: dict[str, Any],
                     recipients: list[str]) -> dict[str, Any]:
        settings = self.service.settings
        smtp = settings.smtp
        assert smtp.sender is not None  # config validation guarantees it
        addressed = [(a, cfg.email) for a in recipients
                     if (cfg := settings.agents.get(a)) is not None and cfg.email]
        if not addressed:
            return {"email": []}
        template = settings.reminder_email(rec.campaign)
        data = _data(rec.data)
        messages = []
        for agent, addr in addressed:
            cfg = settings.agents[agent]
            values = _mail_values(agent, rec, body, at, cfg.timezone or body["timezone"])
            messages.append(reminder_message(
                smtp.sender, addr, subject_line(render(template.subject, values, data)),
                render(template.body, values, data)))
        try:
            await Mailer(smtp).send(messages)
        except MailError as exc:
            self.service.observer.reminder_failed("email")
            logger.warning("reminder_email_failed host=%s port=%d error=%s", smtp.host,
                           smtp.port, exc)
            return {"email": [], "email_error": str(exc)}
        self.service.observer.reminder_sent("email")
        return {"email": [a for a, _ in addressed]}

    # ------------------------------------------------------------------ views
    def status(self, rec: Record) -> dict[str, Any] | None:
        """The reminder of ``rec``'s current callback: when, and whether it was sent
        (None before ``start`` and after ``stop``)."""
        cb = rec.callback
        if cb is None or cb.reminder_min is None or self.scheduler is None:
            return None
        sent = self._sent.get(rec.rid)
        sent_at = sent[1] if sent is not None and sent[0] == cb.at else None
        return {"at": calendar.utc_iso(cb.at - cb.reminder_min * 60.0),
                "minutes": cb.reminder_min,
                "sent_at": calendar.utc_iso(sent_at) if sent_at is not None else None,
                "pending": rec.rid in self._want}

    def _job_event(self, event: aps_events.JobEvent) -> None:
        # job exceptions are only logged by APScheduler: count them;
        # a max-instances event has no exception attribute
        kind = {aps_events.EVENT_JOB_ERROR: "error", aps_events.EVENT_JOB_MISSED: "missed",
                aps_events.EVENT_JOB_MAX_INSTANCES: "max_instances"}.get(event.code,
                                                                         str(event.code))
        logger.error("scheduler_job_problem job=%s kind=%s error=%r", event.job_id, kind,
                     getattr(event, "exception", None))
        if event.job_id != REFILL_JOB_ID:
            self.service.observer.reminder_failed("scheduler")
        elif self.on_death is not None:
            self.on_death(REFILL_JOB_ID, getattr(event, "exception", None) or kind)


def _job_id(rid: int) -> str:
    return f"reminder-{rid}"


def _mail_values(agent: str, rec: Record, body: dict[str, Any], at: float, zone: str
                 ) -> dict[str, object]:
    """The reminder template's placeholders (``mailcfg.PLACEHOLDERS``) for one recipient,
    whose zone is ``zone``."""
    local, local_date, local_time = zoned(at, zone)
    callee, callee_date, callee_time = zoned(at, body["callee_timezone"])
    return {
        "agent": agent, "record": body["record"], "campaign": body["campaign"],
        "list": rec.list, "owner": body["owner"] or "", "team": body["team"] or "",
        "for": body["owner"] or f"team {body['team']}", "scope": body["scope"],
        "code": body["code"], "reason": body["reason"],
        "contact_priority": body["contact_priority"],
        "minutes": round(body["in_s"] / 60), "utc": body["due_at"],
        "local": local, "local_date": local_date, "local_time": local_time,
        "timezone": zone, "callee_local": callee, "callee_date": callee_date,
        "callee_time": callee_time, "callee_timezone": body["callee_timezone"],
    }


def _data(raw: str | None) -> dict[str, Any]:
    """The record's data as an object (anything else: no fields)."""
    try:
        data = orjson.loads(raw or "null")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
