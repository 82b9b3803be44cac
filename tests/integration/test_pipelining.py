"""Whole request lines waiting behind ``max_inflight`` are not an oversize line (found by
the daemon fuzzer: a connection with its requests in flight and more complete lines
buffered than ``max_line_bytes`` was closed as ``too_large``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from nextcall.app import Daemon
from nextcall.config import load
from tests.conftest import AsyncClient, write_config


@pytest.fixture
async def tight(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    settings = load(write_config(tmp_path, extra_daemon="max_line_bytes = 1024\n"
                                                      "max_inflight = 4"))
    d = Daemon(settings)
    await d.start()
    c = await AsyncClient.connect(settings.daemon.socket)
    try:
        yield c
    finally:
        await c.close()
        await d.stop()


async def test_lines_queued_behind_the_inflight_limit_are_all_answered(
        tight: AsyncClient) -> None:
    polls = [{"id": f"w{i}", "op": "next", "agent": "a", "campaigns": ["t"], "wait": 0.5}
             for i in range(4)]
    pings = [{"id": i, "op": "ping"} for i in range(200)]  # ~5 KB: five times the limit
    await tight.send_raw(b"".join(orjson.dumps(x) + b"\n" for x in polls + pings))
    answers = [await tight.read() for _ in range(len(polls) + len(pings))]
    assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]][:1]
    assert sorted(str(a["id"]) for a in answers) == \
        sorted(str(x["id"]) for x in polls + pings)
