"""Framing and robustness over the real Unix socket: pipelining, oversize lines, garbage,
clients that vanish mid-request, and many connections racing for the same records.

Every read is bounded (``AsyncClient.read`` has a timeout); nothing asserts how fast
anything happens, only what is answered and what state the daemon is left in.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from nextcall.app import Daemon
from tests.conftest import AsyncClient, make_records

LIMIT = 65_536  # SPEC §5: at most 64 KiB a line


async def ok(c: AsyncClient, op: str, **fields: Any) -> dict[str, Any]:
    ans = await c.call(op, **fields)
    assert ans["ok"] is True, ans
    return ans


async def connect(daemon: Daemon) -> AsyncClient:
    return await AsyncClient.connect(daemon.settings.daemon.socket)


async def read_n(c: AsyncClient, n: int, timeout: float = 15) -> dict[Any, dict[str, Any]]:
    """``n`` answers keyed by id (answers to pipelined requests may come in any order)."""
    out: dict[Any, dict[str, Any]] = {}
    for _ in range(n):
        ans = await c.read(timeout)
        assert ans["id"] not in out, f"two answers for id {ans['id']!r}"
        out[ans["id"]] = ans
    return out


async def assert_closed(c: AsyncClient) -> None:
    """The daemon closed this connection (EOF, or a reset when it left input unread)."""
    try:
        line = await asyncio.wait_for(c.reader.readline(), 10)
    except TimeoutError:  # a subclass of OSError: catch it first
        pytest.fail("the connection is still open")
    except (ConnectionError, OSError):
        return
    assert line == b"", f"expected the connection to be closed, got {line!r}"


def padded_ping(total: int, rid: Any = "big") -> bytes:
    """A valid ping request line of exactly ``total`` bytes, newline included."""
    head = json.dumps({"id": rid, "op": "ping"}).encode()[:-1]
    line = head + b" " * (total - len(head) - 2) + b"}\n"
    assert len(line) == total
    return line


def lease_ids(answers: list[dict[str, Any]]) -> list[str]:
    return [lz["record"]["id"] for a in answers for lz in a["leases"]]


# ---------------------------------------------------------------------------- pipelining


async def test_pipelined_requests_are_all_answered_with_their_ids(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(10))
    reqs: list[dict[str, Any]] = []
    for i in range(100):
        kind = i % 5
        if kind == 0:
            reqs.append({"id": i, "op": "ping"})
        elif kind == 1:
            reqs.append({"id": f"s{i}", "op": "stats", "campaign": "t"})
        elif kind == 2:
            reqs.append({"id": i, "op": "next", "agent": f"p{i}", "campaigns": ["t"]})
        elif kind == 3:
            reqs.append({"id": i, "op": "record.get", "record": f"r{i % 10}"})
        else:
            reqs.append({"id": i + 0.5, "op": "nope"})
    await client.send_raw(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
    answers = await read_n(client, len(reqs))
    assert set(answers) == {r["id"] for r in reqs}
    for r in reqs:
        ans = answers[r["id"]]
        if r["op"] == "nope":
            assert ans["ok"] is False and ans["error"]["code"] == "unknown_op", ans
            continue
        assert ans["ok"] is True, ans
        if r["op"] == "ping":
            assert "version" in ans
        elif r["op"] == "stats":
            assert "t" in ans["campaigns"]
        elif r["op"] == "record.get":
            assert ans["record"]["id"] == r["record"]
        else:
            assert all(lz["agent"] == r["agent"] for lz in ans["leases"])
    # 20 nexts on 10 records: each record handed out exactly once
    handed = lease_ids([answers[r["id"]] for r in reqs if r["op"] == "next"])
    assert sorted(handed) == sorted(f"r{i}" for i in range(10))


async def test_pipelined_dispositions_take_effect_in_order(client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    tok = (await ok(client, "next", agent="a", campaigns=["t"]))["leases"][0]["token"]
    lines = [{"id": "d1", "op": "dispose", "lease": tok, "code": "NA"},
             {"id": "d2", "op": "dispose", "lease": tok, "code": "NA"},
             {"id": "d3", "op": "dispose", "lease": tok, "code": "SALE", "revenue": 5},
             {"id": "d4", "op": "release", "lease": tok}]
    await client.send_raw(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    ans = await read_n(client, 4)
    assert ans["d1"]["ok"] and "duplicate" not in ans["d1"] and ans["d1"]["state"] == "ready"
    assert ans["d2"]["ok"] and ans["d2"]["duplicate"] is True
    assert ans["d2"]["attempts"] == ans["d1"]["attempts"] == 1
    for rid in ("d3", "d4"):
        assert ans[rid]["ok"] is False and ans[rid]["error"]["code"] == "lease_ended"
    rec = (await ok(client, "record.get", record="r0"))["record"]
    assert [h["code"] for h in rec["history"]] == ["NA"]


async def test_a_ping_behind_a_long_poll_is_answered_first(client: AsyncClient) -> None:
    lines = [{"id": "poll", "op": "next", "agent": "a", "campaigns": ["t"], "wait": 60},
             {"id": "ping", "op": "ping"}]
    await client.send_raw(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    first = await client.read()
    assert first["id"] == "ping" and first["ok"] is True
    # the same connection can still feed the long-poll what it is waiting for
    await client.send_raw(json.dumps({"id": "imp", "op": "records.import", "campaign": "t",
                                      "list": "l", "records": make_records(1)}).encode()
                          + b"\n")
    rest = await read_n(client, 2, timeout=20)
    assert rest["imp"]["ok"] and rest["imp"]["inserted"] == 1
    assert rest["poll"]["ok"] and lease_ids([rest["poll"]]) == ["r0"]


# ---------------------------------------------------------------------------- line limit


async def test_a_line_of_exactly_64_kib_is_served(client: AsyncClient) -> None:
    await client.send_raw(padded_ping(LIMIT))
    ans = await client.read()
    assert ans["id"] == "big" and ans["ok"] is True
    await ok(client, "ping")


@pytest.mark.parametrize("newline", [True, False])
async def test_an_oversize_line_closes_only_its_connection(daemon: Daemon, newline: bool
                                                           ) -> None:
    bystander = await connect(daemon)
    await ok(bystander, "agent.login", agent="bee", campaigns=["t"])
    big = await connect(daemon)
    try:
        # small enough to leave the client's hands in one write (no EPIPE race)
        blob = padded_ping(80_000)
        # no drain: the daemon stops reading this connection once the line is too long
        big.writer.write(blob if newline else blob[:-1])
        ans = await big.read()
        assert ans["ok"] is False and ans["error"]["code"] == "too_large", ans
        assert ans["id"] is None
        await assert_closed(big)
    finally:
        big.writer.transport.abort()
    # the daemon serves the connection it already had and new ones
    assert (await ok(bystander, "ping"))["version"]
    assert (await ok(bystander, "stats"))["agents_logged_in"] == 1
    fresh = await connect(daemon)
    try:
        await ok(fresh, "ping")
    finally:
        await fresh.close()
        await bystander.close()


async def test_a_line_just_over_64_kib_is_too_large(client: AsyncClient) -> None:
    """Regression: asyncio's limit counts the bytes before the newline; the daemon used
    to serve lines of up to 65 538 bytes."""
    await client.send_raw(padded_ping(LIMIT + 2))
    ans = await client.read()
    assert ans["ok"] is False and ans["error"]["code"] == "too_large", ans


# ---------------------------------------------------------------------------- garbage

GARBAGE: list[tuple[str, bytes, str]] = [
    ("invalid-utf8", b"\xff\xfe\xfd\n", "bad_json"),
    ("utf8-in-json", b'{"id": 1, "op": "ping", "x": "\xc3\x28"}\n', "bad_json"),
    ("binary", bytes(range(0, 10)) + bytes(range(11, 256)) + b"\n", "bad_json"),
    ("nul", b"\x00\n", "bad_json"),
    ("truncated-json", b'{"id": 1, "op": \n', "bad_json"),
    ("lone-surrogate", b'{"op": "ping", "id": "\\ud800"}\n', "bad_json"),
    ("deep-nesting", b"[" * 5000 + b"]" * 5000 + b"\n", "bad_json"),
    ("json-array", b'[{"op": "ping"}]\n', "bad_request"),
    ("json-number", b"42\n", "bad_request"),
    ("json-string", b'"ping"\n', "bad_request"),
    ("json-null", b"null\n", "bad_request"),
    ("empty-object", b"{}\n", "bad_request"),
]


@pytest.mark.parametrize(("garbage", "code"), [(g, c) for _, g, c in GARBAGE],
                         ids=[n for n, _, _ in GARBAGE])
async def test_garbage_gets_an_error_and_the_connection_stays(client: AsyncClient,
                                                              garbage: bytes, code: str
                                                              ) -> None:
    await client.send_raw(garbage)
    ans = await client.read()
    assert ans["ok"] is False and ans["error"]["code"] == code, ans
    assert ans["id"] is None
    assert (await ok(client, "ping"))["ok"]


async def test_blank_lines_are_ignored(client: AsyncClient) -> None:
    await client.send_raw(b"\n\r\n   \n" + json.dumps({"id": 9, "op": "ping"}).encode()
                          + b"\n")
    ans = await client.read()
    assert ans["id"] == 9 and ans["ok"] is True


async def test_garbage_between_pipelined_requests(client: AsyncClient) -> None:
    await client.send_raw(b'{"id":1,"op":"ping"}\n\xff\xff\n{"id":2,"op":"ping"}\n[]\n'
                          b'{"id":3,"op":"ping"}\n')
    answers = [await client.read() for _ in range(5)]
    good = sorted(a["id"] for a in answers if a["ok"])
    bad = sorted(a["error"]["code"] for a in answers if not a["ok"])
    assert good == [1, 2, 3] and bad == ["bad_json", "bad_request"]


# ---------------------------------------------------------------------------- vanishing clients


async def test_half_a_request_then_close_leaves_everything_available(
        daemon: Daemon, client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(5))
    for part in (b'{"id":1,"op":"next","agent":"ghost","campaigns":["t"],"count":5',
                 b'{"id":1,"op":"ne', b"\xff\xfe"):
        gone = await connect(daemon)
        await gone.send_raw(part)
        await gone.close()
    await asyncio.sleep(0.2)  # let the daemon see the EOFs (no assertion depends on speed)
    assert (await ok(client, "ping"))["records"] == 5
    got = (await ok(client, "next", agent="b", campaigns=["t"], count=5))["leases"]
    assert sorted(lease_ids([{"leases": got}])) == [f"r{i}" for i in range(5)]


async def test_a_request_cut_before_its_newline_is_not_executed(
        daemon: Daemon, client: AsyncClient) -> None:
    """Regression: an unterminated last line used to be executed at EOF, leasing records
    to a client that was gone."""
    await ok(client, "records.import", campaign="t", list="l", records=make_records(5))
    gone = await connect(daemon)
    await gone.send_raw(b'{"id":1,"op":"next","agent":"ghost","campaigns":["t"],"count":5}')
    await gone.close()
    await asyncio.sleep(0.2)  # let the daemon see the EOF
    got = (await ok(client, "next", agent="b", campaigns=["t"], count=5))["leases"]
    assert len(got) == 5
    assert (await ok(client, "stats"))["leases"] == 5


async def test_a_long_poll_abandoned_by_its_client_takes_no_record(
        daemon: Daemon, client: AsyncClient) -> None:
    """Regression: a long-polling next used to outlive its connection and lease the next
    available record to nobody."""
    gone = await connect(daemon)
    await gone.send_raw(b'{"id":"poll","op":"next","agent":"ghost","campaigns":["t"],'
                        b'"wait":60}\n{"id":"ping","op":"ping"}\n')
    assert (await gone.read())["id"] == "ping"  # the long-poll is waiting
    await gone.close()
    await asyncio.sleep(0.2)  # let the daemon see the EOF
    await ok(client, "records.import", campaign="t", list="l", records=make_records(1))
    got = (await ok(client, "next", agent="b", campaigns=["t"]))["leases"]
    assert lease_ids([{"leases": got}]) == ["r0"]


async def test_the_daemon_serves_on_after_clients_vanish(daemon: Daemon,
                                                         client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(3))
    # an abandoned long-poll on a campaign with nothing to hand out, abrupt resets,
    # a client that sent a request and left before the answer
    poller = await connect(daemon)
    await poller.send_raw(b'{"id":1,"op":"next","agent":"p","campaigns":["t"],"count":3}\n')
    assert len((await poller.read())["leases"]) == 3
    await poller.send_raw(b'{"id":2,"op":"next","agent":"p","campaigns":["t"],"wait":60}\n')
    await poller.close()
    for _ in range(5):
        rude = await connect(daemon)
        await rude.send_raw(b'{"id":1,"op":"stats"}\n{"id":2,"op":"pi')
        rude.writer.transport.abort()
    for _ in range(20):
        c = await connect(daemon)
        await c.close()
    fresh = await connect(daemon)
    try:
        assert (await ok(fresh, "ping"))["records"] == 3
        st = await ok(fresh, "stats", campaign="t")
        assert st["leases"] == 3 and st["campaigns"]["t"]["leased"] == 3
    finally:
        await fresh.close()


# ---------------------------------------------------------------------------- no double lease


async def test_concurrent_connections_never_share_a_record(daemon: Daemon,
                                                           client: AsyncClient) -> None:
    await ok(client, "records.import", campaign="t", list="l", records=make_records(30))
    conns = [await connect(daemon) for _ in range(10)]
    try:
        answers = await asyncio.gather(*(
            ok(c, "next", agent=f"a{i}", campaigns=["t"], count=5)
            for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    ids = lease_ids(answers)
    tokens = [lz["token"] for a in answers for lz in a["leases"]]
    assert len(ids) == 30 and len(set(ids)) == 30, sorted(ids)
    assert len(set(tokens)) == 30
    assert (await ok(client, "stats"))["leases"] == 30
    assert (await ok(client, "next", agent="late", campaigns=["t"]))["leases"] == []


async def test_concurrent_long_polls_each_get_a_different_record(daemon: Daemon,
                                                                 client: AsyncClient) -> None:
    conns = [await connect(daemon) for _ in range(10)]
    try:
        for i, c in enumerate(conns):
            await c.send_raw(json.dumps({"id": "poll", "op": "next", "agent": f"w{i}",
                                         "campaigns": ["t"], "wait": 60}).encode()
                             + b'\n{"id":"ping","op":"ping"}\n')
            assert (await c.read())["id"] == "ping"
        await ok(client, "records.import", campaign="t", list="l", records=make_records(6))
        await ok(client, "records.import", campaign="t", list="l",
                 records=make_records(4, "s"))
        answers = await asyncio.gather(*(c.read(timeout=20) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert all(a["id"] == "poll" and a["ok"] and len(a["leases"]) == 1 for a in answers)
    ids = lease_ids(answers)
    assert sorted(ids) == sorted([f"r{i}" for i in range(6)] + [f"s{i}" for i in range(4)])
