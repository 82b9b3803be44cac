"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 keeping every message it accepts.

The ``smtp`` fixture (offered to every integration test by ``conftest.py``) yields the
inbox and the port.
"""

from __future__ import annotations

import asyncio
import email
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller


class Inbox:
    """An aiosmtpd handler keeping every message it accepts (the server has its own
    thread and loop)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    async def wait_for(self, n: int, timeout_s: float = 15.0
                       ) -> list[tuple[list[str], EmailMessage]]:
        """The messages, once there are at least ``n`` (bounded)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                got = list(self.messages)
            if len(got) >= n or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
