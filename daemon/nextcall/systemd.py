"""sd_notify and socket activation in plain stdlib (about 30 lines: no package needed)."""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3


def notify(*lines: str) -> bool:
    """Send ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``; False when not under systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.sendall("\n".join(lines).encode())
        except OSError:
            return False
    return True


def listen_sockets() -> list[socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_FDS), for this process only.

    The variables are removed, even when they are not for us or malformed, and the
    descriptors marked close-on-exec, so children inherit neither (sd_listen_fds(3)).
    """
    env = {key: os.environ.pop(key, "")
           for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID")}
    try:
        pid = int(env["LISTEN_PID"] or "0")
        n = int(env["LISTEN_FDS"] or "0")
    except ValueError:
        return []
    if pid != os.getpid() or n <= 0:
        return []
    socks = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n):
        os.set_inheritable(fd, False)
        socks.append(socket.socket(fileno=fd))
    return socks


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout when systemd asks for pings, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    wpid = os.environ.get("WATCHDOG_PID")
    if not usec or (wpid and wpid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
