"""nextcall.systemd: the sd_notify datagram, LISTEN_FDS hand-over and the watchdog interval,
against real sockets and a real child process (no systemd needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nextcall import systemd


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
                "LISTEN_PIDFDID", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)
    yield monkeypatch


def _receiver(address: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_notify_sends_one_datagram_to_a_path_socket(tmp_path: Path,
                                                    clean_env: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as r:
        clean_env.setenv("NOTIFY_SOCKET", path)
        assert systemd.notify("READY=1", "STATUS=serving 3 records") is True
        assert r.recv(4096) == b"READY=1\nSTATUS=serving 3 records"


def test_notify_maps_a_leading_at_to_the_abstract_namespace(
        clean_env: pytest.MonkeyPatch) -> None:
    name = f"nextcall-test-{os.getpid()}-{id(clean_env)}"
    with _receiver(b"\0" + name.encode()) as r:
        clean_env.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("STOPPING=1") is True
        assert r.recv(4096) == b"STOPPING=1"


def test_notify_is_a_no_op_outside_systemd(tmp_path: Path,
                                           clean_env: pytest.MonkeyPatch) -> None:
    assert systemd.notify("READY=1") is False
    # a socket that went away is reported, never raised into the daemon
    clean_env.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert systemd.notify("READY=1") is False


# LISTEN_FDS needs the descriptors at 3, 4, ... of the process whose pid is LISTEN_PID:
# a fresh interpreter puts two listening sockets there, then calls listen_sockets().
CHILD = r"""
import json, os, socket, sys
from nextcall import systemd
made = []
for i, fd in enumerate((3, 4)):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sys.argv[1] + str(i))
    s.listen()
    os.dup2(s.fileno(), fd)
    os.set_inheritable(fd, True)  # as systemd passes them: no FD_CLOEXEC
    made.append(s)
os.environ["LISTEN_PID"] = str(os.getpid() + int(sys.argv[2]))
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_FDNAMES"] = "a:b"
socks = systemd.listen_sockets()
print(json.dumps({
    "names": [s.getsockname() for s in socks],
    "fds": [s.fileno() for s in socks],
    "inheritable": [os.get_inheritable(s.fileno()) for s in socks],
    "left": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}))
"""


def _child(tmp_path: Path, pid_offset: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "l"), str(pid_offset)],
                         capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_listen_sockets_takes_fds_from_3_and_unsets_the_variables(tmp_path: Path) -> None:
    got = _child(tmp_path, pid_offset=0)
    assert got["names"] == [str(tmp_path / "l0"), str(tmp_path / "l1")]
    assert got["fds"] == [3, 4]
    assert got["inheritable"] == [False, False], "children must not inherit the listeners"
    assert got["left"] == []


def test_listen_sockets_ignores_fds_meant_for_another_pid(tmp_path: Path) -> None:
    got = _child(tmp_path, pid_offset=1)
    assert got["names"] == []
    assert got["left"] == [], "the variables are removed even when they are not ours"


def test_listen_sockets_without_or_with_bad_variables(
        clean_env: pytest.MonkeyPatch) -> None:
    assert systemd.listen_sockets() == []
    clean_env.setenv("LISTEN_PID", str(os.getpid()))
    clean_env.setenv("LISTEN_FDS", "many")
    assert systemd.listen_sockets() == []
    assert "LISTEN_PID" not in os.environ and "LISTEN_FDS" not in os.environ


@pytest.mark.parametrize(("usec", "wpid", "expected"), [
    (None, None, None),            # no watchdog configured
    ("400000", None, 0.2),         # half of WatchdogSec
    ("30000000", "self", 15.0),    # WATCHDOG_PID is us
    ("400000", "other", None),     # the pings are some other process's job
    ("soon", None, None),          # malformed: no pings rather than a crash
    ("0", None, 0.0),              # disabled: the daemon starts no ping task for 0
])
def test_watchdog_interval_is_half_of_watchdog_usec(
        clean_env: pytest.MonkeyPatch, usec: str | None, wpid: str | None,
        expected: float | None) -> None:
    if usec is not None:
        clean_env.setenv("WATCHDOG_USEC", usec)
    if wpid is not None:
        clean_env.setenv("WATCHDOG_PID", str(os.getpid() + (0 if wpid == "self" else 1)))
    assert systemd.watchdog_interval_s() == expected
