"""Hot reload of campaigns and result codes: what a new config would change, and applying
it atomically (one synchronous step on the event loop, so no request sees half of it).

Leases and records are kept. Windows, holidays, grace periods, max attempts and codes take
effect through the engine's lookups the moment the campaign objects are swapped; only a
change of scoring weights needs the due heaps rebuilt (O(n) per affected campaign).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import calendar
from .engine import Engine
from .model import Campaign

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
    #: ids of some records whose eligibility or order changes (filled by the caller from
    #: ``sample_rids``: pool records' ids live in the database)
    sample: list[str] = field(default_factory=list)
    leases_orphaned: int = 0
    sample_rids: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {k: v for k, v in self.__dict__.items() if k != "sample_rids"}


_SETTINGS = ("window", "legal_window", "holidays", "max_attempts", "lease_s", "grace_s",
             "timezone", "scoring", "enabled", "description", "max_count",
             "agent_schedule", "budgets")


def _open(camp: Campaign | None, tz_key: str, now: float, override: bool) -> bool:
    if camp is None or not camp.enabled:
        return False
    return calendar.window_state(camp, calendar.zone(tz_key), now, override)[0]


def _diff(a: Campaign | None, b: Campaign | None, name: str) -> CampaignChange:
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
    return ch


def _sample(ch: CampaignChange, rids: list[int]) -> None:
    room = SAMPLE - len(ch.sample_rids)
    if room > 0:
        ch.sample_rids.extend(rids[:room])


def plan(engine: Engine, new: dict[str, Campaign], now: float) -> list[CampaignChange]:
    """Every campaign's changes if ``new`` replaced the engine's campaigns now."""
    old = engine.campaigns
    out: dict[str, CampaignChange] = {}
    for name in sorted(set(old) | set(new) | set(engine.queues)):
        a, b = old.get(name), new.get(name)
        ch = out[name] = _diff(a, b, name)
        if ch.status == "unchanged" or name not in engine.queues:
            continue
        # due pool records change eligibility zone by zone
        for tz_key, (_, _, due) in engine.zone_states(name, now).items():
            if _open(a, tz_key, now, False) != _open(b, tz_key, now, False):
                ch.eligibility_changed += due
                _sample(ch, engine.due_rids(name, tz_key, SAMPLE))
        for rid in engine.due_callback_rids(name):
            rec = engine.record(rid)
            assert rec is not None
            override = bool(rec.callback and rec.callback.override_window)
            if _open(a, rec.timezone, now, override) != _open(b, rec.timezone, now, override):
                ch.eligibility_changed += 1
                _sample(ch, [rid])
        if a is not None and b is not None and a.scoring != b.scoring:
            rids, old_s, new_s = engine.scores(name, b.scoring)
            moved = rids[old_s != new_s]
            ch.order_changed += len(moved)
            _sample(ch, [int(r) for r in moved[:SAMPLE]])
    for lease in engine.leases.values():
        if lease.record.campaign not in new:
            out[lease.record.campaign].leases_orphaned += 1
    return list(out.values())


def apply(engine: Engine, new: dict[str, Campaign], now: float) -> None:
    """Swap in ``new`` campaigns; rebuild the due heaps of campaigns whose weights changed."""
    engine.apply_campaigns(new, now)

