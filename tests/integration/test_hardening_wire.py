"""Hostile input on the wire, and lease expiry as every op sees it.

Each defect here was found by treating the daemon as a target: an expired lease that some
ops still saw as live, bad input answered ``internal`` (or not at all), ids echoed
inexactly, and a disposition that could not be recorded. Every request goes over the
real Unix socket to an in-process daemon; the service's clock is a ``Clock`` the test
moves (``Service.clock``), except where the expiry timer itself is under test.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nextcall.app import Daemon
from nextcall.config import load
from tests.conftest import AsyncClient, write_config

#: a Monday noon, far from now (the reminder scheduler runs on the real clock)
T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC).timestamp()
ALL_DAY = "\n".join(f'{d} = ["00:00-24:00"]'
                    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
CAMPAIGN = textwrap.dedent("""
    [resultsets.wire]
    [[resultsets.wire.codes]]
    code = "NA"
    action = "retry"
    delay_s = 0
    [[resultsets.wire.codes]]
    code = "CB"
    action = "callback"
    scope = "anyone"
    [[resultsets.wire.codes]]
    code = "APPT"
    action = "hold"
    [[resultsets.wire.codes]]
    code = "DNC"
    action = "dnc"
    [[resultsets.wire.codes]]
    code = "GONE"
    action = "remove_number"

    [campaigns.t]
    resultset = "wire"
    max_attempts = 10
    legal_window = "00:00-24:00"
    timezone = "UTC"
    [campaigns.t.window]
""") + ALL_DAY
#: the campaign's (and the daemon's) lease length in tests/conftest.py
LEASE_S = 60


@dataclass
class Clock:
    """The service's clock, moved by the test."""

    t: float = T0

    def __call__(self) -> float:
        return self.t


@dataclass
class World:
    daemon: Daemon
    client: AsyncClient
    clock: Clock


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock()
    d = Daemon(load(write_config(tmp_path, campaigns=CAMPAIGN)))
    d.service.clock = clock
    await d.start()
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        yield World(d, c, clock)
    finally:
        await c.close()
        await d.stop()


async def ok(c: AsyncClient, op: str, **fields: Any) -> dict[str, Any]:
    ans = await c.call(op, **fields)
    assert ans["ok"] is True, ans
    return ans


def refused(ans: dict[str, Any], code: str, field: str | None) -> dict[str, Any]:
    assert ans["ok"] is False, ans
    err = ans["error"]
    assert (err["code"], err.get("field")) == (code, field), ans
    return err


def rec(i: int, *phones: str) -> dict[str, Any]:
    return {"id": f"r{i}", "phones": list(phones) or [f"+3161234{i:04d}"],
            "timezone": "UTC"}


async def lease_of(c: AsyncClient, record: str) -> dict[str, Any]:
    """Lease until ``record`` comes up (releasing the others)."""
    others = []
    try:
        for _ in range(20):
            lz = (await ok(c, "next", agent="a", campaigns=["t"]))["leases"][0]
            if lz["record"]["id"] == record:
                return lz
            others.append(lz)
        raise AssertionError(f"{record} was never handed out")
    finally:
        for o in others:
            await ok(c, "release", lease=o["token"])


async def raw(c: AsyncClient, line: bytes) -> tuple[bytes, dict[str, Any]]:
    """Send one raw line; the raw answer line and its parse."""
    await c.send_raw(line)
    text = await asyncio.wait_for(c.reader.readline(), 10)
    assert text, "connection closed"
    return text, json.loads(text)


# ------------------------------------------------------------- 1. expiry as of now

