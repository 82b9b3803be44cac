"""Hot reload of campaigns and result codes: what a new config would change, and applying
it atomically (one synchronous step on the event loop, so no request sees half of it).

Leases and records are kept. Windows, holidays, grace periods, max attempts and codes take
effect through the engine's lookups the moment the campaign objects are swapped; only a
change of scoring weights needs the due heaps rebuilt (O(n) per affected campaign).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from . import calendar
from .engine import S_CB_DUE, S_DUE, Engine
from .model import Campaign
from .records import Record
from .scoring import address_score

SAMPLE = 20


@dataclass
class CampaignChange:
    """What changes for one campaign."""

    campaign: str
    status: str  # added | removed | changed | unchanged
    settings: list[str] = field(default_factory=list)
    codes_added: list[str] = field(default_factory=list)
    codes_removed: list[str] = field(default_factory=list)
    codes_changed: list[str] = field(default_factory=list)
    eligibility_changed: int = 0
    order_changed: int = 0
    sample: list[str] = field(default_factory=list)
    leases_orphaned: int = 0

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {k: v for k, v in self.__dict__.items()}


_SETTINGS = ("window", "legal_window", "holidays", "max_attempts", "lease_s", "grace_s",
             "timezone", "scoring", "enabled", "description")


def _eligible(camp: Campaign | None, rec: Record, now: float,
              cache: dict[tuple[int, str, bool], bool]) -> bool:
    if camp is None or not camp.enabled:
        return False
    override = bool(rec.slot == S_CB_DUE and rec.callback and rec.callback.override_window)
    key = (id(camp), rec.timezone, override)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = calendar.window_state(camp, calendar.zone(rec.timezone), now,
                                                 override)[0]
    return hit


def plan(engine: Engine, new: dict[str, Campaign], now: float) -> list[CampaignChange]:
    """Every campaign's changes if ``new`` replaced the engine's campaigns now."""
    old = engine.campaigns
    out: dict[str, CampaignChange] = {}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        ch = CampaignChange(name, "added" if a is None else "removed" if b is None
                            else "unchanged")
        if a is not None and b is not None:
            ch.settings = [k for k in _SETTINGS if getattr(a, k) != getattr(b, k)]
            ch.codes_added = sorted(set(b.codes) - set(a.codes))
            ch.codes_removed = sorted(set(a.codes) - set(b.codes))
            ch.codes_changed = sorted(c for c in set(a.codes) & set(b.codes)
                                      if a.codes[c] != b.codes[c])
            if ch.settings or ch.codes_added or ch.codes_removed or ch.codes_changed:
                ch.status = "changed"
        out[name] = ch
    cache_old: dict[tuple[int, str, bool], bool] = {}
    cache_new: dict[tuple[int, str, bool], bool] = {}
    for rec in engine.records.values():
        got = out.get(rec.campaign)
        if got is None or got.status == "unchanged":
            continue
        ch = got
        a, b = old.get(rec.campaign), new.get(rec.campaign)
        moved = False
        if rec.slot in (S_DUE, S_CB_DUE):
            moved = _eligible(a, rec, now, cache_old) != _eligible(b, rec, now, cache_new)
            if moved:
                ch.eligibility_changed += 1
        if b is not None and a is not None and a.scoring != b.scoring:
            if address_score(b.scoring, rec.priority, rec.best_cp, rec.attempts) != rec.score:
                ch.order_changed += 1
                moved = True
        if moved and len(ch.sample) < SAMPLE:
            ch.sample.append(rec.id)
    for lease in engine.leases.values():
        if lease.record.campaign not in new:
            out[lease.record.campaign].leases_orphaned += 1
    return list(out.values())


def apply(engine: Engine, new: dict[str, Campaign], now: float) -> None:
    """Swap in ``new`` campaigns; rebuild the due heaps of campaigns whose weights changed."""
    old = engine.campaigns
    engine.campaigns = new
    engine._windows.clear()
    rescored = set()
    for name, camp in new.items():
        engine._q(name)
        prev = old.get(name)
        if prev is None or prev.scoring != camp.scoring:
            rescored.add(name)
    if not rescored:
        return
    for rec in engine.records.values():
        if rec.campaign in rescored:
            engine.rescore(rec)
    for name in rescored:
        q = engine.queues[name]
        for tz_key, heap in q.zones.items():
            fresh = [(-e[-1].score, e[1], e[2], e[3], e[-1]) for e in heap
                     if e[-1].ver == e[-2] and e[-1].slot == S_DUE]
            heapq.heapify(fresh)
            q.zones[tz_key] = fresh
