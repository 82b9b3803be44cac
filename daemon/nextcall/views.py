"""The JSON views of records, leases and callbacks that answers carry.

One place for each shape, so ``next``, ``record.get``, ``resolution`` and ``callbacks``
show a record the same way. Times are rendered as UTC ISO seconds; the rendering of the
current second is cached, as most answers of a busy second share it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .core import calendar
from .core.engine import S_RESOLUTION, callback_standing
from .core.model import Campaign
from .core.records import LEASED, Lease, Record
from .core.windows import window_priority

_iso_cache: dict[int, str] = {}


def utc_iso(instant: float) -> str:
    """``calendar.utc_iso`` with a small cache of whole seconds."""
    sec = int(instant) if instant >= 0 else int(instant) - 1
    hit = _iso_cache.get(sec)
    if hit is None:
        if len(_iso_cache) > 4096:
            _iso_cache.clear()
        hit = _iso_cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))
    return hit


def record_view(rec: Record) -> dict[str, Any]:
    """A record as answers show it (``data`` embedded verbatim)."""
    return {
        "id": rec.id, "campaign": rec.campaign, "list": rec.list,
        "phones": [{"number": n, "status": s} for n, s in rec.phone_list()],
        "timezone": rec.timezone, "priority": rec.priority,
        "data": orjson.Fragment(rec.data) if rec.data is not None else None,
        "state": LEASED if rec.lease is not None else
        "resolution" if rec.slot == S_RESOLUTION else rec.state, "reason": rec.reason,
        "due_at": utc_iso(rec.due_at) if rec.due_at else None,
        "attempts": rec.attempts, "owner": rec.owner, "team": rec.team,
        "score": rec.score,
        "quote": None if rec.quote is None else {
            "value": rec.quote.value, "chance": rec.quote.chance,
            "expected_value": rec.quote.expected_value},
        "callback": rec.callback.to_json() if rec.callback else None,
    }


def lease_view(lease: Lease, now: float) -> dict[str, Any]:
    """A lease as ``next`` hands it out."""
    return {
        "token": lease.token, "expires_at": utc_iso(lease.expires_at),
        "expires_in_s": round(lease.expires_at - now, 3), "phone": lease.phone,
        "reason": lease.reason, "agent": lease.agent,
        "record": record_view(lease.record),
    }


def callback_entry(rec: Record, camp: Campaign | None, now: float,
                   reminder: dict[str, Any] | None) -> dict[str, Any]:
    """One line of the callback queue."""
    cb = rec.callback
    assert cb is not None
    standing, late_s = callback_standing(rec.due_at, camp.grace_s if camp else 0, now,
                                         cb.until)
    priority = cb.contact_priority if cb.until is None \
        else window_priority(cb.contact_priority, cb.at, cb.until, now)[0]
    return {
        "record": rec.id, "campaign": rec.campaign, "owner": rec.owner or None,
        "team": rec.team, "scope": cb.scope, "due_at": utc_iso(rec.due_at),
        "local": cb.local, "timezone": cb.timezone,
        "callee_local": calendar.local_iso(rec.due_at, rec.timezone),
        "callee_timezone": rec.timezone, "contact_priority": cb.contact_priority,
        "until": utc_iso(cb.until) if cb.until is not None else None,
        "until_local": cb.until_local or None, "priority_now": priority,
        "reason": cb.reason, "code": cb.code, "state": standing,
        "late_s": round(late_s, 3), "in_s": round(max(rec.due_at - now, 0.0), 3),
        "leased": rec.lease is not None,
        "leased_to": rec.lease.agent if rec.lease is not None else None,
        "reminder": reminder,
    }


def history_view(h: dict[str, Any], replaced_by: int | None = None) -> dict[str, Any]:
    """One contact-history row; ``replaced_by``: the entry of the amendment that replaced
    it (None: it is current)."""
    return {
        "entry": h.get("hid"), "lease": h.get("lid"),
        "at": calendar.utc_iso(h["at"]), "agent": h["agent"], "code": h["code"],
        "phone": h["phone"], "note": h["note"], "revenue": h["revenue"],
        "fields": orjson.loads(h["fields"]) if h["fields"] else {},
        "state": h["state"], "reason": h["reason"],
        "due_at": calendar.utc_iso(h["due_at"]) if h["due_at"] else None,
        "attempts": h["attempts"], "amends": h.get("amends"),
        "amend_reason": h.get("amend_reason"), "replaced_by": replaced_by}


def audit_view(x: dict[str, Any]) -> dict[str, Any] | None:
    """A lease row's audit facts (``core/audit.py``); None for leases from before they
    were kept."""
    if x.get("local_at") is None:
        return None
    return {"local_time": x["local_at"], "timezone": x["zone"],
            "calling_window": x["call_window"], "legal_window": x["legal_window"],
            "attempts": x["attempts"], "max_attempts": x["max_attempts"],
            "dnc_list_version": x["dnc_version"], "block_list_version": x["block_version"],
            "selection": x["reason"]}
