"""Callback reminders: ``subscribe`` event lines, e-mail through a real SMTP server
(aiosmtpd on 127.0.0.1), and exactly one reminder per callback across restarts.

APScheduler runs on the real clock, so these tests use real time with a short lead: the
callback codes remind 1 minute ahead and callbacks are set ``LEAD_S`` plus a couple of
seconds from now, so each reminder fires about two seconds into its test. Every wait is
bounded (``AsyncClient.read``'s timeout, ``Inbox.wait_for``); "no other reminder" is
proved by ordering, never by sleeping: a later reminder (the barrier) arrives first, or
the next line on a connection is the answer to a ping.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
import time
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from nextcall.app import Daemon
from nextcall.config import load
from nextcall.service import Observer
from tests.conftest import AsyncClient, write_config
from tests.integration.smtp import Inbox, free_port

LEAD_S = 60.0  # reminder_min = 1
ALL_DAY = "\n".join(f'{d} = ["00:00-24:00"]' for d in
                    ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
CONFIG = textwrap.dedent("""
    [resultsets.rem]
    [[resultsets.rem.codes]]
    code = "NA"
    action = "retry"
    delay_s = 3600
    [[resultsets.rem.codes]]
    code = "CB"
    action = "callback"
    scope = "personal"
    contact_priority = 4
    reminder_min = 1
    [[resultsets.rem.codes]]
    code = "CBT"
    action = "callback"
    scope = "team"
    reminder = true
    reminder_min = 1
    [[resultsets.rem.codes]]
    code = "CBN"
    action = "callback"
    scope = "personal"

    [campaigns.t]
    resultset = "rem"
    legal_window = "00:00-24:00"
    grace_s = 60
    [campaigns.t.window]
    {all_day}

    [agents.alice]
    email = "alice@example.com"
    [agents.bob]
    email = "bob@example.com"
    [agents.carol]
    email = "carol@example.com"
""").replace("{all_day}", ALL_DAY)


# ---------------------------------------------------------------------------- SMTP
def body(msg: Message) -> str:
    return msg.get_content()  # type: ignore[attr-defined,no-any-return]


# ---------------------------------------------------------------------------- daemon
def config(root: Path, smtp_port: int | None) -> Path:
    path = write_config(root, campaigns=CONFIG)
    if smtp_port is not None:
        path.write_text(path.read_text() + textwrap.dedent(f"""
            [smtp]
            host = "127.0.0.1"
            port = {smtp_port}
            from = "nextcall@example.com"
            timeout_s = 5
        """))
    return path


async def start(path: Path) -> Daemon:
    d = Daemon(load(path))
    await d.start()
    return d


def at_in(seconds: float) -> str:
    """An absolute instant ``seconds`` from now (the reminder fires LEAD_S before it)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def ok(c: AsyncClient, op: str, **fields: Any) -> dict[str, Any]:
    ans = await c.call(op, **fields)
    assert ans["ok"] is True, ans
    return ans


async def connect(d: Daemon) -> AsyncClient:
    return await AsyncClient.connect(d.settings.daemon.socket)


async def subscriber(d: Daemon, *agents: str) -> AsyncClient:
    c = await connect(d)
    for a in agents:
        await ok(c, "subscribe", agent=a)
    return c


async def setup_agents(c: AsyncClient, *records: str) -> dict[str, str]:
    """alice and bob (team north), carol (south) log in to t; ``records`` are imported
    (team north, Amsterdam time) and leased to alice; returns their lease tokens."""
    await ok(c, "agent.login", agent="alice", campaigns=["t"], teams=["north"])
    await ok(c, "agent.login", agent="bob", campaigns=["t"], teams=["north"])
    await ok(c, "agent.login", agent="carol", campaigns=["t"], teams=["south"])
    recs = [{"id": r, "phones": [f"+3161234{i:04d}"], "timezone": "Europe/Amsterdam",
             "team": "north", "data": {"name": f"Contact {r}"}}
            for i, r in enumerate(records)]
    await ok(c, "records.import", campaign="t", list="l", records=recs)
    leases = (await ok(c, "next", agent="alice", count=len(records)))["leases"]
    assert len(leases) == len(records)
    return {lz["record"]["id"]: lz["token"] for lz in leases}


