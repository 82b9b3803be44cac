"""Who sees a callback, and who is reminded of it.

Pure functions of plain data: a record and the agents' logins (anything with
``campaigns``, ``teams`` and ``logged_in``, such as the engine's ``AgentSession``), so the
callback queue (``callbacks`` op) and the reminders (``notify/reminders.py``) apply one
reading of the scopes and can be tested without a service.

The two answers differ on purpose. The queue is a listing: an agent sees the callbacks it
could be handed (its own, its teams', ``anyone`` callbacks of a campaign it works), logged
in or not, so it can plan. A reminder is a push to people at work: the owner of a
personal callback, or for a ``team`` callback the team's agents logged in to the record's
campaign now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from .records import Record

#: scopes whose callbacks the record's team sees (``personal_then_team`` from the start in
#: the queue, though it is handed to the team only after the grace period)
TEAM_SCOPES = ("team", "personal_then_team")


class AgentLogin(Protocol):
    """What these rules read of an agent's login."""

    @property
    def campaigns(self) -> Sequence[str]:
        """Campaigns the agent works."""

    @property
    def teams(self) -> Sequence[str]:
        """Teams the agent belongs to."""

    @property
    def logged_in(self) -> bool:
        """Whether the agent is logged in now."""


def sees_callback(agent: str, login: AgentLogin | None, rec: Record) -> bool:
    """Whether ``rec``'s callback is in ``agent``'s callback queue.

    ``login`` is the agent's login (None when the daemon never saw one). The owner always
    sees the record; anyone else needs a login to the record's campaign and a callback
    of scope ``anyone``, or of a team scope for a team it belongs to.
    """
    if rec.owner == agent:
        return True
    cb = rec.callback
    if login is None or cb is None or rec.campaign not in login.campaigns:
        return False
    if cb.scope == "anyone":
        return True
    return cb.scope in TEAM_SCOPES and rec.team in login.teams


def reminder_recipients(rec: Record, logins: Mapping[str, AgentLogin]) -> list[str]:
    """The agents reminded of ``rec``'s callback, sorted.

    A ``team`` callback reminds every agent of its team (the callback's, else the
    record's) logged in to the record's campaign now; any other callback reminds its
    owner (the callback's, else the record's), and nobody when there is none.
    """
    cb = rec.callback
    if cb is not None and cb.scope == "team":
        team = cb.team or rec.team
        return sorted(name for name, s in logins.items()
                      if s.logged_in and rec.campaign in s.campaigns and team in s.teams)
    owner = (cb.owner if cb is not None else None) or rec.owner
    return [owner] if owner else []
