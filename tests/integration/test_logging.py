"""Log lines operators read: one line per event, a stable event name first, key=value
after; no timestamps under journald (it adds its own); levels from the config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nextcall.app import Daemon, setup_logging
from nextcall.config import load
from tests.conftest import AsyncClient, make_records, write_config


def test_no_timestamps_under_journald(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    setup_logging("warning")
    root = logging.getLogger()
    assert root.level == logging.WARNING
    fmt = root.handlers[0].formatter._fmt  # type: ignore[union-attr]
    assert "asctime" not in fmt
    monkeypatch.delenv("JOURNAL_STREAM")
    setup_logging("debug")
    assert "asctime" in logging.getLogger().handlers[0].formatter._fmt  # type: ignore
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("alembic").level >= logging.WARNING


async def test_lifecycle_events_are_logged(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = Daemon(load(write_config(tmp_path)))
    await d.start()
    c = await AsyncClient.connect(d.settings.daemon.socket)
    await c.call("records.import", campaign="t", list="l", records=make_records(2))
    await c.call("config.reload")
    await c.close()
    await d.stop()
    events = [r.getMessage().split(" ", 1)[0] for r in caplog.records
              if r.name.startswith("nextcall")]
    for name in ("heap_rebuilt", "daemon_ready", "records_imported", "config_reloaded",
                 "daemon_stopping", "daemon_stopped"):
        assert name in events, (name, events)
    assert events.index("daemon_ready") < events.index("daemon_stopping") \
        < events.index("daemon_stopped")
    ready = next(r.getMessage() for r in caplog.records
                 if r.getMessage().startswith("daemon_ready"))
    assert "records=0" in ready and f"socket={d.settings.daemon.socket}" in ready
    for r in caplog.records:
        if r.name.startswith("nextcall"):
            assert "\n" not in r.getMessage(), "one line per event"
