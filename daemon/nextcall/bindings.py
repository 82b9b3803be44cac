"""Agent bindings: which peers may act as which agent names.

``[agents.NAME] uids/gids``, ``[auth.acts_for]`` and ``[auth.cert_acts_for]`` state one
relation between peers (uids and groups on the Unix socket, certificate names on TCP) and
agent names; ``Bindings`` holds it indexed both ways for ``roles.may_act_as``, which checks
it on every op that names an agent (docs/protocol.md, "Who may do what").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .config import AgentCfg, AuthCfg

P = TypeVar("P", int, str)


@dataclass(frozen=True, slots=True)
class Binding:
    """Who may act as one bound agent name: these uids, members of these groups, and
    TCP clients whose certificate bears one of these names."""

    uids: frozenset[int]
    gids: frozenset[int]
    certs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Bindings:
    """Which peers may act as which agents, indexed both ways, so that a check costs a
    dict lookup or two."""

    #: bound uid -> the only names it may act as
    by_uid: dict[int, frozenset[str]] = field(default_factory=dict)
    #: bound name -> who may act as it
    by_name: dict[str, Binding] = field(default_factory=dict)
    #: bound certificate name -> the only names it may act as
    by_cert: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, auth: AuthCfg, agents: dict[str, AgentCfg]) -> Bindings | None:
        """The relation the config shapes state, merged; None when nothing is bound, so
        that the common case costs one identity test per request."""
        uids: dict[str, set[int]] = {}
        gids: dict[str, set[int]] = {}
        certs: dict[str, set[str]] = {}
        for name, a in agents.items():
            if a.uids or a.gids:
                uids.setdefault(name, set()).update(a.uids)
                gids.setdefault(name, set()).update(a.gids)
        for uid, names in auth.acts_for.items():
            for name in names:
                uids.setdefault(name, set()).add(uid)
        for cert, names in auth.cert_acts_for.items():
            for name in names:
                certs.setdefault(name, set()).add(cert)
        bound = uids.keys() | certs.keys()
        if not bound:
            return None
        return cls(_invert(uids), {
            n: Binding(frozenset(uids.get(n, ())), frozenset(gids.get(n, ())),
                       frozenset(certs.get(n, ()))) for n in bound}, _invert(certs))

    def cert_names(self, names: Iterable[str]) -> frozenset[str] | None:
        """The agent names a certificate bearing ``names`` may act as: the union over its
        bound names (as a uid's names and its groups' add up); None when none is bound."""
        out: frozenset[str] | None = None
        for n in names:
            got = self.by_cert.get(n)
            if got is not None:
                out = got if out is None else out | got
        return out


def _invert(relation: dict[str, set[P]]) -> dict[P, frozenset[str]]:
    """name -> peers, as peer -> names."""
    out: dict[P, set[str]] = {}
    for name, peers in relation.items():
        for p in peers:
            out.setdefault(p, set()).add(name)
    return {p: frozenset(ns) for p, ns in out.items()}
