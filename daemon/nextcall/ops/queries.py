"""Read-only views for agents' screens and supervisors: ``ping``, ``campaigns``,
``stats`` and the ``callbacks`` queue. All answer from memory, at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from .. import __version__, views
from ..core import calendar
from ..core.actions import requires
from ..core.engine import SLOTS, callback_standing
from ..core.errors import BadRequest, Forbidden
from ..core.model import Campaign
from ..core.records import Record
from ..core.visibility import sees_callback
from ..protocol import Name, Request
from ..roles import AGENT, TLS, Peer
from .base import Body

if TYPE_CHECKING:
    from ..service import Service

CALLBACK_STATES = ("upcoming", "due", "overdue")


class PingReq(Request):
    """``ping``."""


class CampaignsReq(Request):
    """``campaigns``: optionally only those an agent is logged in to."""

    agent: Name | None = None


class StatsReq(Request):
    """``stats``."""

    campaign: Name | None = None


class CallbacksReq(Request):
    """``callbacks``: the callback queue. ``agent``: the callbacks that agent may get (its
    own, its teams', its campaigns' ``anyone`` ones); an agent-role peer must name
    itself. ``from``/``to`` bound the due time (ISO instants; no offset means UTC)."""

    agent: Name | None = None
    team: Name | None = None
    campaign: Name | None = None
    from_: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, alias="from")
    to: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    states: Annotated[list[Literal["upcoming", "due", "overdue"]],
                      Field(min_length=1, max_length=3)] | None = None
    limit: Annotated[int, Field(ge=1, le=100_000)] = 1000


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def ping(svc: Service, req: PingReq, peer: Peer) -> Body:
    """``ping``: the daemon's version, and the caller's role and how the daemon knows it
    (its transport; over TLS, the certificate names it matched ``[auth]`` against)."""
    out: dict[str, Any] = {"version": __version__, "role": peer.role, "uid": peer.uid,
                           "records": len(svc.engine), "transport": peer.transport}
    if peer.transport == TLS:
        out["cert_names"] = list(peer.names)
    return out


def _campaign_view(name: str, c: Campaign, max_count: int) -> dict[str, Any]:
    return {
        "name": name, "description": c.description, "enabled": c.enabled,
        "max_attempts": c.max_attempts, "lease_s": c.lease_s, "grace_s": c.grace_s,
        "max_count": min(c.max_count or max_count, max_count),
        "agent_schedule": c.agent_schedule,
        "timezone": c.timezone, "legal_window": str(c.legal_window),
        "window": {d: [str(iv) for iv in c.window[i]] for i, d in enumerate(_DAYS)},
        "codes": [{
            "code": rc.code, "description": rc.description, "action": rc.action,
            "enabled": rc.enabled, "category": rc.category,
            "dial_status": rc.dial_status, "contact": rc.contact,
            "presentation": rc.presentation, "success": rc.success,
            "contact_priority": rc.contact_priority,
            "scope": rc.scope if rc.action == "callback" else None,
            "effects": list(rc.effects),
            "requires": requires(rc)} for rc in c.codes.values()],
    }


def campaigns(svc: Service, req: CampaignsReq, peer: Peer) -> Body:
    """``campaigns``: each campaign's settings and result codes (what an agent screen
    draws its buttons from)."""
    names = list(svc.engine.campaigns)
    if req.agent:
        s = svc.engine.agents.get(req.agent)
        names = [c for c in names if s and s.logged_in and c in s.campaigns]
    limit = svc.settings.daemon.max_count
    return {"campaigns": [_campaign_view(n, svc.engine.campaigns[n], limit) for n in names]}


def _campaign_stats(svc: Service, name: str, now: float) -> dict[str, Any]:
    eng = svc.engine
    q = eng.queues.get(name)
    if q is None:
        return {"configured": True, **dict.fromkeys(SLOTS, 0), "closed": {}}
    camp = eng.campaigns.get(name)
    eng.promote(name, now)
    zones = {}
    for tz, (is_open, until, _) in sorted(eng.zone_states(name, now).items()):
        if camp is not None:
            zones[tz] = {"open": is_open, "changes_at": calendar.utc_iso(until)
                         if until != float("inf") else None}
    return {"configured": camp is not None, "enabled": bool(camp and camp.enabled),
            **q.counts, "zones": zones,
            # reasons whose records were all reopened read as absent, as after a restart
            "closed": {k: v for k, v in q.closed.items() if v}}


def stats(svc: Service, req: StatsReq, peer: Peer) -> Body:
    """``stats``: open records by slot, closed by reason, zones, leases."""
    now = svc.clock()
    svc.expire(now)
    eng = svc.engine
    names = [req.campaign] if req.campaign else sorted(eng.queues)
    if req.campaign and req.campaign not in eng.queues:
        eng.campaign(req.campaign)
    out = {name: _campaign_stats(svc, name, now) for name in names}
    agents = [a for a, s in eng.agents.items() if s.logged_in]
    return {"campaigns": out, "leases": len(eng.leases), "agents_logged_in": len(agents),
            "records_in_memory": len(eng), "rebuild": svc.rebuild_stats}


def _span(req: CallbacksReq) -> tuple[float, float]:
    # bounds of a search, not times to schedule: any representable instant will do
    lo = calendar.resolve_local(req.from_, "UTC", field="from", bounded=False) \
        if req.from_ is not None else float("-inf")
    hi = calendar.resolve_local(req.to, "UTC", field="to", bounded=False) \
        if req.to is not None else float("inf")
    if lo > hi:
        raise BadRequest("from must not be after to", field="to")
    return lo, hi


def _picked(svc: Service, req: CallbacksReq, now: float
            ) -> tuple[list[tuple[float, int, Record, str]], dict[str, int]]:
    """The callbacks the request asks for, by due time, with counts by standing."""
    lo, hi = _span(req)
    states = set(req.states or CALLBACK_STATES)
    picked: list[tuple[float, int, Record, str]] = []
    counts = dict.fromkeys(CALLBACK_STATES, 0)
    login = svc.engine.agents.get(req.agent) if req.agent is not None else None
    for rid in svc.engine.callback_rids():
        rec = svc.engine.record(rid)
        if rec is None or rec.callback is None or not lo <= rec.due_at <= hi:
            continue
        if req.campaign is not None and rec.campaign != req.campaign:
            continue
        if req.team is not None and rec.team != req.team:
            continue
        if req.agent is not None and not sees_callback(req.agent, login, rec):
            continue
        camp = svc.engine.campaigns.get(rec.campaign)
        standing = callback_standing(rec.due_at, camp.grace_s if camp else 0, now,
                                     rec.callback.until)[0]
        if standing not in states:
            continue
        counts[standing] += 1
        picked.append((rec.due_at, rec.rid, rec, standing))
    picked.sort(key=lambda t: (t[0], t[1]))
    return picked, counts


def callbacks(svc: Service, req: CallbacksReq, peer: Peer) -> Body:
    """``callbacks``: the callback queue (upcoming, due, overdue), for an agent, a team
    or a campaign."""
    if peer.role == AGENT and req.agent is None:
        raise Forbidden("an agent sees its own and its teams' callbacks: give agent "
                        "(supervisors may list every callback)", field="agent")
    if req.campaign is not None:
        svc.engine.campaign(req.campaign)
    now = svc.clock()
    _span(req)
    svc.expire(now)
    picked, counts = _picked(svc, req, now)
    shown = picked[:req.limit]
    status = svc.reminder_status
    return {"now": calendar.utc_iso(now), "count": len(picked), "counts": counts,
            "truncated": len(picked) > len(shown),
            "callbacks": [views.callback_entry(rec, svc.engine.campaigns.get(rec.campaign),
                                               now, status(rec) if status else None)
                          for _, _, rec, _ in shown]}