async def test_record_get_shows_a_lease_past_its_instant_as_expired(world: World) -> None:
    c = world.client
    await ok(c, "records.import", campaign="t", list="l", records=[rec(1)])
    lz = await lease_of(c, "r1")
    assert (await ok(c, "record.get", record="r1"))["record"]["state"] == "leased"
    world.clock.t = T0 + LEASE_S + 1  # nothing else runs: record.get alone must see it
    got = (await ok(c, "record.get", record="r1"))["record"]
    assert got["state"] == "ready"
    assert [x["end"] for x in got["leases"]] == ["expired"]
    refused(await c.call("dispose", lease=lz["token"], code="NA"), "lease_expired", "lease")


async def test_reopen_sees_a_lease_past_its_instant_as_ended(world: World) -> None:
    c = world.client
    await ok(c, "records.import", campaign="t", list="l", records=[rec(1)])
    await lease_of(c, "r1")
    refused(await c.call("record.reopen", record="r1"), "conflict", "record")
    world.clock.t = T0 + LEASE_S + 1
    assert (await ok(c, "record.reopen", record="r1"))["record"]["state"] == "ready"


async def test_schedule_sees_a_lease_past_its_instant_as_ended(world: World) -> None:
    c = world.client
    await ok(c, "records.import", campaign="t", list="l", records=[rec(1)])
    await lease_of(c, "r1")
    world.clock.t = T0 + LEASE_S + 1
    ans = await ok(c, "callback.schedule", record="r1", at="2030-01-08T12:00:00")
    assert ans["record"]["state"] == "callback"


async def test_reimport_sees_a_lease_past_its_instant_as_ended(world: World) -> None:
    c = world.client
    await ok(c, "records.import", campaign="t", list="l", records=[rec(1)])
    await lease_of(c, "r1")
    ans = await ok(c, "records.import", campaign="t", list="l", records=[rec(1)])
    assert [r["code"] for r in ans["rejected"]] == ["conflict"]
    world.clock.t = T0 + LEASE_S + 1
    ans = await ok(c, "records.import", campaign="t", list="l", records=[rec(1)])
    assert (ans["updated"], ans["rejected"]) == (1, [])


async def test_a_shortened_lease_ends_at_its_instant_without_a_request(
        daemon: Daemon, client: AsyncClient) -> None:
    """The expiry timer follows ``extend``: a lease shortened to 5 s ends then, though
    no request comes to look (the leases gauge reads the engine between requests)."""
    await ok(client, "records.import", campaign="t", list="l", records=[rec(1)])
    lz = (await ok(client, "next", agent="a", campaigns=["t"]))["leases"][0]
    await ok(client, "extend", lease=lz["token"], seconds=5)
    leases = daemon.service.engine.leases
    assert len(leases) == 1
    for _ in range(400):  # a bound against hanging only; the lease length is 60 s
        if not leases:
            break
        await asyncio.sleep(0.05)
    assert not leases


# ------------------------------------------------------------- 2. typed errors

@pytest.mark.parametrize("token", [
    "\u00b2.abc",                          # superscript two: isdigit, but not int()
    "\u0661\u0662.abc",                    # Arabic-Indic digits
    "9223372036854775808.abc",             # 2^63: no 64-bit lease number
    "99999999999999999999999999.abc",
])
@pytest.mark.parametrize("op", ["dispose", "release", "extend"])
async def test_malformed_lease_numbers_are_bad_requests(world: World, op: str,
                                                        token: str) -> None:
    extra = {"code": "NA"} if op == "dispose" else {}
    refused(await world.client.call(op, lease=token, **extra), "bad_request", "lease")


async def test_the_largest_lease_number_is_looked_up(world: World) -> None:
    ans = await world.client.call("dispose", lease="9223372036854775807.abc", code="NA")
    refused(ans, "not_found", "lease")


CALENDAR_ENDS = [("9999-12-31T23:59:59", "Pacific/Honolulu"),
                 ("0001-01-01T00:00:00", "Asia/Tokyo"),
                 ("9999-12-31T23:59:59", "UTC"),
                 ("9999-12-31T23:59:59-10:00", None)]


