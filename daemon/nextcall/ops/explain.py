"""``explain``: why a record is or is not handed out now, and why a campaign hands out
nothing. The facts come from the engine (``core/engine/explaining.py``), which reads the
predicates selection uses; this module only finds the record, checks who may ask, and
shapes the answer.

A record's explain reads its stored row (its id names it; the engine keeps numbers), so
the op runs as a task. A campaign's needs the supervisor role: it describes everyone's
work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ..core import calendar
from ..core.engine import CampaignFacts, RecordFacts, WindowFacts
from ..core.errors import BadRequest
from ..protocol import Name, Request
from ..roles import SUPERVISOR, Peer, may_read_record, require
from .base import Body
from .records import _row

if TYPE_CHECKING:
    from ..service import Service

INF = float("inf")


class ExplainReq(Request):
    """``explain``: one record (``record``) or one campaign (``campaign``); ``agent``:
    as seen by that agent (its own callbacks, its teams')."""

    record: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    campaign: Name | None = None
    agent: Name | None = None


def _iso(t: float | None) -> str | None:
    return None if t is None or t == INF else calendar.utc_iso(t)


def _window(w: WindowFacts) -> dict[str, Any]:
    return {"open": w.open, "until": _iso(w.until), "next_open": _iso(w.next_open)}


def record_view(f: RecordFacts, record_id: str, agent: str | None, now: float,
                legal: str) -> dict[str, Any]:
    """The wire form of one record's explanation."""
    lz = f.lease
    cb = f.callback
    return {
        "record": record_id, "campaign": f.campaign, "agent": agent,
        "now": calendar.utc_iso(now), "state": f.state, "slot": f.slot,
        "timezone": f.timezone, "local_time": calendar.local_iso(now, f.timezone),
        # 0: due at once, never scheduled (as ``record.get`` shows it)
        "due_at": _iso(f.due_at) if f.due_at else None,
        "due_local": calendar.local_iso(f.due_at, f.timezone) if f.due_at else None,
        "window": _window(f.window), "legal_window": {"hours": legal, **_window(f.legal)},
        "attempts": {"made": f.attempts, "max": f.max_attempts},
        "numbers": [{"number": n, "status": st, "list": listed, "dialable": ok,
                     "next": n == f.next_number} for n, st, listed, ok in f.numbers],
        "lease": None if lz is None else {"agent": lz.agent, "lease": lz.lid,
                                          "expires_at": _iso(lz.expires_at)},
        "callback": None if cb is None else {
            "owner": f.owner, "team": f.team, "scope": cb.scope,
            "override_window": cb.override_window, "grace_ends": _iso(f.grace_end)},
        "blockers": [{"reason": b.reason, "detail": b.detail, "until": _iso(b.until)}
                     for b in f.blockers],
        "eligible": not f.blockers, "eligible_at": _iso(f.eligible_at),
        "eligible_for": f.eligible_for,
    }


async def _explain_record(svc: Service, req: ExplainReq, peer: Peer, record_id: str
                          ) -> Body:
    row = await _row(svc, record_id)
    may_read_record(peer, row["leases"], svc.settings.auth, svc.settings.bindings)
    now = svc.clock()
    svc.expire(now)
    r = row["record"]
    facts = svc.engine.explain_record(r["rid"], req.agent, now)
    if facts is None:
        return {"explain": {
            "record": record_id, "campaign": r["campaign"], "agent": req.agent,
            "now": calendar.utc_iso(now), "state": "closed", "slot": "",
            "blockers": [{"reason": "closed", "until": None,
                          "detail": f"closed ({r.get('reason') or 'final'}); only a "
                                    "reopen brings it back"}],
            "eligible": False, "eligible_at": None, "eligible_for": []}}
    camp = svc.engine.campaigns.get(facts.campaign)
    legal = str(camp.legal_window) if camp is not None else ""
    return {"explain": record_view(facts, record_id, req.agent, now, legal)}


async def _campaign_view(svc: Service, f: CampaignFacts, agent: str | None, now: float
                         ) -> dict[str, Any]:
    nxt = None
    if f.next_rid is not None and f.next_at is not None:
        got = await svc.store.payloads([f.next_rid])
        payload = got.get(f.next_rid)
        nxt = {"at": _iso(f.next_at), "record": payload[0] if payload else None,
               "reason": f.next_reason}
    return {"campaign": f.name, "agent": agent, "now": calendar.utc_iso(now),
            "enabled": f.enabled, "open": f.open,
            "available": {"pool": f.available_pool, "callbacks": f.available_callbacks},
            "blocked": dict(f.blocked), "gauges": dict(f.gauges), "next": nxt}


async def explain(svc: Service, req: ExplainReq, peer: Peer) -> Body:
    """``explain``: a record's blockers and next eligible instant, or a campaign's open
    records counted by what holds them back."""
    if (req.record is None) == (req.campaign is None):
        raise BadRequest("give record or campaign (one of them)", field="record")
    if req.record is not None:
        return await _explain_record(svc, req, peer, req.record)
    require(peer, SUPERVISOR, "explain of a campaign")
    assert req.campaign is not None
    now = svc.clock()
    svc.expire(now)
    facts = svc.engine.explain_campaign(req.campaign, req.agent, now)
    return {"explain": await _campaign_view(svc, facts, req.agent, now)}
