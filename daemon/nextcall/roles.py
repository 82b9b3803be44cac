"""Who is on the other end of a connection, and what they may do.

A peer's role comes from what vouches for it and the ``[auth]`` section: on the Unix socket
its kernel-verified credentials (``SO_PEERCRED``, ``SO_PEERGROUPS``), over TLS its client
certificate's names (verified against ``[tcp] client_cafile`` in the handshake); plaintext
TCP peers are agents. Roles are admin, supervisor or agent. Ops declare the
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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .bindings import Bindings
from .config import AuthCfg, Settings
from .core.errors import Forbidden

logger = logging.getLogger(__name__)

AGENT, SUPERVISOR, ADMIN = "agent", "supervisor", "admin"
RANK = {AGENT: 0, SUPERVISOR: 1, ADMIN: 2}
#: how a peer reached the daemon (``ping`` says it): the Unix socket, TLS, plaintext TCP
UNIX, TLS, TCP = "unix", "tls", "tcp"
#: the subjectAltName kinds that name a client (IP addresses and directory names do not)
SAN_KINDS = frozenset({"DNS", "email", "URI"})


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
    #: ``UNIX``, ``TLS`` or ``TCP``; TCP peers have no uid or gid (-1)
    transport: str = UNIX
    #: a TLS peer's certificate names: the subject CN first, then the SAN values
    names: tuple[str, ...] = ()

    def at_least(self, role: str) -> bool:
        """Whether this peer has ``role`` or a higher one."""
        return RANK[self.role] >= RANK[role]

    @property
    def who(self) -> str:
        """The peer in an audit line: ``uid:N``, ``cert:NAME`` or ``tcp``."""
        if self.transport == UNIX:
            return f"uid:{self.uid}"
        return f"cert:{self.names[0]}" if self.names else self.transport

    @property
    def ident(self) -> str:
        """The peer after its role in an audit line (``admin:1000``, ``admin:cert:ops``)."""
        return str(self.uid) if self.transport == UNIX else self.who


def cert_names(peercert: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The names a verified client certificate bears (``getpeercert()``): its subject's
    common names, then its subjectAltName DNS, e-mail and URI values, each once."""
    if not peercert:
        return ()
    names = [value for rdn in peercert.get("subject", ()) for key, value in rdn
             if key == "commonName"]
    names += [value for kind, value in peercert.get("subjectAltName", ())
              if kind in SAN_KINDS]
    return tuple(dict.fromkeys(n for n in names if n))


def role_for_cert(settings: Settings, names: Iterable[str]) -> str:
    """The role of a TLS peer whose certificate bears ``names``: admin when one is in
    ``cert_admins``, supervisor when one is in ``cert_supervisors``, else agent."""
    a = settings.auth
    bears = set(names)
    if not bears.isdisjoint(a.cert_admins):
        return ADMIN
    if not bears.isdisjoint(a.cert_supervisors):
        return SUPERVISOR
    return AGENT


def identify(peer: Peer, transport: asyncio.BaseTransport, settings: Settings) -> None:
    """Fill in who ``peer`` is and its role, from what vouches for it on its transport:
    the kernel's credentials on the Unix socket, the certificate the handshake verified
    on TLS, nothing on plaintext TCP (an agent with no uid)."""
    if peer.transport == UNIX:
        pid, uid, gid = peer_credentials(transport)
        peer.pid, peer.uid, peer.gid = pid, uid, gid
        groups = peer_groups(transport)
        peer.groups = groups | {gid}
        peer.role = role_for(settings, uid, gid, groups)
        return
    peer.pid, peer.uid, peer.gid, peer.groups = 0, -1, -1, frozenset()
    if peer.transport == TLS:
        peer.names = cert_names(transport.get_extra_info("peercert"))
        peer.role = role_for_cert(settings, peer.names)
    else:
        peer.role = AGENT


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
    (or certificate name) acts only as its names (and those bound to its groups), a bound
    name serves only its uids, its groups' members and its certificates. Unbound peers and
    names keep the open rule (any peer, any name); supervisors and admins act for any
    agent (they step in for the floor).

    Cheap on purpose (``next`` and ``dispose`` call it): nothing bound (None) costs one
    test, an unbound peer and name two dict lookups; the peer's groups are those the
    kernel reported when it connected.

    Raises:
        Forbidden: naming ``field``.
    """
    if bindings is None or peer.role != AGENT:
        return
    unix = peer.transport == UNIX
    names = bindings.by_uid.get(peer.uid) if unix else bindings.cert_names(peer.names)
    if names is not None and agent in names:
        return
    bound = bindings.by_name.get(agent)
    if names is None and bound is None:
        return
    if unix and bound is not None and bound.gids:
        groups = peer.groups if peer.groups is not None else frozenset((peer.gid,))
        if groups & bound.gids:
            return
    if names is None:
        why = f"agent {agent!r} is bound to other " + ("users" if unix else "peers")
    elif unix:
        why = f"uid {peer.uid} is bound to other agent names"
    else:
        why = f"certificate {peer.names[0]!r} is bound to other agent names"
    raise Forbidden(f"may not act as agent {agent!r}: {why} ([agents.NAME] uids/gids, "
                    "[auth.acts_for], [auth.cert_acts_for])", field=field)


def may_read_record(peer: Peer, leases: Iterable[Mapping[str, Any]], auth: AuthCfg,
                    bindings: Bindings | None) -> None:
    """Refuse ``record.get`` of a record to an agent-role peer that took none of its
    ``leases`` (their rows), when ``[auth] record_get = "held"`` (an agent screen shows
    the record being called, not the whole database). A Unix peer took a lease when its
    uid did. Lease rows do not name certificates, so a TCP peer is matched by the agent
    names its certificate is bound to (``[auth.cert_acts_for]``): a lease issued to one
    of them is its own; an unbound certificate or a plaintext peer reads none.

    Raises:
        Forbidden: naming ``record``.
    """
    if auth.record_get == "any" or peer.role != AGENT:
        return
    if peer.transport == UNIX:
        if any(x["uid"] == peer.uid for x in leases):
            return
        raise Forbidden("an agent reads only records leased to its uid "
                        "([auth] record_get = \"held\")", field="record")
    names = bindings.cert_names(peer.names) if bindings is not None else None
    if names and any(x["agent"] in names for x in leases):
        return
    raise Forbidden("an agent over TCP reads only records leased to an agent name its "
                    "certificate is bound to ([auth] record_get = \"held\", "
                    "[auth.cert_acts_for])", field="record")
