"""Reminder and notification e-mail over SMTP (stdlib ``smtplib`` in a worker thread).

smtplib blocks, so each delivery runs in ``asyncio.to_thread`` and never stalls the event
loop; one SMTP session carries the messages of one reminder. No extra dependency: a
reminder is a handful of messages a minute at most, far from where an async SMTP client
would pay off.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from ..config import SmtpCfg


class MailError(Exception):
    """The SMTP server could not be reached or refused the message."""


def reminder_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    """One plain-text message."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(body)
    return msg


class Mailer:
    """Sends messages through the ``[smtp]`` server. Constructing it connects nothing."""

    def __init__(self, cfg: SmtpCfg) -> None:
        self.cfg = cfg

    async def send(self, messages: list[EmailMessage]) -> None:
        """Deliver ``messages`` in one SMTP session.

        Raises:
            MailError: connection, TLS, authentication or a refused recipient; the
                messages before the failing one may have been delivered.
        """
        if messages:
            await asyncio.to_thread(self._send_sync, messages)

    def _send_sync(self, messages: list[EmailMessage]) -> None:
        cfg = self.cfg
        try:
            smtp: smtplib.SMTP
            if cfg.ssl:
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username is not None and cfg.password is not None:
                    smtp.login(cfg.username, cfg.password)
                for msg in messages:
                    smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}") from exc
