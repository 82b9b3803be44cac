"""Who is on the other end of a connection, and what they may do.

A peer's role comes from its kernel-verified credentials (``SO_PEERCRED``,
``SO_PEERGROUPS``) and the ``[auth]`` section: admin, supervisor or agent. Ops declare the
least role they need in the registry (``ops/__init__.py``) and the server checks it before the
handler runs; the finer rules that depend on one record (who may reopen it or give it a
callback: ``ops/permits.py``) stay with their handlers. Agent-role peers may further be
bound to agent names (``may_act_as``), and confined to the records they held
(``may_read_record``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import platform
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .bindings import Bindings
from .config import AuthCfg, Settings
from .core.errors import Forbidden

logger = logging.getLogger(__name__)

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
    #: the peer process's primary and supplementary groups when it connected (None: not
    #: known, only ``gid`` is)
    groups: frozenset[int] | None = None

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


def _so_peergroups() -> int | None:
    """The ``SO_PEERGROUPS`` option number (Linux 4.13+), or None where it is unknown.
    Python names it only from 3.14; 59 is its number in Linux's generic socket ABI, which
    every architecture but alpha, mips, parisc and sparc uses."""
    known = getattr(socket, "SO_PEERGROUPS", None)
    if known is not None:
        return int(known)
    if sys.platform == "linux" and not platform.machine().startswith(
            ("alpha", "mips", "parisc", "sparc")):
        return 59
    return None


SO_PEERGROUPS = _so_peergroups()
#: Python's getsockopt returns at most 1024 bytes: room for 256 groups
MAX_PEER_GROUPS = 256


def peer_groups(transport: asyncio.BaseTransport) -> frozenset[int]:
    """The peer process's supplementary groups when it connected (``SO_PEERGROUPS``).

    They are the kernel's copy of its credentials, like ``SO_PEERCRED``, and the groups the
    kernel checked against the socket file's mode. The user database is not read: it may
    block (NSS, LDAP), and it lists the groups of the user, not those of the process that
    connected, which may have dropped some. Empty when the kernel or the transport cannot
    tell, or when the process has more than ``MAX_PEER_GROUPS`` (logged): the peer is then
    matched by uid and primary gid only, which can only lower its role.
    """
    sock = transport.get_extra_info("socket")
    if SO_PEERGROUPS is None or sock is None:
        return frozenset()
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * MAX_PEER_GROUPS)
    except OSError as exc:
        if exc.errno == errno.ERANGE:
            logger.warning("peer_groups_truncated limit=%d action=primary_gid_only",
                           MAX_PEER_GROUPS)
        return frozenset()
    except AttributeError:
        return frozenset()
    n = len(raw) // 4
    return frozenset(struct.unpack(f"={n}I", raw[:4 * n]))


def role_for(settings: Settings, uid: int, gid: int,
             groups: frozenset[int] = frozenset()) -> str:
    """The role a peer has: admin, supervisor or agent (docs/protocol.md#roles). ``gid``
    is the peer's primary group (``SO_PEERCRED``) and ``groups`` its supplementary groups
    (``peer_groups``); a gid list matches either."""
    a = settings.auth
    if a.trust_own_uid and uid in (0, os.getuid()):
        return ADMIN
    if uid in a.admin_uids:
        return ADMIN
    if gid in a.admin_gids or not groups.isdisjoint(a.admin_gids):
        return ADMIN
    if uid in a.supervisor_uids or gid in a.supervisor_gids or \
            not groups.isdisjoint(a.supervisor_gids):
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


def may_act_as(peer: Peer, agent: str, bindings: Bindings | None, field: str = "agent"
               ) -> None:
    """Refuse an agent-role ``peer`` acting as ``agent`` against the bindings: a bound uid
    acts only as its names (and those bound to its groups), a bound name serves only its
    uids and groups' members. Unbound uids and names keep the open rule (any peer, any
    name); supervisors and admins act for any agent (they step in for the floor).

    Cheap on purpose (``next`` and ``dispose`` call it): nothing bound (None) costs one
    test, an unbound peer and name two dict lookups; the peer's groups are those the
    kernel reported when it connected.

    Raises:
        Forbidden: naming ``field``.
    """
    if bindings is None or peer.role != AGENT:
        return
    names = bindings.by_uid.get(peer.uid)
    if names is not None and agent in names:
        return
    bound = bindings.by_name.get(agent)
    if names is None and bound is None:
        return
    if bound is not None and bound.gids:
        groups = peer.groups if peer.groups is not None else frozenset((peer.gid,))
        if groups & bound.gids:
            return
    why = (f"uid {peer.uid} is bound to other agent names" if names is not None
           else f"agent {agent!r} is bound to other users")
    raise Forbidden(f"may not act as agent {agent!r}: {why} ([agents.NAME] uids/gids, "
                    "[auth.acts_for])", field=field)


def may_read_record(peer: Peer, lease_uids: Iterable[int], auth: AuthCfg) -> None:
    """Refuse ``record.get`` of a record to an agent-role peer whose uid took none of its
    leases, when ``[auth] record_get = "held"`` (an agent screen shows the record being
    called, not the whole database).

    Raises:
        Forbidden: naming ``record``.
    """
    if auth.record_get == "any" or peer.role != AGENT:
        return
    if peer.uid not in lease_uids:
        raise Forbidden("an agent reads only records leased to its uid "
                        "([auth] record_get = \"held\")", field="record")
