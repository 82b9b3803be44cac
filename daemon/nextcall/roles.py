"""Who is on the other end of a connection, and what they may do.

A peer's role comes from its kernel-verified credentials (``SO_PEERCRED`` on the Unix
socket) and the ``[auth]`` section: admin, supervisor or agent. Ops declare the least
role they need in the registry (``ops/__init__.py``) and the server checks it before the
handler runs; the few finer rules (an agent of a team allowed to reopen a record) stay
in their handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .config import Settings
from .core.errors import Forbidden

AGENT, SUPERVISOR, ADMIN = "agent", "supervisor", "admin"
RANK = {AGENT: 0, SUPERVISOR: 1, ADMIN: 2}


@dataclass(slots=True)
class Peer:
    """One connection's client, as the kernel vouches for it."""

    conn_id: int
    pid: int
    uid: int
    gid: int
    role: str = AGENT
    #: set when the connection closes; long polls stop waiting
    gone: bool = False
    #: writes one line to the connection (the server sets it; ``subscribe`` needs it)
    send: Callable[[bytes], Awaitable[None]] | None = None

    def at_least(self, role: str) -> bool:
        """Whether this peer has ``role`` or a higher one."""
        return RANK[self.role] >= RANK[role]


def peer_credentials(transport: asyncio.BaseTransport) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connected peer via SO_PEERCRED; (0, -1, -1) when the
    transport has none."""
    sock = transport.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("=iII", raw)
        return int(pid), int(uid), int(gid)
    except (OSError, AttributeError):
        return 0, -1, -1


def peer_groups(uid: int, gid: int) -> set[int]:
    """The peer's primary and supplementary groups (from the user database)."""
    groups = {gid}
    with contextlib.suppress(KeyError, OSError):
        groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    return groups


def role_for(settings: Settings, uid: int, gid: int) -> str:
    """The role a peer has: admin, supervisor or agent (docs/protocol.md)."""
    a = settings.auth
    if a.trust_own_uid and uid in (0, os.getuid()):
        return ADMIN
    if uid in a.admin_uids:
        return ADMIN
    groups = peer_groups(uid, gid) if (a.admin_gids or a.supervisor_gids) else {gid}
    if groups & set(a.admin_gids):
        return ADMIN
    if uid in a.supervisor_uids or groups & set(a.supervisor_gids):
        return SUPERVISOR
    return AGENT


def require(peer: Peer, role: str, op: str) -> None:
    """Refuse ``op`` unless ``peer`` has at least ``role``.

    Raises:
        Forbidden.
    """
    if RANK[peer.role] < RANK[role]:
        needs = "the admin role" if role == ADMIN else f"the {role} or admin role"
        raise Forbidden(f"{op} needs {needs}")
