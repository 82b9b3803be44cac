"""Callbacks and reminders, the pure parts: where a callback stands, who may own one,
the reminder lead carried from its code, the engine's callback index, the config keys
(``reminder``, ``[smtp]``, ``[agents.NAME]``), event fan-out and the e-mail text."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from nextcall.config import load
from nextcall.core import calendar
from nextcall.core.engine import Engine, callback_standing
from nextcall.core.errors import BadRequest, ConfigError
from nextcall.core.model import DEFAULT_REMINDER_MIN, Campaign, Interval, ResultCode
from nextcall.core.records import PHONE_ACTIVE, CallbackIntent, Record
from nextcall.core.results import CallbackRequest, Disposition, decide, resolve_callback
from nextcall.mailcfg import DEFAULT_BODY, render
from nextcall.notify.email import reminder_message
from nextcall.notify.events import Subscriptions

AMS = "Europe/Amsterdam"
ALL_DAY = tuple((Interval(0, 24 * 60),) for _ in range(7))
CODES = {rc.code: rc for rc in (
    ResultCode("CB", "call back", "callback", contact_priority=6, reminder_min=10),
    ResultCode("CBN", "no reminder", "callback", scope="personal"),
    ResultCode("CBT", "team", "callback", scope="team"),
    ResultCode("NA", "no answer", "retry", delay_s=60),
)}
CAMP = Campaign(name="c", codes=CODES, window=ALL_DAY, legal_window=Interval(0, 24 * 60))
NOW = datetime(2026, 3, 4, 10, tzinfo=calendar.zone(AMS)).timestamp()


def record(**kw: Any) -> Record:
    args: dict[str, Any] = {"rid": 1, "id": "r1", "campaign": "c", "list": "l",
                            "phones": [["+31201111111", PHONE_ACTIVE]], "timezone": AMS,
                            "priority": 0, "data": "{}", "team": "north"}
    args.update(kw)
    return Record(**args)


# ------------------------------------------------------------------------- standing
@pytest.mark.parametrize(("due_at", "grace_s", "now", "expected"), [
    (200.0, 60, 100.0, ("upcoming", 0.0)),
    (100.0, 60, 100.0, ("due", 0.0)),
    (100.0, 60, 160.0, ("due", 60.0)),  # exactly the grace period: still due
    (100.0, 60, 160.5, ("overdue", 60.5)),
    (100.0, 0, 100.5, ("overdue", 0.5)),  # no grace: late is overdue at once
])
def test_callback_standing(due_at: float, grace_s: int, now: float,
                           expected: tuple[str, float]) -> None:
    assert callback_standing(due_at, grace_s, now) == expected


# ------------------------------------------------------------------------- owners
AGENTS_OF_C = {"ann", "bob"}


@pytest.mark.parametrize(("owner", "scope", "ok"), [
    ("bob", None, True),  # another agent of the campaign
    ("ghost", None, False),
    ("ghost", "personal", False),
    ("ghost", "anyone", False),
    ("ann", None, True),  # the disposing agent itself is never checked
    (None, None, True),
    ("ghost", "team", True),  # a team callback has no owner: nothing to check
])
def test_owner_must_pass_the_predicate(owner: str | None, scope: str | None,
                                       ok: bool) -> None:
    req = CallbackRequest("2026-03-05T10:00", owner=owner, scope=scope)
    d = Disposition(code="CB", agent="ann", phone_idx=0, callback=req,
                    owner_allowed=AGENTS_OF_C.__contains__)
    if ok:
        out = decide(record(), CAMP, d, NOW)
        assert out.owner == (None if scope == "team" else owner or "ann")
    else:
        with pytest.raises(BadRequest) as err:
            decide(record(), CAMP, d, NOW)
        assert err.value.field == "callback.owner"
        assert "ghost" in err.value.message and "'c'" in err.value.message


def test_no_predicate_accepts_any_owner() -> None:
    cb = resolve_callback(record(), CAMP, CODES["CB"],
                          CallbackRequest("2026-03-05T10:00", owner="ghost"), "ann", NOW)
    assert cb.owner == "ghost"


# ------------------------------------------------------------------------- reminder lead
@pytest.mark.parametrize(("code", "minutes"), [("CB", 10), ("CBN", None), ("CBT", None)])
def test_reminder_lead_comes_from_the_code(code: str, minutes: int | None) -> None:
    req = CallbackRequest("2026-03-05T10:00", team="north")
    out = decide(record(), CAMP, Disposition(code=code, agent="ann", phone_idx=0,
                                             callback=req), NOW)
    assert out.callback is not None and out.callback.reminder_min == minutes


def test_intent_json_round_trip_keeps_the_reminder() -> None:
    cb = CallbackIntent(at=NOW, timezone=AMS, local="x", scope="personal", owner="ann",
                        team=None, contact_priority=4, code="CB", reminder_min=15)
    assert CallbackIntent.from_json(json.loads(json.dumps(cb.to_json()))) == cb
    legacy = cb.to_json()
    del legacy["reminder_min"]  # stored before reminders existed: no reminder
    assert CallbackIntent.from_json(legacy).reminder_min is None


# ------------------------------------------------------------------------- engine index
def test_engine_indexes_callback_records() -> None:
    eng = Engine({"c": CAMP})
    a, b = record(), record(rid=2, id="r2", phones=[["+31202222222", PHONE_ACTIVE]])
    eng.add(a, NOW)
    eng.add(b, NOW)
    assert eng.callback_rids() == []
    (lease,) = eng.next("ann", ("c",), (), 1, 0, NOW)
    d = Disposition(code="CB", agent="ann", phone_idx=0,
                    callback=CallbackRequest("2026-03-05T10:00"))
    eng.dispose(lease, decide(lease.record, CAMP, d, NOW), NOW, b"{}", "CB")
    assert eng.callback_rids() == [lease.record.rid]
    eng.check_invariants()
    eng.reopen(lease.record, NOW)  # back to the pool: no longer a callback
    assert eng.callback_rids() == []
    eng.check_invariants()


# ------------------------------------------------------------------------- config
def write(tmp: Path, main: str, **files: str) -> Path:
    for name, text in files.items():
        (tmp / name).write_text(textwrap.dedent(text))
    p = tmp / "main.toml"
    p.write_text(textwrap.dedent(main))
    return p


CODESET = """
    [resultsets.s]
    [[resultsets.s.codes]]
    code = "ON"
    action = "callback"
    reminder = true
    [[resultsets.s.codes]]
    code = "FIVE"
    action = "callback"
    reminder_min = 5
    [[resultsets.s.codes]]
    code = "BOTH"
    action = "callback"
    reminder = true
    reminder_min = 30
    [[resultsets.s.codes]]
    code = "OFF"
    action = "callback"
    reminder = false
    [[resultsets.s.codes]]
    code = "NONE"
    action = "callback"
    [campaigns.c]
    resultset = "s"
