"""Who may change one record outside the call cycle: the rules of ``record.reopen`` and
``callback.schedule`` that depend on the record itself, so the registry lets the least of
their callers through and the handlers ask here.

- A closed record is reopened by the roles its closing code names (``reopen_roles``,
  ``core.reopening``), on every path that reopens it; an agent logged in to a team of a
  ``special`` code's ``reopen_teams`` may also reopen what that code closed, by setting a
  callback.
- Held records and records in resolution are for supervisors (a callback) and admins.
- An open record nobody has leased takes a callback from a supervisor, or from an agent
  logged in to its campaign when the campaign has ``agent_schedule`` (ready records, and
  callbacks the agent owns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.errors import Forbidden
from ..core.model import Campaign, ResultCode
from ..core.records import CALLBACK, CLOSED, READY, Record
from ..core.reopening import closing_code, reopen_roles
from ..roles import ADMIN, SUPERVISOR, Peer

if TYPE_CHECKING:
    from ..service import Service


def _closer(svc: Service, rec: Record, history: Iterable[Mapping[str, Any]]
            ) -> ResultCode | None:
    camp = svc.engine.campaigns.get(rec.campaign)
    return closing_code(rec, history, camp.codes) if camp is not None else None


def _closed_refusal(rec: Record, code: ResultCode | None, roles: tuple[str, ...],
                    field: str | None) -> Forbidden:
    by = f"code {code.code!r}" if code is not None else "its close reason"
    return Forbidden(f"a record closed as {rec.reason!r} is reopened by {' or '.join(roles)} "
                     f"(the reopen_roles of {by})", field=field)


def may_reopen(svc: Service, peer: Peer, rec: Record,
               history: Iterable[Mapping[str, Any]]) -> None:
    """``record.reopen``: a closed record by the roles of its closing code; any other
    (held, in resolution, open) by an admin.

    Raises:
        Forbidden: naming ``record``.
    """
    if rec.state != CLOSED:
        if peer.role != ADMIN:
            raise Forbidden(f"record.reopen of a record that is {rec.state} (not closed) "
                            "needs the admin role", field="record")
        return
    code = _closer(svc, rec, history)
    roles = reopen_roles(rec, code)
    if peer.role not in roles:
        raise _closed_refusal(rec, code, roles, "record")


def _logged_in(svc: Service, agent: str | None, campaign: str) -> tuple[str, ...] | None:
    """The teams of ``agent`` when logged in to ``campaign``, else None."""
    s = svc.engine.agents.get(agent) if agent else None
    if s is None or not s.logged_in or campaign not in s.campaigns:
        return None
    return tuple(s.teams)


def _special_team(svc: Service, camp: Campaign, rec: Record, code: ResultCode | None,
                  agent: str | None) -> bool:
    """Whether ``agent`` is logged in to the campaign and to a team allowed to reopen a
    record closed as special (the closing code's teams; every special code's when that
    code is no longer configured)."""
    if rec.reason != "special":
        return False
    teams = set(code.reopen_teams) if code is not None and code.action == "special" else {
        t for rc in camp.codes.values() if rc.action == "special" for t in rc.reopen_teams}
    mine = _logged_in(svc, agent, rec.campaign)
    return mine is not None and bool(teams & set(mine))


def _agent_may_schedule(svc: Service, camp: Campaign, rec: Record, agent: str | None
                        ) -> None:
    """An agent-role peer on an open record: ``agent_schedule``, logged in to the record's
    campaign, and the record ready or a callback of theirs.

    Raises:
        Forbidden.
    """
    if not camp.agent_schedule:
        raise Forbidden(f"campaign {rec.campaign!r} does not let agents schedule callbacks "
                        "(agent_schedule); callback.schedule needs the supervisor role",
                        field="agent" if agent else None)
    if _logged_in(svc, agent, rec.campaign) is None:
        raise Forbidden(f"callback.schedule needs an agent logged in to campaign "
                        f"{rec.campaign!r}", field="agent")
    if rec.state != READY and not (rec.state == CALLBACK and rec.owner == agent):
        whose = f" of {rec.owner!r}" if rec.owner else " of a team"
        raise Forbidden(f"an agent gives a callback to a ready record or to a callback of "
                        f"their own; this one is a callback{whose}", field="record")


def may_schedule(svc: Service, peer: Peer, rec: Record,
                 history: Iterable[Mapping[str, Any]], agent: str | None) -> None:
    """``callback.schedule`` on ``rec`` (not leased) by ``peer`` acting as ``agent``.

    Raises:
        Forbidden.
    """
    camp = svc.engine.campaign(rec.campaign, "record")
    if rec.state == CLOSED:
        code = _closer(svc, rec, history)
        roles = reopen_roles(rec, code)
        if peer.role in roles or _special_team(svc, camp, rec, code, agent):
            return
        if peer.at_least(SUPERVISOR) or rec.reason != "special":
            raise _closed_refusal(rec, code, roles, "record")
        raise Forbidden("a record closed as special is reopened by an agent logged in to "
                        "one of its code's reopen_teams, or by "
                        f"{' or '.join(roles)}", field="agent" if agent else None)
    if peer.at_least(SUPERVISOR):
        return
    if rec.state not in (READY, CALLBACK):  # held, or waiting in resolution
        raise Forbidden(f"a {rec.state} record's callback is set by a supervisor or an "
                        "admin", field="record")
    _agent_may_schedule(svc, camp, rec, agent)
