"""Who is on the other end of a connection, and what they may do.

A peer's role comes from its kernel-verified credentials (``SO_PEERCRED`` on the Unix
socket) and the ``[auth]`` section: admin, supervisor or agent. Ops declare the least
role they need in the registry (``ops/__init__.py``) and the server checks it before the
handler runs; the few finer rules (an agent of a team allowed to reopen a record) stay
in their handlers. Agent-role peers may further be bound to agent names
(``may_act_as``), and confined to the records they held (``may_read_record``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .bindings import Bindings
from .config import AuthCfg, Settings
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
    #: the peer's groups, looked up once, when a group-bound agent name first needs them
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


def may_act_as(peer: Peer, agent: str, bindings: Bindings | None, field: str = "agent"
               ) -> None:
    """Refuse an agent-role ``peer`` acting as ``agent`` against the bindings: a bound uid
    acts only as its names (and those bound to its groups), a bound name serves only its
    uids and groups' members. Unbound uids and names keep the open rule (any peer, any
    name); supervisors and admins act for any agent (they step in for the floor).

    Cheap on purpose (``next`` and ``dispose`` call it): nothing bound (None) costs one
    test, an unbound peer and name two dict lookups; the peer's groups are looked up once
    per connection, and only for names bound to groups.

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
        if peer.groups is None:
            peer.groups = frozenset(peer_groups(peer.uid, peer.gid))
        if peer.groups & bound.gids:
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
