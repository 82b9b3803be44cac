"""Every operation and every error code of SPEC §5, over the real Unix socket.

Each test talks to an in-process daemon (tests/conftest.py ``daemon``) through
``AsyncClient``; special configurations (a restricted calling window, an agent-only
peer) get their own fixture below. Every read is bounded by ``AsyncClient.read``'s
timeout; the only deliberate wait is one 5 s lease expiry, observed by a long-poll.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import nextcall
from nextcall.app import Daemon
from nextcall.config import load
from tests.conftest import AsyncClient, make_records, write_config

UTC = UTC
Records = Callable[..., list[dict[str, Any]]]

# ---------------------------------------------------------------------------- helpers


async def ok(c: AsyncClient, op: str, **fields: Any) -> dict[str, Any]:
    """Call ``op`` and insist on success."""
    ans = await c.call(op, **fields)
    assert ans["ok"] is True, ans
    return ans


def refused(ans: dict[str, Any], code: str, field: str | None = None) -> dict[str, Any]:
    """Assert ``ans`` is a failure with ``code`` (and ``field`` when given, else none)."""
    assert ans["ok"] is False, ans
    err = ans["error"]
    assert err["code"] == code, ans
    assert isinstance(err["message"], str) and err["message"], ans
    assert err.get("field") == field, ans
    return err


async def lease_one(c: AsyncClient, agent: str = "a", campaigns: list[str] | None = None
                    ) -> dict[str, Any]:
    ans = await ok(c, "next", agent=agent, campaigns=campaigns or ["t"])
    assert len(ans["leases"]) == 1, ans
    return ans["leases"][0]


def tomorrow_utc(hour: int) -> str:
    d = datetime.now(UTC).date() + timedelta(days=1)
    return f"{d.isoformat()}T{hour:02d}:00:00"


def amsterdam_dst_gap() -> str:
    """02:30 on the next spring-forward Sunday in Europe/Amsterdam (that wall time does
    not exist: clocks jump from 02:00 to 03:00 on the last Sunday of March)."""
    year = datetime.now(UTC).year + 1
    d = date(year, 3, 31)
    d -= timedelta(days=(d.weekday() - 6) % 7)
    return f"{d.isoformat()}T02:30:00"


def etc_zone(local_hour: int) -> str:
    """A fixed-offset IANA zone in which it is now ``local_hour``:mm."""
    off = (local_hour - datetime.now(UTC).hour) % 24
    if off > 14:
        off -= 24
    if off == 0:
        return "Etc/GMT"
    # POSIX sign convention: Etc/GMT-2 is UTC+2
    return f"Etc/GMT-{off}" if off > 0 else f"Etc/GMT+{-off}"


async def start_daemon(path: Path) -> Daemon:
    d = Daemon(load(path))
    await d.start()
    return d


# ---------------------------------------------------------------------------- fixtures

ALL_DAY = "\n".join(f'{d} = ["00:00-24:00"]' for d in
                    ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
OFFICE = "\n".join(f'{d} = ["09:00-17:00"]' for d in
                   ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
TWO_CAMPAIGNS = f"""
[campaigns.t]
resultset = "std"
max_attempts = 3
grace_s = 60
legal_window = "00:00-24:00"
timezone = "UTC"
[campaigns.t.window]
{ALL_DAY}

