"""Agent bindings: which peers may act as which agent names.

``[agents.NAME] uids/gids`` and ``[auth.acts_for]`` state one relation between uids (and
groups) and agent names; ``Bindings`` holds it indexed both ways for ``roles.may_act_as``,
which checks it on every op that names an agent (docs/protocol.md, "Who may do what").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import AgentCfg, AuthCfg


@dataclass(frozen=True, slots=True)
class Binding:
    """Who may act as one bound agent name: these uids, and members of these groups."""

    uids: frozenset[int]
    gids: frozenset[int]


@dataclass(frozen=True)
class Bindings:
    """Which peers may act as which agents, indexed both ways, so that a check costs a
    dict lookup or two."""

    #: bound uid -> the only names it may act as
    by_uid: dict[int, frozenset[str]] = field(default_factory=dict)
    #: bound name -> who may act as it
    by_name: dict[str, Binding] = field(default_factory=dict)

    @classmethod
    def of(cls, auth: AuthCfg, agents: dict[str, AgentCfg]) -> Bindings | None:
        """The relation both config shapes state, merged; None when nothing is bound, so
        that the common case costs one identity test per request."""
        uids: dict[str, set[int]] = {}
        gids: dict[str, set[int]] = {}
        for name, a in agents.items():
            if a.uids or a.gids:
                uids.setdefault(name, set()).update(a.uids)
                gids.setdefault(name, set()).update(a.gids)
        for uid, names in auth.acts_for.items():
            for name in names:
                uids.setdefault(name, set()).add(uid)
                gids.setdefault(name, set())
        by_uid: dict[int, set[str]] = {}
        for name, us in uids.items():
            for uid in us:
                by_uid.setdefault(uid, set()).add(name)
        if not uids:
            return None
        return cls({u: frozenset(ns) for u, ns in by_uid.items()},
                   {n: Binding(frozenset(uids[n]), frozenset(gids[n])) for n in uids})
