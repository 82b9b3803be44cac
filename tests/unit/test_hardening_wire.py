"""Hostile input at the codec and the core's edges, without a socket: request nesting and
ids (``protocol``), the answer of last resort (``server.Reply``), lease tokens and dates
at the ends of the calendar. tests/integration/test_hardening_wire.py sends the same over
the real socket."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nextcall import protocol as P
from nextcall.core import calendar
from nextcall.core.engine.tokens import MAX_LID, parse_token
from nextcall.core.errors import BadRequest, NextcallError
from nextcall.core.model import WEEKDAYS, Campaign, Interval
from nextcall.ops import MODELS
from nextcall.server import Reply


def _err(line: bytes) -> NextcallError:
    with pytest.raises(NextcallError) as exc:
        P.decode(line, MODELS)
    return exc.value


def brackets(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("value, expected", [
    (1, 0), ("x", 0), ({}, 1), ([], 1), ([1, [2, {"a": []}]], 4), ({"a": {"b": [1]}}, 3),
    (deep(100), 100),
])
def test_depth_counts_levels_of_arrays_and_objects(value: Any, expected: int) -> None:
    assert P.depth(value, 1000) == expected


def test_depth_stops_counting_past_its_limit() -> None:
    assert P.depth(deep(5000), 10) == 11


@pytest.mark.parametrize("text", [
    b'"x"', b"null", b"-9223372036854775808", b"18446744073709551615", b"2.5", b"2.50",
    b"1e3", b"100000000000000000000", b"-1E+400000000000000000000",
])
def test_ids_are_echoed_as_sent(text: bytes) -> None:
    line = b'{"id":' + text + b',"op":"ping"}'
    if text.startswith(b"-1E+4"):  # a number no float holds is not JSON the parser reads
        assert _err(line).code == "bad_json"
        return
    req_id, op, _ = P.decode(line, MODELS)
    assert op == "ping"
    assert P.encode_ok(req_id, {}).startswith(b'{"id":' + text + b",")
    assert P.encode_ok_raw(req_id, b"{}").startswith(b'{"id":' + text + b",")
    assert P.encode_error(req_id, BadRequest("x")).startswith(b'{"id":' + text + b",")
    assert P.encode_internal(req_id).startswith(b'{"id":' + text + b",")


def test_the_id_echoed_is_the_top_level_one() -> None:
    line = (b'{"op":"records.import","campaign":"t","list":"l","records":[{"id":2.5}],'
            b'"id":1.50}')
    req_id, _, _ = P.decode(line, MODELS)
    assert P.encode_ok(req_id, {}).startswith(b'{"id":1.50,')


@pytest.mark.parametrize("text, echo", [
    (b"true", True), (b'{"a":[1]}', {"a": [1]}),
    (brackets(32), deep(32)), (brackets(33), None), (brackets(300), None),
])
def test_other_ids_are_refused_and_echoed_only_when_safe(text: bytes, echo: object) -> None:
    err = _err(b'{"id":' + text + b',"op":"ping"}')
    assert (err.code, err.field) == ("bad_request", "id")
    assert getattr(err, "req_id", "unset") == echo
    # whatever is echoed encodes
    P.encode_error(getattr(err, "req_id", None), err)


@pytest.mark.parametrize("levels, field", [(511, None), (512, "x")])
def test_requests_nest_at_most_512_levels(levels: int, field: str | None) -> None:
    line = b'{"id":1,"op":"ping","x":' + brackets(levels) + b"}"
    err = _err(line)
    if field is None:
        assert err.message == "x: unknown field"  # deep enough, but ping takes no x
    else:
        assert (err.code, err.field, getattr(err, "req_id", None)) == ("bad_request", "x", 1)
        assert "512" in err.message


def test_what_the_parser_will_not_read_is_bad_json() -> None:
    err = _err(b'{"id":1,"op":"ping","x":' + brackets(1100) + b"}")
    assert (err.code, err.field, getattr(err, "req_id", None)) == ("bad_json", None, None)


class _Server:
    metrics = None


class _Conn:
    server = _Server()

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def done_one(self, data: bytes) -> None:
        self.lines.append(data)


@pytest.mark.parametrize("req_id, echoed", [
    (7, 7), ("a", "a"), (deep(300), None), (1 << 70, None), (1.5, None), ("\ud800", None),
    (orjson.Fragment(b"1e3"), 1000.0),
])
def test_an_unencodable_answer_still_gets_one_line(req_id: Any, echoed: object) -> None:
    conn = _Conn()
    reply = Reply(conn, req_id, "ping", 0.0)  # type: ignore[arg-type]
    reply({"bad": object()})
    reply({"late": True})  # answered once only
    (line,) = conn.lines
    assert line.endswith(b"\n")
    assert orjson.loads(line) == {"id": echoed, "ok": False, "error": {
        "code": "internal", "message": "internal error; see the daemon log"}}


def test_an_error_whose_id_cannot_be_encoded_still_gets_one_line() -> None:
    conn = _Conn()
    Reply(conn, deep(300), "?", 0.0)(BadRequest("x", field="id"))  # type: ignore[arg-type]
    (line,) = conn.lines
    assert orjson.loads(line)["id"] is None


@pytest.mark.parametrize("token", ["\u00b2.abc", "\u0661.abc", "+1.abc", "1 .abc", ".abc",
                                   "1.", f"{MAX_LID + 1}.abc", "9" * 30 + ".abc"])
def test_malformed_tokens_are_bad_requests_naming_lease(token: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_token(token)
    assert exc.value.field == "lease"


def test_tokens_split_into_number_and_secret() -> None:
    assert parse_token("0012.a.b") == (12, "a.b")
    assert parse_token(f"{MAX_LID}.s") == (MAX_LID, "s")


@pytest.mark.parametrize("text, tz", [
    ("9999-12-31T23:59:59", "Pacific/Honolulu"), ("0001-01-01T00:00:00", "Asia/Tokyo"),
    ("9999-12-31T23:59:59", "UTC"), ("0001-01-01T00:00:00", "UTC"),
    ("9998-01-01T00:00:01", "UTC"), ("0001-01-01T23:59:59", "UTC"),
    ("9999-12-31T23:59:59-10:00", "UTC"), ("0001-01-01T00:00:00+14:00", "UTC"),
])
def test_dates_outside_the_range_are_bad_requests(text: str, tz: str) -> None:
    with pytest.raises(BadRequest) as exc:
        calendar.resolve_local(text, tz, field="callback.at")
    assert exc.value.field == "callback.at"
    assert "0001-01-02T00:00:00Z" in exc.value.message


def test_the_ends_of_the_range_resolve_and_their_windows_compute() -> None:
    assert calendar.resolve_local("9998-01-01T00:00:00", "UTC") == calendar.MAX_INSTANT
    assert calendar.resolve_local("0001-01-02T00:00:00", "UTC") == calendar.MIN_INSTANT
    assert calendar.resolve_local("9997-12-31T23:00:00", "Pacific/Kiritimati") < \
        calendar.MAX_INSTANT
    # a search bound needs only be representable
    assert calendar.resolve_local("0001-01-01T00:00:00", "UTC", bounded=False) < \
        calendar.MIN_INSTANT
    with pytest.raises(BadRequest):
        calendar.resolve_local("9999-12-31T23:59:59", "Pacific/Honolulu", bounded=False)


@pytest.mark.parametrize("instant", [calendar.MIN_INSTANT, calendar.MAX_INSTANT])
@pytest.mark.parametrize("tz", ["UTC", "Pacific/Kiritimati", "Etc/GMT+12"])
@pytest.mark.parametrize("hours", ["", "09:00-17:00"])
def test_windows_compute_at_both_ends_of_the_range(instant: float, tz: str,
                                                    hours: str) -> None:
    """What a scheduled instant is checked against (the calling window, searched up to
    400 days ahead) never leaves the years a date can have, in any zone."""
    days = tuple(tuple(Interval.parse(p) for p in hours.split(",") if p) for _ in WEEKDAYS)
    camp = Campaign("c", {}, days)  # type: ignore[arg-type]
    for override in (False, True):
        is_open, until = calendar.window_state(camp, calendar.zone(tz), instant, override)
        assert until > instant
    calendar.local_iso(instant, tz)