@pytest.mark.parametrize("at, tz", CALENDAR_ENDS)
async def test_dates_at_the_ends_of_the_calendar_are_bad_requests(
        world: World, at: str, tz: str | None) -> None:
    c = world.client
    zone = {"timezone": tz} if tz else {}
    await ok(c, "records.import", campaign="t", list="l", records=[rec(1), rec(2)])
    refused(await c.call("callback.schedule", record="r1", at=at, **zone),
            "bad_request", "at")
    refused(await c.call("record.reopen", record="r1", at=at, **zone), "bad_request", "at")
    refused(await c.call("record.reopen", record="r1", callback={"at": at, **zone}),
            "bad_request", "callback.at")
    lz = await lease_of(c, "r2")
    refused(await c.call("dispose", lease=lz["token"], code="CB",
                         callback={"at": at, **zone}), "bad_request", "callback.at")
    refused(await c.call("dispose", lease=lz["token"], code="APPT",
                         appointment={"at": at, **zone}), "bad_request", "appointment.at")
    # nothing changed; the lease is still good
    await ok(c, "dispose", lease=lz["token"], code="NA")


async def test_callbacks_query_bounds_may_be_any_representable_time(world: World) -> None:
    ans = await ok(world.client, "callbacks", **{"from": "0001-01-01T00:00:00",
                                                 "to": "9999-12-31T23:59:59"})
    assert ans["count"] == 0


def nested(levels: int) -> Any:
    value: Any = {}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


async def test_a_row_with_data_too_deep_is_rejected_alone(world: World) -> None:
    rows = [rec(1), {**rec(2), "data": nested(300)}, {**rec(3), "data": nested(128)}]
    ans = await ok(world.client, "records.import", campaign="t", list="l", records=rows)
    assert (ans["inserted"], ans["committed"]) == (2, True)
    [bad] = ans["rejected"]
    assert (bad["index"], bad["id"], bad["code"], bad["field"]) == \
        (1, "r2", "bad_request", "records[1].data")
    ans = await ok(world.client, "records.import", campaign="t", list="l", atomic=True,
                   records=[rec(4), {**rec(5), "data": nested(129)}])
    assert (ans["committed"], [r["index"] for r in ans["rejected"]]) == (False, [1])


# ------------------------------------------------------------- 3. one answer per line

