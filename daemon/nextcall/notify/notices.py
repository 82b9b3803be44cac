"""E-mails on chosen result codes (``notify = [...]``): once a disposition with such a code
is committed, its addresses get one message; an appointment (a ``hold`` code) carries an
iCalendar invite (``METHOD:REQUEST``) so it lands in the recipient's calendar.

Sent after the commit and never before, so nobody is told of a disposition that a failed
commit undid; sent off the request path, so a slow or broken SMTP server never delays or
fails a disposition: a failure is logged (``notify_email_failed``) and counted
(``nextcall_notifications_failed_total``). Delivery is at most once: an orderly stop waits
(bounded) for messages in flight, but one pending when the process is killed is not sent
again; the disposition itself, with its code and fields, is in the record's history.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import orjson
from icalendar import Calendar, Event, vCalAddress, vText

from ..core import calendar
from ..observer import Disposed
from .email import Mailer, MailError, reminder_message

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)

#: how long the invite of an appointment blocks in the calendar
APPOINTMENT_S = 3600
#: an orderly stop waits this long for messages in flight
STOP_TIMEOUT_S = 15.0
PRODID = "-//nextcall//result-code notification//EN"


class Notifications:
    """Sends the ``notify`` e-mails of committed dispositions for one service.

    ``committed`` is the service's disposition listener; ``stop`` drains deliveries.
    Constructing it does nothing.
    """

    def __init__(self, service: Service, stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        self.service = service
        self.stop_timeout_s = stop_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def committed(self, notice: Disposed) -> None:
        """A disposition of a ``notify`` code is durable: send its e-mail in a task of
        our own (named, kept, drained by ``stop``)."""
        if not self.service.settings.smtp.active:
            logger.debug("notify_skipped reason=no_smtp code=%s", notice.code.code)
            return
        task = asyncio.create_task(self._deliver(notice),
                                   name=f"notify-{notice.rid}-{notice.lid}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.service.observer.notification_failed("error")
            logger.error("notify_failed error=%r", task.exception())

    async def stop(self) -> None:
        """Wait (bounded) for messages in flight, then give up on the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=self.stop_timeout_s)
            for t in pending:
                logger.warning("notify_abandoned task=%s", t.get_name())
                t.cancel()

    async def _deliver(self, notice: Disposed) -> None:
        svc = self.service
        smtp = svc.settings.smtp
        assert smtp.sender is not None  # config validation guarantees it
        if notice.record is None:
            payload = (await svc.store.payloads([notice.rid])).get(notice.rid)
            if payload is not None:
                notice = _with_payload(notice, payload)
        msg = notice_message(notice, smtp.sender, svc.clock())
        try:
            await Mailer(smtp).send([msg])
        except MailError as exc:
            svc.observer.notification_failed("email")
            logger.warning("notify_email_failed code=%s record=%s host=%s port=%d error=%s",
                           notice.code.code, notice.record, smtp.host, smtp.port, exc)
            return
        svc.observer.notification_sent("email")
        logger.info("notify_sent code=%s record=%s campaign=%s recipients=%d invite=%s",
                    notice.code.code, notice.record, notice.campaign,
                    len(notice.code.notify), notice.appointment_at is not None)


def _with_payload(n: Disposed, payload: tuple[str, str, str, str | None]) -> Disposed:
    return Disposed(n.rid, n.lid, payload[0], n.campaign, payload[1], payload[2], n.code,
                    n.agent, n.at, n.state, n.timezone, n.appointment_at, n.appointment_tz,
                    n.callback, n.note, n.fields)


def notice_message(n: Disposed, sender: str, now: float) -> EmailMessage:
    """The message to the code's addresses; an appointment adds ``invite.ics``."""
    rc = n.code
    what = rc.description or rc.code
    subject = f"{what}: {n.record} ({n.campaign})"
    if n.appointment_at is not None:
        subject += f" on {_local(n.appointment_at, n.appointment_tz or n.timezone)}"
    text = notice_text(n)
    msg = reminder_message(sender, ", ".join(rc.notify), subject, text)
    if n.appointment_at is not None:
        msg.add_attachment(invite(n, sender, text, now), maintype="text",
                           subtype="calendar", filename="invite.ics",
                           params={"method": "REQUEST"})
    return msg


def notice_text(n: Disposed) -> str:
    """The plain-text body: the disposition, its fields and the record's data."""
    rc = n.code
    lines = [f"Result {rc.code}" + (f" ({rc.description})" if rc.description else ""),
             "",
             f"Record:       {n.record} (campaign {n.campaign}, list {n.list})",
             f"Agent:        {n.agent}",
             f"At:           {calendar.utc_iso(n.at)}",
             f"State:        {n.state}"]
    if n.appointment_at is not None:
        tz = n.appointment_tz or n.timezone
        lines.append(f"Appointment:  {_local(n.appointment_at, tz)} ({tz}), "
                     f"{calendar.utc_iso(n.appointment_at)}")
    if n.callback is not None:
        lines.append(f"Callback:     {n.callback.local} ({n.callback.timezone}) for "
                     f"{n.callback.owner or 'team ' + str(n.callback.team)}")
    if n.note:
        lines.append(f"Note:         {n.note}")
    lines += _section("Fields", n.fields)
    lines += _section("Data", _data(n.data))
    lines += ["", "-- nextcall"]
    return "\n".join(lines) + "\n"


def invite(n: Disposed, sender: str, description: str, now: float) -> bytes:
    """An iCalendar REQUEST for the appointment: UTC start, ``APPOINTMENT_S`` long, one
    attendee per ``notify`` address, a UID stable for this disposition (a resent invite
    updates the same event instead of adding one)."""
    assert n.appointment_at is not None
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    ev = Event()
    start = datetime.fromtimestamp(n.appointment_at, UTC)
    domain = sender.rpartition("@")[2] or "nextcall"
    ev.add("uid", f"nextcall-{n.rid}-{n.lid}@{domain}")
    ev.add("dtstamp", datetime.fromtimestamp(now, UTC))
    ev.add("dtstart", start)
    ev.add("dtend", start + timedelta(seconds=APPOINTMENT_S))
    ev.add("summary", f"{n.code.description or n.code.code}: {n.record}")
    ev.add("description", description)
    ev.add("status", "CONFIRMED")
    organizer = vCalAddress(f"mailto:{sender}")
    organizer.params["cn"] = vText("nextcall")
    ev.add("organizer", organizer)
    for addr in n.code.notify:
        attendee = vCalAddress(f"mailto:{addr}")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["partstat"] = vText("NEEDS-ACTION")
        attendee.params["rsvp"] = vText("TRUE")
        ev.add("attendee", attendee, encode=False)
    cal.add_component(ev)
    ics: bytes = cal.to_ical()
    return ics


def _local(at: float, tz: str) -> str:
    return datetime.fromtimestamp(at, calendar.zone(tz)).strftime("%Y-%m-%d %H:%M")


def _section(title: str, values: dict[str, Any]) -> list[str]:
    if not values:
        return []
    return ["", f"{title}:"] + [f"  {k}: {_value(v)}" for k, v in values.items()]


def _value(v: object) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _data(raw: str | None) -> dict[str, Any]:
    try:
        data = orjson.loads(raw or "null")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
