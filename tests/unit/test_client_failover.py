"""The failover client against fake daemons on Unix sockets and loopback TCP: it finds
the active daemon, follows the address a standby names, resends a request after a drop,
gives up after ``failover_timeout`` with a clear error, and keeps one address working
exactly as before."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nextcall.client import Client, ClientError, NoActiveDaemon, parse_address
from tests.fakedaemon import FakeDaemon, active, ping, standby, unavailable

Make = Callable[..., FakeDaemon]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Make]:
    """Start fake daemons (``unix=name`` for a socket in tmp_path, else loopback TCP);
    all stop when the test ends."""
    made: list[FakeDaemon] = []

    def make(behaviour: Any, unix: str | None = None, **kw: Any) -> FakeDaemon:
        d = FakeDaemon(behaviour, unix=tmp_path / unix if unix else None, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop()


@pytest.mark.parametrize(("address", "parsed"), [
    ("/run/nextcall.sock", None),
    ("./run/nextcall.sock", None),
    ("nextcall.sock", None),
    ("run/a:80", None),
    ("10.0.0.2:7443", ("10.0.0.2", 7443)),
    ("db-1.example.org:7443", ("db-1.example.org", 7443)),
    ("[::1]:7443", ("::1", 7443)),
    ("[fe80::1%eth0]:7443", ("fe80::1%eth0", 7443)),
    ("::1:7443", None),
    ("[::1]", None),
    ("host:0", None),
    ("host:65536", None),
    ("host:", None),
])
def test_address_forms(address: str, parsed: tuple[str, int] | None) -> None:
    assert parse_address(address) == parsed


# ---------------------------------------------------------------- one address: as before


def test_one_address_sends_no_ping_and_never_resends(fake: Make) -> None:
    a = fake(active(die_on="dispose"), unix="a.sock")
    c = Client(a.address).connect()
    assert c.address == a.address and c.path == a.address
    assert c.call("campaigns")["served_by"] == a.address
    with pytest.raises(ConnectionError) as info:
        c.call("dispose", lease="1.x", code="NA")
    assert not isinstance(info.value, NoActiveDaemon)
    assert a.ops() == ["campaigns", "dispose"]
    assert c.failovers == 0


def test_one_missing_socket_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Client(str(tmp_path / "missing.sock")).connect()


def test_one_address_answers_unavailable_with_the_active_address(fake: Make) -> None:
    s = fake(standby("10.0.0.9:7443"), unix="s.sock")
    with Client(s.address) as c, pytest.raises(ClientError) as info:
        c.call("next", agent="alice")
    assert (info.value.code, info.value.active) == ("unavailable", "10.0.0.9:7443")


def test_one_address_with_a_failover_timeout_reconnects_after_a_restart(
        fake: Make) -> None:
    a = fake(active(die_on="next"), unix="a.sock")
    c = Client(a.address, failover_timeout=30).connect()
    successor: list[FakeDaemon] = []

    def restart() -> None:
        while Path(a.address).exists():
            time.sleep(0.01)
        successor.append(fake(active(epoch=2), unix="a.sock"))
    t = threading.Thread(target=restart)
    t.start()
    ans = c.call("next", agent="alice")
    t.join()
    assert ans["served_by"] == a.address and c.failovers == 1
    assert a.ops() == ["ping", "next"] and successor[0].ops() == ["ping", "next"]


# ---------------------------------------------------------------- finding the active


def test_a_missing_socket_first_in_the_list_is_skipped(fake: Make, tmp_path: Path) -> None:
    a = fake(active(legacy=True), unix="a.sock")
    with Client([str(tmp_path / "missing.sock"), a.address]) as c:
        assert c.address == a.address
        assert c.call("stats")["served_by"] == a.address
    assert a.ops() == ["ping", "stats"]


def test_a_standby_is_passed_over_for_the_next_address(fake: Make) -> None:
    s = fake(standby(), unix="s.sock")
    a = fake(active(), unix="a.sock")
    with Client([s.address, a.address]) as c:
        assert c.address == a.address
    assert s.ops() == ["ping"]


def test_the_active_a_standby_names_is_tried_next_even_off_the_list(fake: Make) -> None:
    named = fake(active(epoch=4), unix="named.sock")
    s = fake(standby(named.address), unix="s.sock")
    other = fake(active(), unix="other.sock")
    with Client([s.address, other.address]) as c:
        assert c.address == named.address
        assert c.call("campaigns")["served_by"] == named.address
    assert other.ops() == []


def test_rounds_repeat_until_an_active_daemon_appears(fake: Make, tmp_path: Path) -> None:
    later = str(tmp_path / "later.sock")

    def promote_on_third_ping(d: FakeDaemon, req: dict[str, Any]) -> dict[str, Any]:
        if len(d.of("ping")) == 3:
            fake(active(epoch=2), unix="later.sock")
        return standby()(d, req)
    s = fake(promote_on_third_ping, unix="s.sock")
    with Client([s.address, later]) as c:
        assert c.address == later
    assert len(s.of("ping")) == 3


def test_no_active_daemon_within_the_failover_timeout_is_a_clear_error(
        fake: Make, tmp_path: Path) -> None:
    s1 = fake(standby(), unix="s1.sock")
    s2 = fake(standby(s1.address), unix="s2.sock")
    missing = str(tmp_path / "missing.sock")
    c = Client([s1.address, s2.address, missing], failover_timeout=0.3)
    with pytest.raises(NoActiveDaemon) as info:
        c.connect()
    assert isinstance(info.value, ConnectionError)
    assert info.value.tried == {s1.address: "standby", s2.address:
                                f"standby (active: {s1.address})",
                                missing: "No such file or directory"}
    assert "no active nextcall daemon after 0.3 s" in str(info.value)
    assert len(s1.of("ping")) >= 2, "the list is tried again before giving up"
    assert c.address is None


def test_a_refusal_line_without_an_id_is_not_an_active_daemon(fake: Make) -> None:
    full = fake(lambda d, req: {"ok": False, "error": {
        "code": "unavailable", "message": "too many connections"}}, unix="full.sock")
    a = fake(active(), unix="a.sock")
    with Client([full.address, a.address]) as c:
        assert c.address == a.address


# ---------------------------------------------------------------- failing over in call()


def test_a_daemon_dying_mid_request_is_replaced_and_the_request_resent(fake: Make) -> None:
    a = fake(active(die_on="dispose"), unix="a.sock")
    b = fake(active(epoch=2), unix="b.sock")
    c = Client([a.address, b.address]).connect()
    assert c.address == a.address
    ans = c.call("dispose", lease="7.secret", code="CB", note="n",
                 callback={"at": "2027-01-01T10:00:00"})
    assert ans["served_by"] == b.address
    assert c.address == b.address and c.failovers == 1
    sent, resent = a.of("dispose")[0], b.of("dispose")[0]
    assert {k: v for k, v in sent.items() if k != "id"} == \
        {k: v for k, v in resent.items() if k != "id"}
    assert sent["id"] != resent["id"]


def test_unavailable_naming_the_active_is_followed(fake: Make) -> None:
    b = fake(active(epoch=3), unix="b.sock")

    def stepped_down(d: FakeDaemon, req: dict[str, Any]) -> dict[str, Any]:
        return ping("active", None, 2) if req["op"] == "ping" else unavailable(b.address)
    a = fake(stepped_down, unix="a.sock")
    other = fake(active(), unix="other.sock")
    with Client([a.address, other.address]) as c:
        ans = c.call("next", agent="alice", count=1)
    assert ans["served_by"] == b.address and other.ops() == []
    assert b.of("next")[0]["agent"] == "alice" and b.of("next")[0]["count"] == 1


def test_unavailable_from_a_daemon_whose_ping_now_says_standby_fails_over(
        fake: Make) -> None:
    def fenced(d: FakeDaemon, req: dict[str, Any]) -> dict[str, Any]:
        if req["op"] == "ping":
            return ping("standby" if d.of("next") else "active")
        return unavailable()
    a = fake(fenced, unix="a.sock")
    b = fake(active(), unix="b.sock")
    with Client([a.address, b.address]) as c:
        assert c.call("next", agent="alice")["served_by"] == b.address
        assert c.failovers == 1


def test_unavailable_from_a_daemon_still_active_is_raised(fake: Make) -> None:
    def storage_failed(d: FakeDaemon, req: dict[str, Any]) -> dict[str, Any]:
        return ping("active") if req["op"] == "ping" else unavailable()
    a = fake(storage_failed, unix="a.sock")
    b = fake(active(), unix="b.sock")
    with Client([a.address, b.address]) as c, pytest.raises(ClientError) as info:
        c.call("next", agent="alice")
    assert info.value.code == "unavailable" and info.value.active is None
    assert b.ops() == [] and c.failovers == 0


def test_call_gives_up_when_no_daemon_takes_over(fake: Make, tmp_path: Path) -> None:
    a = fake(active(die_on="next"), unix="a.sock")
    s = fake(standby(), unix="s.sock")
    with Client([a.address, s.address], failover_timeout=0.2) as c, \
            pytest.raises(NoActiveDaemon) as info:
        c.call("next", agent="alice")
    assert info.value.tried[s.address] == "standby"
    assert s.of("next") == []


def test_a_read_timeout_is_not_a_failover(fake: Make) -> None:
    a = fake(active(silent_on="next"), unix="a.sock")
    b = fake(active(), unix="b.sock")
    with Client([a.address, b.address]) as c, pytest.raises(TimeoutError):
        c.call("next", agent="alice", timeout=0.2)
    assert b.ops() == []


def test_a_staged_import_is_not_resent(fake: Make) -> None:
    a = fake(active(die_on="records.import"), unix="a.sock")
    b = fake(active(), unix="b.sock")
    with Client([a.address, b.address]) as c, pytest.raises(ConnectionError) as info:
        c.call("records.import", campaign="t", list="l", records=[], stage="s1")
    assert "staged import 's1'" in str(info.value)
    assert b.ops() == []


def test_pipelined_requests_in_flight_stop_a_failover(fake: Make) -> None:
    a = fake(active(silent_on="next", die_on="dispose"), unix="a.sock")
    b = fake(active(), unix="b.sock")
    with Client([a.address, b.address]) as c:
        waiting = c.send("next", agent="alice", wait=30)
        with pytest.raises(ConnectionError, match="1 pipelined requests in flight"):
            c.call("dispose", lease="1.x", code="NA")
        with pytest.raises(ConnectionError, match="closed the connection"):
            c.receive(waiting)
    assert b.ops() == []


def test_subscriptions_are_made_again_on_the_new_daemon(fake: Make) -> None:
    a = fake(active(die_on="next"), unix="a.sock")
    b = fake(active(), unix="b.sock")
    with Client([a.address, b.address]) as c:
        c.call("subscribe", agent="alice")
        c.call("next", agent="alice")
    assert b.ops() == ["ping", "subscribe", "next"]
    assert b.of("subscribe")[0]["agent"] == "alice"


def test_plaintext_tcp_standby_points_to_a_unix_active(fake: Make) -> None:
    a = fake(active(), unix="a.sock")
    s = fake(standby(a.address))
    with Client([s.address], tls=False, failover_timeout=1) as c:
        assert c.address == a.address
    assert s.ops() == ["ping"]