"""


def test_reminder_keys_give_the_lead(tmp_path: Path) -> None:
    s = load(write(tmp_path, CODESET))
    codes = s.campaigns["c"].codes
    assert {k: rc.reminder_min for k, rc in codes.items()} == {
        "ON": DEFAULT_REMINDER_MIN, "FIVE": 5, "BOTH": 30, "OFF": None, "NONE": None}
    assert DEFAULT_REMINDER_MIN == 15
    assert not s.smtp.active and s.agents == {}


def test_reminder_problems_are_reported_with_their_key(tmp_path: Path) -> None:
    main = """
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "X"
        action = "close"
        reminder = true
        [[resultsets.s.codes]]
        code = "Y"
        action = "callback"
        reminder = false
        reminder_min = 5
        [campaigns.c]
        resultset = "s"
    """
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, main))
    where = {w.split(": ", 1)[1]: m for w, m in err.value.problems}
    assert where["resultsets.s.codes[0].reminder"] == "only callback codes take reminders"
    assert "reminder = false" in where["resultsets.s.codes[1].reminder_min"]


def test_smtp_and_agent_emails(tmp_path: Path) -> None:
    main = 'include = ["agents.toml"]\n' + CODESET + """
        [smtp]
        host = "mail.example.com"
        port = 587
        from = "nextcall@example.com"
        starttls = true
        username = "nextcall"
        password = "secret"
        [agents.ann]
        email = "ann@example.com"
    """
    s = load(write(tmp_path, main, **{"agents.toml": """
        [agents.bob]
        email = "bob@example.com"
    """}))
    assert s.smtp.active and (s.smtp.host, s.smtp.port, s.smtp.sender) == \
        ("mail.example.com", 587, "nextcall@example.com")
    assert (s.smtp.starttls, s.smtp.ssl, s.smtp.username) == (True, False, "nextcall")
    assert {a: c.email for a, c in s.agents.items()} == {"ann": "ann@example.com",
                                                         "bob": "bob@example.com"}


@pytest.mark.parametrize(("smtp", "key", "fragment"), [
    ('host = "h"', "smtp", "From address"),
    ('host = "h"\nfrom = "a@b.c"\nstarttls = true\nssl = true', "smtp", "exclude"),
    ('host = "h"\nfrom = "a@b.c"\nusername = "u"', "smtp", "go together"),
    ('host = "h"\nfrom = "not-an-address"', "smtp.from", "not an e-mail address"),
    ('host = "h"\nfrom = "a@b.c"\nport = 0', "smtp.port", "greater than or equal"),
    ('hots = "h"', "smtp.hots", "unknown key"),
])
def test_smtp_problems(tmp_path: Path, smtp: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, CODESET + "\n[smtp]\n" + smtp + "\n"))
    found = {w.split(": ", 1)[1]: m for w, m in err.value.problems}
    assert fragment in found[key], found


def test_agents_problems_and_smtp_only_in_the_main_file(tmp_path: Path) -> None:
    main = 'include = ["more.toml"]\n' + CODESET + """
        [agents.ann]
        email = "ann@example.com"
        [agents.bad]
        email = "ann"
    """
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, main, **{"more.toml": """
            [smtp]
            host = "h"
            [agents.ann]
            email = "ann@example.com"
        """}))
    problems = [(w.split(": ", 1)[1], m) for w, m in err.value.problems]
    assert ("agents.bad.email", "'ann' is not an e-mail address (name@example.com)") \
        in problems
    assert ("smtp", "only the main file may set this") in problems
    assert any(w == "agents.ann" and "already defined" in m for w, m in problems)


# ------------------------------------------------------------------------- fan-out
async def test_subscriptions_fan_out_once_per_connection() -> None:
    got: dict[int, list[bytes]] = {1: [], 2: [], 3: []}

    def sender(conn: int) -> Any:
        async def send(line: bytes) -> None:
            got[conn].append(line)
        return send

    async def broken(line: bytes) -> None:
        raise ConnectionResetError

    subs = Subscriptions()
    subs.add(1, "ann", sender(1))
    subs.add(1, "bob", sender(1))
    subs.add(2, "ann", sender(2))
    subs.add(3, "cid", sender(3))
    subs.add(4, "ann", broken)
    n = await subs.publish("reminder", {"record": "r1"}, ["ann", "bob", "zed"])
    assert n == 2  # connections 1 and 2; 4 failed
    assert [json.loads(x) for x in got[1]] == [{"event": "reminder", "record": "r1",
                                                "agents": ["ann", "bob"]}]
    assert [json.loads(x) for x in got[2]] == [{"event": "reminder", "record": "r1",
                                                "agents": ["ann"]}]
    assert got[3] == []
    subs.discard(1)
    subs.discard(4)
    assert (subs.connections("ann"), subs.connections("bob")) == (1, 0)
    assert await subs.publish("reminder", {}, ["bob"]) == 0
    await asyncio.sleep(0)


def test_email_names_the_record_and_its_local_time() -> None:
    """The default template, filled as the reminder job fills it."""
    values = {"agent": "ann", "record": "r1", "campaign": "c",
              "local": "2026-03-05T10:00:00+01:00", "timezone": AMS,
              "callee_local": "2026-03-05T04:00:00-05:00",
              "callee_timezone": "America/New_York", "utc": "2026-03-05T09:00:00Z",
              "for": "team north", "scope": "team", "reason": "brochure", "minutes": 15}
    text = render(DEFAULT_BODY, values, {})
    assert "r1" in text and "2026-03-05T10:00:00+01:00 (Europe/Amsterdam)" in text
    assert "Callee:    2026-03-05T04:00:00-05:00 (America/New_York)" in text
    assert "in 15 minutes" in text and "team north (team)" in text and "brochure" in text
    msg = reminder_message("nextcall@example.com", "ann@example.com", "subject", text)
    assert (msg["From"], msg["To"], msg["Subject"]) == \
        ("nextcall@example.com", "ann@example.com", "subject")
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content() == text