def deep_list(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


async def test_a_deeply_nested_id_still_gets_its_answer(world: World) -> None:
    c = world.client
    _, ans = await raw(c, b'{"id":' + deep_list(255) + b',"op":"ping"}\n')
    assert ans["id"] is None
    refused(ans, "bad_request", "id")
    # a shallow refused id is echoed as sent
    _, ans = await raw(c, b'{"id":[[1]],"op":"ping"}\n')
    assert ans["id"] == [[1]]
    refused(ans, "bad_request", "id")
    assert (await ok(c, "ping"))["role"] == "admin"


@pytest.mark.parametrize("levels, code, field", [
    (511, "bad_request", "x"),        # the request object makes 512: within the limit,
    (512, "bad_request", "x"),        # ping has no field x; one more is too deep
    (1100, "bad_json", None),         # beyond what the parser reads at all
])
async def test_request_nesting_is_bounded(world: World, levels: int, code: str,
                                          field: str | None) -> None:
    c = world.client
    text, ans = await raw(c, b'{"id":7,"op":"ping","x":' + deep_list(levels) + b"}\n")
    err = refused(ans, code, field)
    if levels == 512:
        assert "512" in err["message"] and ans["id"] == 7
    elif levels == 511:
        assert err["message"] == "x: unknown field"
    assert (await ok(c, "ping"))["ok"]


async def test_a_deep_import_row_is_refused_as_a_whole_only_past_the_request_limit(
        world: World) -> None:
    line = json.dumps({"id": 1, "op": "records.import", "campaign": "t", "list": "l",
                       "records": [{**rec(1), "data": nested(600)}]}).encode() + b"\n"
    _, ans = await raw(world.client, line)
    refused(ans, "bad_request", "records")


# ------------------------------------------------------------- 4. numbers under a lease

async def test_a_leased_records_numbers_do_not_change_and_its_call_is_recorded(
        world: World) -> None:
    """Import X with [A, B]; the second lease dials B; a re-import with [A] (plain,
    atomic or staged) is a conflict row; the disposition is recorded against B; once the
    lease has ended the same re-import applies."""
    c = world.client
    a, b = "+31612340001", "+31612340002"
    x = {"id": "X", "phones": [a, b], "timezone": "UTC"}
    await ok(c, "records.import", campaign="t", list="l", records=[x])
    first = await lease_of(c, "X")
    assert first["phone"] == a
    await ok(c, "dispose", lease=first["token"], code="NA")
    second = await lease_of(c, "X")
    assert second["phone"] == b
    only_a = [{**x, "phones": [a]}]
    for extra in ({}, {"atomic": True}):
        ans = await ok(c, "records.import", campaign="t", list="l", records=only_a, **extra)
        assert (ans["updated"], [(r["code"], r["field"]) for r in ans["rejected"]]) == \
            (0, [("conflict", "records[0].id")])
    await ok(c, "records.import", campaign="t", list="l", records=only_a, stage="s",
             final=False)
    ans = await ok(c, "records.import", campaign="t", list="l", records=[], stage="s")
    assert (ans["committed"], [r["code"] for r in ans["rejected"]]) == (False, ["conflict"])
    done = await ok(c, "dispose", lease=second["token"], code="GONE")
    assert done["phones"] == [{"number": a, "status": "active"},
                              {"number": b, "status": "removed"}]
    got = (await ok(c, "record.get", record="X"))["record"]
    assert [h["phone"] for h in got["history"]] == [a, b]
    ans = await ok(c, "records.import", campaign="t", list="l", records=only_a)
    assert (ans["updated"], ans["rejected"]) == (1, [])
    got = (await ok(c, "record.get", record="X"))["record"]
    assert got["phones"] == [{"number": a, "status": "active"}]


# ------------------------------------------------------------- 5. ids echoed exactly

@pytest.mark.parametrize("text", [
    b'"a-1"', b"null", b"0", b"-42", b"2.5", b"2.50", b"1e3", b"-1.5E-7",
    b"9223372036854775807", b"-9223372036854775808", b"18446744073709551615",
    b"100000000000000000000", b"-9223372036854775809", b"123456789012345678901234567890.5",
])
async def test_ids_are_echoed_exactly_as_sent(world: World, text: bytes) -> None:
    c = world.client
    line, ans = await raw(c, b'{"id":' + text + b',"op":"ping"}\n')
    assert line.startswith(b'{"id":' + text + b',"ok":true'), line
    # errors and answers built from stored bytes (a retried dispose) echo it too
    line, _ = await raw(c, b'{"id":' + text + b',"op":"nope"}\n')
    assert line.startswith(b'{"id":' + text + b',"ok":false'), line
    await ok(c, "records.import", campaign="t", list="l", records=[rec(1)])
    lz = await lease_of(c, "r1")
    body = json.dumps({"op": "dispose", "lease": lz["token"], "code": "NA"})[1:]
    for _ in range(2):  # the original answer, then the stored one
        line, ans = await raw(c, b'{"id":' + text + b"," + body.encode() + b"\n")
        assert line.startswith(b'{"id":' + text + b',"ok":true'), line


@pytest.mark.parametrize("text, echo", [(b"true", True), (b"[1]", [1]), (b'{"a":1}', {"a": 1})])
async def test_other_ids_are_refused_and_echoed(world: World, text: bytes,
                                               echo: object) -> None:
    _, ans = await raw(world.client, b'{"id":' + text + b',"op":"ping"}\n')
    assert ans["id"] == echo
    refused(ans, "bad_request", "id")