async def callback(c: AsyncClient, token: str, code: str = "CB", in_s: float = LEAD_S + 2,
                   **extra: Any) -> dict[str, Any]:
    return await ok(c, "dispose", lease=token, code=code,
                    callback={"at": at_in(in_s), **extra})


async def next_line_is_answer(c: AsyncClient) -> None:
    """The connection holds no unread event: the next line is the answer to a ping."""
    await c.send_raw(b'{"id": "probe", "op": "ping"}\n')
    msg = await c.read()
    assert msg.get("id") == "probe", msg


async def reminder_rows(d: Daemon, record: str) -> list[dict[str, Any]]:
    row = await d.store.get_record(record)
    assert row is not None
    return await d.store.reminders_of(row["record"]["rid"])


async def view(c: AsyncClient, record: str) -> dict[str, Any]:
    ans = await ok(c, "callbacks")
    return next(e for e in ans["callbacks"] if e["record"] == record)


# ---------------------------------------------------------------------------- tests
async def test_one_event_per_subscribed_connection_and_one_email(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    d = await start(config(tmp_path, port))
    c = await connect(d)
    subs = []
    try:
        tokens = await setup_agents(c, "r1")
        # alice on two connections (desktop and phone), bob on one
        a1, a2, b = (await subscriber(d, "alice"), await subscriber(d, "alice"),
                     await subscriber(d, "bob"))
        subs = [a1, a2, b]
        assert d.service.subscriptions.connections("alice") == 2
        ans = await callback(c, tokens["r1"], reason="wants the brochure first")
        local = ans["callback"]["local"]
        assert ans["callback"]["reminder_min"] == 1
        for s in (a1, a2):
            ev = await s.read(timeout=20)
            assert ev["event"] == "reminder", ev
            assert (ev["record"], ev["agents"], ev["owner"], ev["local"]) == \
                ("r1", ["alice"], "alice", local)
            assert ev["timezone"] == "Europe/Amsterdam" and ev["reminder_min"] == 1
            assert ev["reason"] == "wants the brochure first"
            assert ev["data"] == {"name": "Contact r1"}
            assert 0 < ev["in_s"] <= LEAD_S
            assert "id" not in ev and "ok" not in ev
        mails = await inbox.wait_for(1)
        assert len(mails) == 1
        rcpt, msg = mails[0]
        assert rcpt == ["alice@example.com"] and msg["To"] == "alice@example.com"
        assert msg["From"] == "nextcall@example.com"
        assert "r1" in msg["Subject"] and local in msg["Subject"]
        assert "r1" in body(msg) and local in body(msg) and "brochure" in body(msg)
        # exactly one: nothing else is queued on any connection, one row, none pending
        for s in subs:
            await next_line_is_answer(s)
        rows = await reminder_rows(d, "r1")
        assert len(rows) == 1 and rows[0]["recipients"] == '["alice"]'
        assert '"event":2' in rows[0]["channels"] and '"email":["alice"]' in rows[0]["channels"]
        rem = (await view(c, "r1"))["reminder"]
        assert rem["sent_at"] is not None and rem["pending"] is False
    finally:
        for s in (c, *subs):
            await s.close()
        await d.stop()
    assert len(await inbox.wait_for(2, timeout_s=0)) == 1


async def test_team_callback_reminds_the_teams_logged_in_agents(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    d = await start(config(tmp_path, port))
    c = await connect(d)
    subs = []
    try:
        tokens = await setup_agents(c, "r1")
        await ok(c, "agent.login", agent="dave", campaigns=["t"], teams=["north"])
        await ok(c, "agent.logout", agent="dave")
        subs = [await subscriber(d, a) for a in ("alice", "bob", "carol", "dave")]
        await callback(c, tokens["r1"], code="CBT")
        for s, agent in zip(subs[:2], ("alice", "bob"), strict=True):
            ev = await s.read(timeout=20)
            assert (ev["event"], ev["record"], ev["scope"], ev["team"], ev["agents"]) == \
                ("reminder", "r1", "team", "north", [agent])
        mails = await inbox.wait_for(2)
        assert sorted(r[0] for r, _ in mails) == ["alice@example.com", "bob@example.com"]
        # carol (other team) and dave (logged out) got nothing
        for s in subs:
            await next_line_is_answer(s)
    finally:
        for s in (c, *subs):
            await s.close()
        await d.stop()


async def test_moved_ended_late_and_unasked_callbacks(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    d = await start(config(tmp_path, port))
    c = await connect(d)
    sub = None
    try:
        tokens = await setup_agents(c, "moved", "ended", "late", "unasked", "barrier")
        sub = await subscriber(d, "alice")
        await callback(c, tokens["moved"], in_s=LEAD_S + 3)
        await callback(c, tokens["ended"], in_s=LEAD_S + 3)
        await callback(c, tokens["late"], in_s=-30)  # already due: no reminder
        await callback(c, tokens["unasked"], code="CBN")  # the code asks for none
        await callback(c, tokens["barrier"], in_s=LEAD_S + 4)
        # moved an hour on (a supervisor), with a reminder a minute before the new time
        await ok(c, "callback.schedule", record="moved", at=at_in(3600), owner="alice",
                 scope="personal", reminder_min=1)
        # ended: back to the pool
        await ok(c, "record.reopen", record="ended")
        # the first reminder to arrive is the barrier's, due after all the others
        ev = await sub.read(timeout=20)
        assert (ev["event"], ev["record"]) == ("reminder", "barrier"), ev
        mails = await inbox.wait_for(1)
        assert len(mails) == 1 and "barrier" in mails[0][1]["Subject"]
        await next_line_is_answer(sub)
        moved = await view(c, "moved")
        rem = moved["reminder"]
        assert rem["pending"] is True and rem["sent_at"] is None
        assert stamp(moved["due_at"]) - stamp(rem["at"]) == LEAD_S
        late = (await view(c, "late"))["reminder"]
        assert late["pending"] is False and late["sent_at"] is None
        assert (await view(c, "unasked"))["reminder"] is None
        assert all(e["record"] != "ended" for e in (await ok(c, "callbacks"))["callbacks"])
        for rec in ("moved", "ended", "late", "unasked"):
            assert await reminder_rows(d, rec) == []
    finally:
        for s in (c, sub):
            if s is not None:
                await s.close()
        await d.stop()


def move_callback_in_db(root: Path, record: str, at: float) -> None:
    """Let time pass for a stopped daemon: its callback of ``record`` now falls at ``at``
    (the database is all a restart knows), instead of sleeping through a downtime."""
    con = sqlite3.connect(root / "db.sqlite")
    try:
        (text,) = con.execute("SELECT callback FROM records WHERE id = ?",
                              (record,)).fetchone()
        intent = json.loads(text)
        intent["at"] = at
        con.execute("UPDATE records SET callback = ?, due_at = ? WHERE id = ?",
                    (json.dumps(intent), at, record))
        con.commit()
    finally:
        con.close()


async def test_restart_before_the_reminder_time_still_reminds_once(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    path = config(tmp_path, port)
    d = await start(path)
    c = await connect(d)
    try:
        tokens = await setup_agents(c, "r1")
        await callback(c, tokens["r1"], in_s=LEAD_S + 600)
    finally:
        await c.close()
        await d.stop()
    assert await inbox.wait_for(1, timeout_s=0) == []
    at = time.time() + LEAD_S + 2  # the reminder is 2 s away when the daemon is back
    move_callback_in_db(tmp_path, "r1", at)
    d = await start(path)
    sub = await subscriber(d, "alice")
    try:
        ev = await sub.read(timeout=20)
        assert (ev["event"], ev["record"]) == ("reminder", "r1")
        assert abs(stamp(ev["due_at"]) - at) < 1
        assert len(await inbox.wait_for(1)) == 1
        await next_line_is_answer(sub)
        assert len(await reminder_rows(d, "r1")) == 1
    finally:
        await sub.close()
        await d.stop()
    assert len(await inbox.wait_for(2, timeout_s=0)) == 1


async def test_reminder_due_while_down_is_sent_at_start_unless_the_call_is_due(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    path = config(tmp_path, port)
    d = await start(path)
    c = await connect(d)
    try:
        tokens = await setup_agents(c, "r1", "r2")
        await callback(c, tokens["r1"], in_s=LEAD_S + 600)
        await callback(c, tokens["r2"], in_s=LEAD_S + 600)
    finally:
        await c.close()
        await d.stop()
    now = time.time()
    # r1: its reminder time passed while down, the call is still ahead: sent at start.
    # r2: the call itself became due while down: the agent calls now, no reminder.
    move_callback_in_db(tmp_path, "r1", now + LEAD_S - 5)
    move_callback_in_db(tmp_path, "r2", now - 5)
    d = await start(path)
    c = await connect(d)
    try:
        mails = await inbox.wait_for(1)
        assert len(mails) == 1 and "r1" in mails[0][1]["Subject"]
        rows = await reminder_rows(d, "r1")
        assert len(rows) == 1 and rows[0]["sent_at"] >= now
        assert (await view(c, "r1"))["reminder"]["sent_at"] is not None
        r2 = await view(c, "r2")
        assert r2["state"] == "due"
        assert (r2["reminder"]["pending"], r2["reminder"]["sent_at"]) == (False, None)
        assert await reminder_rows(d, "r2") == []
    finally:
        await c.close()
        await d.stop()
    assert len(await inbox.wait_for(2, timeout_s=0)) == 1


async def test_restart_after_the_reminder_does_not_repeat_it(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    path = config(tmp_path, port)
    d = await start(path)
    c = await connect(d)
    sub = await subscriber(d, "alice")
    try:
        tokens = await setup_agents(c, "r1", "r2")
        # r2 stays leased across the restart (leases are persisted): the barrier later
        await callback(c, tokens["r1"])
        ev = await sub.read(timeout=20)
        assert ev["record"] == "r1"
        assert len(await inbox.wait_for(1)) == 1
        first = (await view(c, "r1"))["reminder"]
    finally:
        for s in (c, sub):
            await s.close()
        await d.stop()
    d = await start(path)
    c = await connect(d)
    sub = await subscriber(d, "alice")
    try:
        # loaded from the database: sent, not pending
        assert (await view(c, "r1"))["reminder"] == first
        await callback(c, tokens["r2"])  # the barrier
        ev = await sub.read(timeout=20)
        assert (ev["event"], ev["record"]) == ("reminder", "r2"), ev
        mails = await inbox.wait_for(2)
        assert ["r1" in m["Subject"] for _, m in mails] == [True, False]
        assert "r2" in mails[1][1]["Subject"]
        await next_line_is_answer(sub)
        assert len(await reminder_rows(d, "r1")) == 1
    finally:
        for s in (c, sub):
            await s.close()
        await d.stop()
    assert len(await inbox.wait_for(3, timeout_s=0)) == 2


async def test_moved_away_and_back_is_a_new_promise(tmp_path: Path) -> None:
    d = await start(config(tmp_path, None))
    c = await connect(d)
    sub = await subscriber(d, "alice")
    try:
        tokens = await setup_agents(c, "r1")
        when = at_in(LEAD_S + 2)
        await ok(c, "dispose", lease=tokens["r1"], code="CB", callback={"at": when})
        assert (await sub.read(timeout=20))["record"] == "r1"
        move = {"record": "r1", "owner": "alice", "scope": "personal", "reminder_min": 1}
        # the same time again: already reminded
        await ok(c, "callback.schedule", at=when, **move)
        await next_line_is_answer(sub)
        # away and back: reminded again at once (its time has passed, the call has not)
        await ok(c, "callback.schedule", at=at_in(3600), **move)
        await ok(c, "callback.schedule", at=when, **move)
        ev = await sub.read(timeout=20)
        assert (ev["event"], ev["record"]) == ("reminder", "r1")
        await next_line_is_answer(sub)
        rows = await reminder_rows(d, "r1")
        assert len(rows) == 1 and abs(rows[0]["at"] - stamp(ev["due_at"])) < 1
    finally:
        for s in (c, sub):
            await s.close()
        await d.stop()


async def test_reminders_beyond_the_horizon_wait_in_the_heap(tmp_path: Path) -> None:
    # the service's clock runs an hour behind: a reminder two seconds away in real time
    # is an hour and two seconds away for the daemon, beyond SCHEDULE_AHEAD_S
    offset = [-3600.0]
    d = Daemon(load(config(tmp_path, None)))
    d.service.clock = lambda: time.time() + offset[0]
    await d.start()
    c = await connect(d)
    sub = await subscriber(d, "alice")
    try:
        tokens = await setup_agents(c, "r1")
        await callback(c, tokens["r1"])
        scheduler = d.reminders.scheduler
        assert scheduler is not None
        assert [j.id for j in scheduler.get_jobs()] == ["reminders-refill"]
        assert (await view(c, "r1"))["reminder"]["pending"] is True
        # an hour later (for the daemon) the refill job moves it into the scheduler
        offset[0] = 0.0
        await d.reminders._refill()
        assert sorted(j.id for j in scheduler.get_jobs()) == ["reminder-1", "reminders-refill"]
        ev = await sub.read(timeout=20)
        assert (ev["event"], ev["record"]) == ("reminder", "r1")
        await next_line_is_answer(sub)
        assert [j.id for j in scheduler.get_jobs()] == ["reminders-refill"]
    finally:
        for s in (c, sub):
            await s.close()
        await d.stop()


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def reminder_sent(self, channel: str) -> None:
        self.calls.append(("sent", channel))

    def reminder_failed(self, channel: str) -> None:
        self.calls.append(("failed", channel))


async def test_smtp_down_counts_a_failure_and_still_records_the_reminder(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = await start(config(tmp_path, free_port()))  # nothing listens there
    rec = d.service.observer = Recorder()
    c = await connect(d)
    sub = await subscriber(d, "alice")
    try:
        tokens = await setup_agents(c, "r1")
        await callback(c, tokens["r1"])
        ev = await sub.read(timeout=20)
        assert ev["record"] == "r1"
        deadline = time.monotonic() + 15
        while not await reminder_rows(d, "r1") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        rows = await reminder_rows(d, "r1")
        assert len(rows) == 1 and '"email_error"' in rows[0]["channels"]
        assert rec.calls == [("sent", "event"), ("failed", "email")]
        assert any(r.message.startswith("reminder_email_failed") for r in caplog.records)
    finally:
        for s in (c, sub):
            await s.close()
        await d.stop()


async def test_subscriptions_end_with_their_connection(tmp_path: Path) -> None:
    d = await start(config(tmp_path, None))
    subs = d.service.subscriptions
    try:
        a = await subscriber(d, "alice", "bob")
        b = await subscriber(d, "alice")
        assert (subs.connections("alice"), subs.connections("bob")) == (2, 1)
        ans = await ok(b, "subscribe", agent="alice")  # again: still one connection
        assert (ans["agent"], ans["connections"], ans["events"]) == ("alice", 2, ["reminder"])
        bad = await a.call("subscribe")
        assert (bad["ok"], bad["error"]["code"], bad["error"]["field"]) == \
            (False, "bad_request", "agent")
        await a.close()
        deadline = time.monotonic() + 10
        while subs.connections("bob") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert (subs.connections("alice"), subs.connections("bob")) == (1, 0)
        await b.close()
        while subs.connections("alice") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert subs.connections("alice") == 0
    finally:
        await d.stop()


async def test_stop_shuts_the_scheduler_down(tmp_path: Path) -> None:
    d = await start(config(tmp_path, None))
    scheduler = d.reminders.scheduler
    assert scheduler is not None and scheduler.running
    assert [j.id for j in scheduler.get_jobs()] == ["reminders-refill"]
    await d.stop()
    assert not scheduler.running and d.reminders.scheduler is None
    await d.reminders.stop()  # a second stop is harmless