[campaigns.w]
resultset = "std"
legal_window = "08:00-21:00"
timezone = "UTC"
[campaigns.w.window]
{OFFICE}
"""


@pytest.fixture
async def two_campaigns(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    """A daemon with ``t`` (always open) and ``w`` (09-17 local, legal 08-21)."""
    root = tmp_path / "two"
    root.mkdir()
    d = await start_daemon(write_config(root, campaigns=TWO_CAMPAIGNS))
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        yield c
    finally:
        await c.close()
        await d.stop()


@pytest.fixture
async def agent_only(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    """A daemon that does not trust its own uid: this test process is a mere agent."""
    root = tmp_path / "agent"
    root.mkdir()
    d = await start_daemon(write_config(root, auth="trust_own_uid = false"))
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        yield c
    finally:
        await c.close()
        await d.stop()


# ---------------------------------------------------------------------------- ping


async def test_ping_reports_version_and_role(client: AsyncClient) -> None:
    ans = await ok(client, "ping")
    assert ans["version"] == nextcall.__version__
    assert ans["role"] == "admin"  # the daemon's own uid is trusted by default
    assert ans["records"] == 0


@pytest.mark.parametrize("rid", ["abc-1", 7, 2.5, None, ""])
async def test_answers_echo_the_request_id(client: AsyncClient, rid: Any) -> None:
    await client.send_raw(json.dumps({"id": rid, "op": "ping"}).encode() + b"\n")
    ans = await client.read()
    assert ans["ok"] is True and ans["id"] == rid and type(ans["id"]) is type(rid)
    # an error echoes the id too
    await client.send_raw(json.dumps({"id": rid, "op": "nope"}).encode() + b"\n")
    ans = await client.read()
    assert ans["id"] == rid
    refused(ans, "unknown_op", "op")


async def test_request_without_id_is_answered_with_null_id(client: AsyncClient) -> None:
    await client.send_raw(b'{"op":"ping"}\n')
    ans = await client.read()
    assert ans["ok"] is True and ans["id"] is None


# ---------------------------------------------------------------------------- campaigns


async def test_campaigns_lists_codes_and_what_each_requires(client: AsyncClient) -> None:
    ans = await ok(client, "campaigns")
    assert [c["name"] for c in ans["campaigns"]] == ["t"]
    camp = ans["campaigns"][0]
    assert camp["enabled"] is True and camp["max_attempts"] == 3 and camp["lease_s"] == 60
    assert camp["window"]["mon"] == ["00:00-24:00"]
    codes = {c["code"]: c for c in camp["codes"]}
    assert set(codes) == {"NA", "NA0", "CB", "CBT", "SALE", "NI", "OLD"}
    assert codes["SALE"]["action"] == "close"
    assert codes["SALE"]["requires"]["revenue"] == "required"
    assert codes["SALE"]["requires"]["callback"] is False
    assert codes["NI"]["requires"]["note"] == "required"
    assert codes["NA"]["requires"]["note"] == "none"
    assert codes["NA"]["requires"]["callback"] is False
    assert codes["CB"]["requires"]["callback"] is True
    assert codes["CB"]["scope"] == "personal_then_team"
    assert codes["CBT"]["scope"] == "team"
    assert codes["NA"]["scope"] is None
    assert codes["OLD"]["enabled"] is False
    assert codes["NA"]["enabled"] is True


async def test_campaigns_for_an_agent_follow_its_login(client: AsyncClient) -> None:
    assert (await ok(client, "campaigns", agent="ann"))["campaigns"] == []
    await ok(client, "agent.login", agent="ann", campaigns=["t"])
    assert [c["name"] for c in (await ok(client, "campaigns", agent="ann"))["campaigns"]] \
        == ["t"]
    await ok(client, "agent.logout", agent="ann")
    assert (await ok(client, "campaigns", agent="ann"))["campaigns"] == []


# ---------------------------------------------------------------------------- login


async def test_login_scopes_next_and_logout_ends_it(client: AsyncClient,
                                                    records: Records) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=records(2))
    ans = await ok(client, "agent.login", agent="ann", campaigns=["t", "t"], teams=["blue"])
    assert ans == {"id": ans["id"], "ok": True, "agent": "ann", "campaigns": ["t"],
                   "teams": ["blue"]}
    assert (await ok(client, "stats"))["agents_logged_in"] == 1
    # logged in: next needs no campaigns
    got = await ok(client, "next", agent="ann")
    assert len(got["leases"]) == 1 and got["leases"][0]["agent"] == "ann"
    out = await ok(client, "agent.logout", agent="ann")
    assert out["agent"] == "ann" and out["logged_in"] is False
    assert (await ok(client, "stats"))["agents_logged_in"] == 0
    refused(await client.call("next", agent="ann"), "not_logged_in", "campaigns")
    # naming the campaigns still works without a login
    assert len((await ok(client, "next", agent="ann", campaigns=["t"]))["leases"]) == 1


async def test_login_and_next_refuse_unknown_campaigns(client: AsyncClient) -> None:
    refused(await client.call("agent.login", agent="ann", campaigns=["t", "nope"]),
            "unknown_campaign", "campaigns[1]")
    # the refused login did not log anyone in
    assert (await ok(client, "stats"))["agents_logged_in"] == 0
    refused(await client.call("next", agent="ann", campaigns=["nope"]),
            "unknown_campaign", "campaigns[0]")
    refused(await client.call("stats", campaign="nope"), "unknown_campaign", "campaign")
    refused(await client.call("records.import", campaign="nope", list="l",
                              records=make_records(1)), "unknown_campaign", "campaign")


async def test_logout_of_an_unknown_agent_is_not_found(client: AsyncClient) -> None:
    refused(await client.call("agent.logout", agent="ghost"), "not_found", "agent")
    refused(await client.call("next", agent="ghost"), "not_logged_in", "campaigns")


# ---------------------------------------------------------------------------- next


async def test_next_hands_out_count_records_each_once(client: AsyncClient,
                                                      records: Records) -> None:
    await ok(client, "records.import", campaign="t", list="l",
             records=records(5, data={"name": "X"}))
    first = (await ok(client, "next", agent="a", campaigns=["t"], count=3))["leases"]
    assert len(first) == 3
    for lz in first:
        assert set(lz) >= {"token", "expires_at", "expires_in_s", "phone", "reason",
                           "record", "agent"}
        assert lz["reason"] == "pool" and lz["agent"] == "a"
        assert lz["record"]["state"] == "leased" and lz["record"]["campaign"] == "t"
        assert lz["record"]["data"] == {"name": "X"}
        assert lz["phone"] == lz["record"]["phones"][0]["number"]
    rest = (await ok(client, "next", agent="b", campaigns=["t"], count=5))["leases"]
    assert len(rest) == 2  # only what is left
    ids = [lz["record"]["id"] for lz in first + rest]
    assert sorted(ids) == [f"r{i}" for i in range(5)]
    assert len({lz["token"] for lz in first + rest}) == 5
    assert (await ok(client, "next", agent="c", campaigns=["t"]))["leases"] == []
    st = (await ok(client, "stats", campaign="t"))
    assert st["leases"] == 5 and st["campaigns"]["t"]["leased"] == 5


async def test_next_prefers_higher_priority(client: AsyncClient) -> None:
    recs = make_records(3)
    recs[2]["priority"] = 50
    await ok(client, "records.import", campaign="t", list="l", records=recs)
    assert (await lease_one(client))["record"]["id"] == "r2"


async def test_next_draws_only_from_the_named_or_logged_in_campaigns(
        two_campaigns: AsyncClient) -> None:
    c = two_campaigns
    await ok(c, "records.import", campaign="t", list="l", records=make_records(2, "t"))
    await ok(c, "records.import", campaign="w", list="l",
             records=make_records(2, "w", timezone=etc_zone(12)))
    await ok(c, "agent.login", agent="ann", campaigns=["w"])
    got = (await ok(c, "next", agent="ann", count=10))["leases"]
    assert sorted(lz["record"]["id"] for lz in got) == ["w0", "w1"]
    got = (await ok(c, "next", agent="ann", campaigns=["t"], count=10))["leases"]
    assert sorted(lz["record"]["id"] for lz in got) == ["t0", "t1"]


async def test_next_skips_records_outside_their_calling_window(
        two_campaigns: AsyncClient) -> None:
    c = two_campaigns
    night = etc_zone(2)
    recs = [{"id": "noon", "phones": ["+31612340001"], "timezone": etc_zone(12)},
            {"id": "night", "phones": ["+31612340002"], "timezone": night}]
    await ok(c, "records.import", campaign="w", list="l", records=recs)
    got = (await ok(c, "next", agent="a", campaigns=["w"], count=5))["leases"]
    assert [lz["record"]["id"] for lz in got] == ["noon"]
    zones = (await ok(c, "stats", campaign="w"))["campaigns"]["w"]["zones"]
    assert zones[night]["open"] is False


@pytest.mark.parametrize("how", ["dispose_na0", "release", "import"])
async def test_long_poll_returns_the_record_that_becomes_available(
        daemon: Daemon, client: AsyncClient, how: str) -> None:
    holder = None
    if how != "import":
        await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
        holder = await lease_one(client, "holder")
    waiter = await AsyncClient.connect(daemon.settings.daemon.socket)
    try:
        # the ping's answer proves the long-poll (started first) is now waiting
        await waiter.send_raw(b'{"id":"poll","op":"next","agent":"w","campaigns":["t"],'
                              b'"wait":60}\n{"id":"ping","op":"ping"}\n')
        first = await waiter.read()
        assert first["id"] == "ping" and first["ok"], first
        if how == "dispose_na0":
            assert holder is not None
            ans = await ok(client, "dispose", lease=holder["token"], code="NA0")
            assert ans["state"] == "ready" and ans["attempts"] == 1
        elif how == "release":
            assert holder is not None
            await ok(client, "release", lease=holder["token"])
        else:
            await ok(client, "records.import", campaign="t", list="l",
                     records=make_records(1))
        got = await waiter.read(timeout=20)
        assert got["id"] == "poll" and got["ok"], got
        assert [lz["record"]["id"] for lz in got["leases"]] == ["r0"]
        assert got["leases"][0]["agent"] == "w"
    finally:
        await waiter.close()


async def test_long_poll_with_nothing_to_hand_out_returns_empty(client: AsyncClient) -> None:
    ans = await ok(client, "next", agent="a", campaigns=["t"], wait=0.2)
    assert ans["leases"] == []


# ---------------------------------------------------------------------------- dispose


async def test_dispose_retry_schedules_the_record_again(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client)
    ans = await ok(client, "dispose", lease=lz["token"], code="NA")
    assert ans["record"] == "r0" and ans["code"] == "NA"
    assert ans["state"] == "ready" and ans["attempts"] == 1 and ans["reason"] is None
    assert ans["due_at"] is not None and "duplicate" not in ans
    # NA retries after 60 s: dormant, not handed out now
    assert (await ok(client, "next", agent="b", campaigns=["t"]))["leases"] == []
    st = (await ok(client, "stats", campaign="t"))["campaigns"]["t"]
    assert st["dormant"] == 1 and st["due"] == 0 and st["leased"] == 0


async def test_dispose_na0_puts_the_record_back_at_once(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client)
    ans = await ok(client, "dispose", lease=lz["token"], code="NA0")
    assert ans["state"] == "ready" and ans["attempts"] == 1
    again = await lease_one(client, "b")
    assert again["record"]["id"] == "r0" and again["record"]["attempts"] == 1


async def test_dispose_callback_keeps_the_record_for_its_owner(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client, "ann")
    at = tomorrow_utc(10)
    ans = await ok(client, "dispose", lease=lz["token"], code="CB",
                   callback={"at": at, "timezone": "UTC", "reason": "call me"})
    assert ans["state"] == "callback" and ans["owner"] == "ann"
    cb = ans["callback"]
    assert cb["scope"] == "personal_then_team" and cb["owner"] == "ann"
    assert cb["local"] == at + "+00:00" and cb["reason"] == "call me" and cb["code"] == "CB"
    assert ans["due_at"] == at + "Z"
    st = (await ok(client, "stats", campaign="t"))["campaigns"]["t"]
    assert st["callback_upcoming"] == 1 and st["due"] == 0
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert rec["state"] == "callback" and rec["callback"]["local"] == at + "+00:00"


async def test_dispose_close_codes_close_the_record(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(2))
    a, b = (await ok(client, "next", agent="a", campaigns=["t"], count=2))["leases"]
    sale = await ok(client, "dispose", lease=a["token"], code="SALE", revenue=99.5)
    assert sale["state"] == "closed" and sale["reason"] == "final"
    assert sale["due_at"] is None
    ni = await ok(client, "dispose", lease=b["token"], code="NI", note="moved abroad")
    assert ni["state"] == "closed" and ni["reason"] == "final"
    st = (await ok(client, "stats", campaign="t"))["campaigns"]["t"]
    assert st["closed"] == {"final": 2} and st["due"] == 0
    assert (await ok(client, "next", agent="c", campaigns=["t"]))["leases"] == []
    rec = (await ok(client, "record.get", record=a["record"]["id"]))["record"]
    assert rec["state"] == "closed" and rec["history"][0]["revenue"] == 99.5


async def test_identical_retried_dispose_returns_the_same_answer(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client)
    first = await ok(client, "dispose", lease=lz["token"], code="NA")
    again = await ok(client, "dispose", lease=lz["token"], code="NA")
    assert again.pop("duplicate") is True
    first.pop("id"), again.pop("id")
    assert again == first
    # a different code on the same (ended) lease is refused, as are release and extend
    err = refused(await client.call("dispose", lease=lz["token"], code="NA0"),
                  "lease_ended", "lease")
    assert "disposed" in err["message"]
    refused(await client.call("release", lease=lz["token"]), "lease_ended", "lease")
    refused(await client.call("extend", lease=lz["token"]), "lease_ended", "lease")
    # the retry did not record a second attempt
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert len(rec["history"]) == 1 and rec["attempts"] == 1


async def test_refused_dispositions_change_nothing(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client)
    tok = lz["token"]
    cb = {"at": tomorrow_utc(10), "timezone": "UTC"}
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({"code": "ZZZ"}, "unknown_code", "code"),
        ({"code": "OLD"}, "code_disabled", "code"),
        ({"code": "CB"}, "callback_required", "callback"),
        ({"code": "SALE"}, "revenue_required", "revenue"),
        ({"code": "SALE", "revenue": 0}, "revenue_required", "revenue"),
        ({"code": "SALE", "revenue": -5.0}, "revenue_required", "revenue"),
        ({"code": "NI"}, "note_required", "note"),
        ({"code": "NI", "note": "   "}, "note_required", "note"),
        ({"code": "NA", "note": "no notes for NA"}, "bad_request", "note"),
        ({"code": "NA", "revenue": 10.0}, "bad_request", "revenue"),
        ({"code": "NA", "callback": cb}, "bad_request", "callback"),
        ({"code": "NA", "phone": "+31699999999"}, "bad_request", "phone"),
        ({"code": "NA", "appointment": {"at": tomorrow_utc(10)}}, "bad_request",
         "appointment"),
        ({"code": "CB", "callback": {"at": amsterdam_dst_gap(),
                                     "timezone": "Europe/Amsterdam"}},
         "invalid_time", "callback.at"),
        ({"code": "CB", "callback": {"at": "next tuesday"}}, "bad_request", "callback.at"),
        ({"code": "CB", "callback": {"at": "2001-01-01T10:00:00"}}, "bad_request",
         "callback.at"),
        ({"code": "CB", "callback": {**cb, "scope": "galaxy"}}, "bad_request",
         "callback.scope"),
        ({"code": "CBT", "callback": cb}, "bad_request", "callback.team"),
    ]
    for fields, code, field in cases:
        ans = await client.call("dispose", lease=tok, **fields)
        assert ans["ok"] is False, (fields, ans)
        assert (ans["error"]["code"], ans["error"].get("field")) == (code, field), \
            (fields, ans)
    # the lease is still live and the record untouched
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert rec["state"] == "leased" and rec["attempts"] == 0 and rec["history"] == []
    ans = await ok(client, "dispose", lease=tok, code="CBT",
                   callback={**cb, "team": "blue"})
    assert ans["state"] == "callback" and ans["team"] == "blue" and ans["owner"] is None
    assert ans["attempts"] == 1


async def test_unknown_callback_timezone_names_its_field(client: AsyncClient) -> None:
    """Regression: calendar.zone() used to name field 'timezone' whatever the path."""
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client)
    ans = await client.call("dispose", lease=lz["token"], code="CB",
                            callback={"at": tomorrow_utc(10), "timezone": "Mars/Olympus"})
    refused(ans, "bad_request", "callback.timezone")


async def test_dispose_may_name_another_number_of_the_record(client: AsyncClient) -> None:
    recs = [{"id": "two", "phones": ["+31612340001", "+31612340002"], "timezone": "UTC"}]
    await ok(client, "records.import", campaign="t", list="l", records=recs)
    lz = await lease_one(client)
    assert lz["phone"] == "+31612340001"
    await ok(client, "dispose", lease=lz["token"], code="NA0", phone="+31612340002")
    rec = (await ok(client, "record.get", record="two"))["record"]
    assert rec["history"][0]["phone"] == "+31612340002"
    # a retry moves on to the number after the one dialled
    assert (await lease_one(client))["phone"] == "+31612340001"


# ---------------------------------------------------------------------------- windows


async def test_callbacks_outside_the_windows_are_refused(two_campaigns: AsyncClient) -> None:
    c = two_campaigns
    tz = etc_zone(12)
    await ok(c, "records.import", campaign="w", list="l",
             records=make_records(1, timezone=tz))
    lz = await lease_one(c, "ann", ["w"])
    day = (datetime.now(ZoneInfo(tz)).date() + timedelta(days=1)).isoformat()
    for hour in ("22:00", "07:00"):
        refused(await c.call("dispose", lease=lz["token"], code="CB",
                             callback={"at": f"{day}T{hour}:00", "override_window": True}),
                "outside_legal_window", "callback.at")
    refused(await c.call("dispose", lease=lz["token"], code="CB",
                         callback={"at": f"{day}T18:00:00"}),
            "outside_calling_window", "callback.at")
    # the shift-worker case: allowed when the agent says so
    ans = await ok(c, "dispose", lease=lz["token"], code="CB",
                   callback={"at": f"{day}T18:00:00", "override_window": True})
    assert ans["state"] == "callback"
    assert ans["callback"]["local"].startswith(f"{day}T18:00:00")
    assert ans["callback"]["override_window"] is True


# ---------------------------------------------------------------------------- release/extend


async def test_release_gives_the_record_back_unchanged(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client, "a")
    ans = await ok(client, "release", lease=lz["token"], agent="a")
    assert ans["record"] == "r0" and ans["state"] == "ready"
    again = await lease_one(client, "b")
    assert again["record"]["id"] == "r0" and again["record"]["attempts"] == 0
    assert again["token"] != lz["token"]
    err = refused(await client.call("release", lease=lz["token"]), "lease_ended", "lease")
    assert "released" in err["message"]
    refused(await client.call("dispose", lease=lz["token"], code="NA"), "lease_ended",
            "lease")
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert [x["end"] for x in rec["leases"]] == ["released", "active"]


async def test_extend_renews_the_lease(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client)
    ans = await ok(client, "extend", lease=lz["token"], seconds=3600)
    assert ans["token"] == lz["token"] and ans["expires_in_s"] > 3000
    assert ans["expires_at"] > lz["expires_at"]
    # default: the campaign's lease length (the daemon's 60 s here)
    ans = await ok(client, "extend", lease=lz["token"])
    assert 30 < ans["expires_in_s"] <= 60
    refused(await client.call("extend", lease=lz["token"], seconds=4), "bad_request",
            "seconds")
    refused(await client.call("extend", lease=lz["token"], seconds="60"), "bad_request",
            "seconds")
    # still disposable with the same token
    await ok(client, "dispose", lease=lz["token"], code="NA0")


async def test_lease_tokens_are_checked(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client, "ann")
    lid, secret = lz["token"].split(".", 1)
    forged = f"{lid}.{'x' * len(secret)}"
    for op, extra in (("dispose", {"code": "NA"}), ("release", {}), ("extend", {})):
        refused(await client.call(op, lease=forged, **extra), "not_lease_holder", "lease")
        refused(await client.call(op, lease=lz["token"], agent="bob", **extra),
                "not_lease_holder", "agent")
        refused(await client.call(op, lease="99999.abcdef", **extra), "not_found", "lease")
        refused(await client.call(op, lease="not-a-token", **extra), "bad_request", "lease")
        refused(await client.call(op, lease="ab", **extra), "bad_request", "lease")
    # none of that touched the lease
    ans = await ok(client, "dispose", lease=lz["token"], agent="ann", code="NA")
    # a forged token of an ended lease is still refused, not answered from memory
    refused(await client.call("dispose", lease=forged, code="NA"), "not_lease_holder",
            "lease")
    assert ans["attempts"] == 1


async def test_expired_lease_goes_back_unchanged_and_wakes_a_long_poll(
        daemon: Daemon, client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    lz = await lease_one(client, "slow")
    await ok(client, "extend", lease=lz["token"], seconds=5)
    other = await AsyncClient.connect(daemon.settings.daemon.socket)
    try:
        # the one deliberate wait of this file: the lease runs out after ~5 s and the
        # long-poll is woken by the expiry, not by the end of its 30 s
        got = await ok(other, "next", agent="quick", campaigns=["t"], wait=30)
        assert [x["record"]["id"] for x in got["leases"]] == ["r0"]
        assert got["leases"][0]["record"]["attempts"] == 0
    finally:
        await other.close()
    for op, extra in (("dispose", {"code": "NA"}), ("release", {}), ("extend", {})):
        refused(await client.call(op, lease=lz["token"], **extra), "lease_expired", "lease")
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert rec["history"] == [] and rec["attempts"] == 0
    assert [(x["agent"], x["end"]) for x in rec["leases"]] == [("slow", "expired"),
                                                               ("quick", "active")]
    await ok(client, "dispose", lease=got["leases"][0]["token"], code="NA")


# ---------------------------------------------------------------------------- record.get


async def test_record_get_shows_the_record_and_its_history(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l1",
             records=make_records(1, data={"name": "Ann", "tags": [1, 2]}, priority=3))
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert rec["id"] == "r0" and rec["campaign"] == "t" and rec["list"] == "l1"
    assert rec["state"] == "ready" and rec["attempts"] == 0 and rec["priority"] == 3
    assert rec["data"] == {"name": "Ann", "tags": [1, 2]}
    assert rec["phones"] == [{"number": "+31612340000", "status": "active"}]
    assert rec["history"] == [] and rec["leases"] == []
    lz = await lease_one(client, "ann")
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert rec["state"] == "leased"
    assert [(x["agent"], x["end"]) for x in rec["leases"]] == [("ann", "active")]
    await ok(client, "dispose", lease=lz["token"], code="NA0", fields={"mood": "ok"})
    lz = await lease_one(client, "bob")
    await ok(client, "dispose", lease=lz["token"], code="NI", note="not interested")
    # closed: no longer in memory, read back from the database
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert rec["state"] == "closed" and rec["reason"] == "final" and rec["attempts"] == 2
    assert rec["data"] == {"name": "Ann", "tags": [1, 2]}
    hist = rec["history"]
    assert [(h["agent"], h["code"], h["state"]) for h in hist] == [
        ("ann", "NA0", "ready"), ("bob", "NI", "closed")]
    assert hist[0]["fields"] == {"mood": "ok"} and hist[1]["note"] == "not interested"
    assert [h["attempts"] for h in hist] == [1, 2]
    assert [(x["agent"], x["end"], x["code"]) for x in rec["leases"]] == [
        ("ann", "disposed", "NA0"), ("bob", "disposed", "NI")]
    refused(await client.call("record.get", record="nope"), "not_found", "record")


# ---------------------------------------------------------------------------- import


async def test_import_counts_inserted_updated_and_rejected_rows(client: AsyncClient) -> None:
    good = {"id": "g0", "phones": ["+31612340000"], "timezone": "UTC"}
    rows: list[Any] = [
        good,
        {"id": "bad-phone", "phones": ["+3161"]},
        {"phones": ["+31612340001"]},
        {"id": "extra", "phones": ["+31612340002"], "colour": "red"},
        {"id": "g0", "phones": ["+31612340003"]},
        {"id": "bad-tz", "phones": ["+31612340004"], "timezone": "Mars/Olympus"},
        5,
        {"id": "no-phones", "phones": []},
        {"id": "loud", "phones": ["+31612340005"], "priority": 5000},
        {"id": "second-bad", "phones": ["+31612340006", "call me"]},
        {"id": "derived", "phones": ["+31201234567"]},
    ]
    ans = await ok(client, "records.import", campaign="t", list="l", records=rows)
    assert ans["inserted"] == 2 and ans["updated"] == 0 and ans["committed"] is True
    rej = {r["index"]: r for r in ans["rejected"]}
    assert {i: r["field"] for i, r in rej.items()} == {
        1: "records[1].phones[0]",
        2: "records[2].id",
        3: "records[3].colour",
        4: "records[4].id",
        5: "records[5].timezone",
        6: "records[6]",
        7: "records[7].phones",
        8: "records[8].priority",
        9: "records[9].phones[1]",
    }
    assert all(r["code"] == "bad_request" and r["message"] for r in rej.values())
    assert rej[1]["id"] == "bad-phone" and rej[2]["id"] is None and rej[6]["id"] is None
    assert "duplicate" in rej[4]["message"]
    # without a timezone, the number's zone is used
    rec = (await ok(client, "record.get", record="derived"))["record"]
    assert rec["timezone"] == "Europe/Amsterdam"
    for rid in ("bad-phone", "extra", "loud"):
        refused(await client.call("record.get", record=rid), "not_found", "record")
    # importing an existing id updates it
    again = await ok(client, "records.import", campaign="t", list="l2",
                     records=[{**good, "priority": 7, "data": {"v": 2}}])
    assert (again["inserted"], again["updated"], again["rejected"]) == (0, 1, [])
    rec = (await ok(client, "record.get", record="g0"))["record"]
    assert rec["priority"] == 7 and rec["list"] == "l2" and rec["data"] == {"v": 2}
    assert (await ok(client, "stats", campaign="t"))["campaigns"]["t"]["due"] == 2


async def test_import_request_level_errors(client: AsyncClient) -> None:
    reloaded = await ok(client, "records.import", campaign="t", list="l",
                        records=make_records(1), reload=True)
    assert reloaded["reopened"] == 0 and reloaded["inserted"] == 1
    refused(await client.call("records.import", campaign="t", list="l", records={}),
            "bad_request", "records")
    refused(await client.call("records.import", campaign="t", records=[]),
            "bad_request", "list")
    assert (await ok(client, "ping"))["records"] == 1


async def test_atomic_import_rejects_everything_when_one_row_is_bad(
        client: AsyncClient) -> None:
    rows = make_records(3)
    rows[1]["phones"] = ["+3161"]
    ans = await ok(client, "records.import", campaign="t", list="l", records=rows,
                   atomic=True)
    assert ans["inserted"] == 0 and ans["updated"] == 0 and ans["committed"] is False
    assert [(r["index"], r["field"]) for r in ans["rejected"]] == [(1, "records[1].phones[0]")]
    for rid in ("r0", "r2"):
        refused(await client.call("record.get", record=rid), "not_found", "record")
    assert (await ok(client, "next", agent="a", campaigns=["t"]))["leases"] == []
    # the same rows without atomic: the good ones go in
    ans = await ok(client, "records.import", campaign="t", list="l", records=rows)
    assert ans["inserted"] == 2 and ans["committed"] is True


async def test_staged_import_commits_only_on_final(daemon: Daemon, client: AsyncClient
                                                   ) -> None:
    watcher = await AsyncClient.connect(daemon.settings.daemon.socket)
    try:
        recs = make_records(6)
        ans = await ok(client, "records.import", campaign="t", list="l", records=recs[:3],
                       stage="s1", final=False)
        assert ans["staged"] == 3 and ans["committed"] is False and ans["inserted"] == 0
        ans = await ok(client, "records.import", campaign="t", list="l", records=recs[3:5],
                       stage="s1", final=False)
        assert ans["staged"] == 5 and ans["committed"] is False
        # nothing visible yet, from any connection
        refused(await watcher.call("record.get", record="r0"), "not_found", "record")
        assert (await ok(watcher, "next", agent="x", campaigns=["t"]))["leases"] == []
        assert (await ok(watcher, "ping"))["records"] == 0
        # a stage keeps its campaign and list
        refused(await client.call("records.import", campaign="t", list="other",
                                  records=[], stage="s1", final=False),
                "bad_request", "stage")
        ans = await ok(client, "records.import", campaign="t", list="l", records=recs[5:],
                       stage="s1", final=True)
        assert ans["inserted"] == 6 and ans["committed"] is True and ans["rejected"] == []
        assert (await ok(watcher, "ping"))["records"] == 6
        await ok(watcher, "record.get", record="r0")
    finally:
        await watcher.close()


async def test_staged_import_with_a_bad_row_commits_nothing(client: AsyncClient) -> None:
    recs = make_records(4)
    await ok(client, "records.import", campaign="t", list="l", records=recs[:2],
             stage="s", final=False)
    # r0 again: a duplicate across batches of one stage
    ans = await ok(client, "records.import", campaign="t", list="l",
                   records=[recs[2], recs[0]], stage="s", final=True)
    assert ans["committed"] is False and ans["inserted"] == 0
    assert [(r["index"], r["field"]) for r in ans["rejected"]] == [(1, "records[1].id")]
    assert (await ok(client, "ping"))["records"] == 0


async def test_pipelined_stage_after_a_bad_batch_commits_nothing(client: AsyncClient
                                                                 ) -> None:
    """Regression: a stage voided by a bad row used to restart silently with the next
    (already pipelined) batch, whose final then committed a partial import."""
    recs = make_records(6)
    recs[1]["phones"] = ["+3161"]
    lines = b"".join(json.dumps({"id": i, "op": "records.import", "campaign": "t",
                                 "list": "l", "records": recs[2 * i:2 * i + 2],
                                 "stage": "big", "final": i == 2}).encode() + b"\n"
                     for i in range(3))
    await client.send_raw(lines)
    answers = {a["id"]: a for a in [await client.read() for _ in range(3)]}
    assert answers[0]["rejected"] and answers[0]["committed"] is False
    assert answers[2]["ok"] is False or answers[2]["committed"] is False, answers[2]
    assert (await ok(client, "ping"))["records"] == 0


async def test_staged_import_is_dropped_when_its_connection_closes(
        daemon: Daemon, client: AsyncClient) -> None:
    stager = await AsyncClient.connect(daemon.settings.daemon.socket)
    ans = await ok(stager, "records.import", campaign="t", list="l",
                   records=make_records(3, "lost"), stage="s", final=False)
    assert ans["staged"] == 3
    await stager.close()
    # another connection's stage of the same name is its own; its final commits only it
    ans = await ok(client, "records.import", campaign="t", list="l",
                   records=make_records(1, "kept"), stage="s", final=True)
    assert ans["inserted"] == 1 and ans["committed"] is True
    for i in range(3):
        refused(await client.call("record.get", record=f"lost{i}"), "not_found", "record")
    assert (await ok(client, "ping"))["records"] == 1


async def test_import_needs_the_supervisor_role(agent_only: AsyncClient) -> None:
    c = agent_only
    assert (await ok(c, "ping"))["role"] == "agent"
    refused(await c.call("records.import", campaign="t", list="l", records=make_records(2)),
            "forbidden")
    refused(await c.call("records.import", campaign="t", list="l", records=make_records(2),
                         stage="s", final=False), "forbidden")
    assert (await ok(c, "ping"))["records"] == 0
    # agent operations stay allowed
    await ok(c, "agent.login", agent="ann", campaigns=["t"])
    assert (await ok(c, "next", agent="ann"))["leases"] == []
    await ok(c, "campaigns")
    await ok(c, "stats")


# ---------------------------------------------------------------------------- stats


async def test_stats_counts_records_by_slot(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(5))
    await ok(client, "agent.login", agent="ann", campaigns=["t"])
    a, b, c = (await ok(client, "next", agent="ann", count=3))["leases"]
    await ok(client, "dispose", lease=a["token"], code="NA")
    await ok(client, "dispose", lease=b["token"], code="SALE", revenue=10)
    await ok(client, "dispose", lease=c["token"], code="CB",
             callback={"at": tomorrow_utc(10), "timezone": "UTC"})
    await lease_one(client, "bob")
    st = await ok(client, "stats")
    assert st["leases"] == 1 and st["agents_logged_in"] == 1 and st["records_in_memory"] == 4
    t = st["campaigns"]["t"]
    assert (t["due"], t["dormant"], t["leased"], t["callback_upcoming"],
            t["callback_due"]) == (1, 1, 1, 1, 0)
    assert t["closed"] == {"final": 1} and t["configured"] is True and t["enabled"] is True
    assert t["zones"]["UTC"]["open"] is True
    assert set(st["rebuild"]) >= {"records", "leases", "total_s"}
    only = await ok(client, "stats", campaign="t")
    assert list(only["campaigns"]) == ["t"] and only["campaigns"]["t"] == t


# ---------------------------------------------------------------------------- bad requests

BAD_REQUESTS: list[tuple[dict[str, Any], str, str | None]] = [
    ({"op": "next", "agent": "a", "campaigns": ["t"], "count": "5"}, "bad_request", "count"),
    ({"op": "next", "agent": "a", "campaigns": ["t"], "count": 0}, "bad_request", "count"),
    ({"op": "next", "agent": "a", "campaigns": ["t"], "count": 501}, "bad_request", "count"),
    ({"op": "next", "agent": "a", "campaigns": ["t"], "count": 1.5}, "bad_request", "count"),
    ({"op": "next", "agent": "a", "campaigns": ["t"], "count": True}, "bad_request", "count"),
    ({"op": "next", "agent": "a", "campaigns": ["t"], "wait": -1}, "bad_request", "wait"),
    ({"op": "next", "agent": "a", "campaigns": ["t"], "wait": 301}, "bad_request", "wait"),
    ({"op": "next", "agent": "a", "campaigns": ["t"], "wait": "1"}, "bad_request", "wait"),
    ({"op": "next", "campaigns": ["t"]}, "bad_request", "agent"),
    ({"op": "next", "agent": "a", "campaigns": []}, "bad_request", "campaigns"),
    ({"op": "next", "agent": "a", "campaigns": "t"}, "bad_request", "campaigns"),
    ({"op": "next", "agent": "a", "campaigns": ["t", 5]}, "bad_request", "campaigns[1]"),
    ({"op": "next", "agent": "a", "campaign": ["t"]}, "bad_request", "campaign"),
    ({"op": "ping", "verbose": True}, "bad_request", "verbose"),
    ({"op": "agent.login", "agent": "a"}, "bad_request", "campaigns"),
    ({"op": "agent.login", "agent": "", "campaigns": ["t"]}, "bad_request", "agent"),
    ({"op": "agent.login", "agent": "a\nb", "campaigns": ["t"]}, "bad_request", "agent"),
    ({"op": "agent.login", "agent": "a", "campaigns": ["t"], "teams": "x"}, "bad_request",
     "teams"),
    ({"op": "agent.logout"}, "bad_request", "agent"),
    ({"op": "campaigns", "agent": 7}, "bad_request", "agent"),
    ({"op": "dispose", "code": "NA"}, "bad_request", "lease"),
    ({"op": "dispose", "lease": "1.abc"}, "bad_request", "code"),
    ({"op": "dispose", "lease": "1.abc", "code": "NA", "revenue": "12"}, "bad_request",
     "revenue"),
    ({"op": "dispose", "lease": "1.abc", "code": "CB", "callback": {"at": 5}},
     "bad_request", "callback.at"),
    ({"op": "dispose", "lease": "1.abc", "code": "CB", "callback": {}}, "bad_request",
     "callback.at"),
    ({"op": "dispose", "lease": "1.abc", "code": "CB",
      "callback": {"at": "2030-01-01T10:00:00", "colour": "red"}}, "bad_request",
     "callback.colour"),
    ({"op": "dispose", "lease": "1.abc", "code": "NA", "fields": []}, "bad_request",
     "fields"),
    ({"op": "release"}, "bad_request", "lease"),
    ({"op": "release", "lease": 12}, "bad_request", "lease"),
    ({"op": "extend", "lease": "1.abc", "seconds": 86_401}, "bad_request", "seconds"),
    ({"op": "record.get"}, "bad_request", "record"),
    ({"op": "record.get", "record": ["r0"]}, "bad_request", "record"),
    ({"op": "records.import", "campaign": "t", "list": "l"}, "bad_request", "records"),
    ({"op": "records.import", "campaign": "t", "list": "l", "records": [], "atomic": "yes"},
     "bad_request", "atomic"),
    ({"op": "stats", "campaign": 5}, "bad_request", "campaign"),
    ({"op": "frobnicate"}, "unknown_op", "op"),
    ({"op": "Ping"}, "unknown_op", "op"),
    ({"op": 5}, "bad_request", "op"),
    ({"op": None}, "bad_request", "op"),
    ({}, "bad_request", "op"),
    ({"id": True, "op": "ping"}, "bad_request", "id"),
    ({"id": {"a": 1}, "op": "ping"}, "bad_request", "id"),
]


@pytest.mark.parametrize(("req", "code", "field"), BAD_REQUESTS,
                         ids=[f"{i}-{r.get('op')}-{f}" for i, (r, _, f) in
                              enumerate(BAD_REQUESTS)])
async def test_bad_requests_name_their_field(client: AsyncClient, req: dict[str, Any],
                                             code: str, field: str | None) -> None:
    body = {"id": "q1", **req}
    await client.send_raw(json.dumps(body).encode() + b"\n")
    ans = await client.read()
    refused(ans, code, field)
    assert ans["id"] == body["id"]
    # the connection survives
    assert (await ok(client, "ping"))["version"] == nextcall.__version__


async def test_bad_json_keeps_the_connection(client: AsyncClient) -> None:
    await client.send_raw(b'{"id": 1, "op": "ping"\n')
    ans = await client.read()
    refused(ans, "bad_json")
    assert ans["id"] is None
    await ok(client, "ping")
