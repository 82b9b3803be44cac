"""The engine: every open record as columns, the priority structures, and who gets what next.

Memory is what makes a million-record heap affordable, so a record is not an object here.
Its scheduling fields live in typed arrays indexed by its record number (``rid``): about
45 bytes a record. Only what selection needs is kept: campaign, timezone, priority, due
time, attempts, best contact priority, the number to dial (as an integer, or a JSON list
for records with several numbers or non-active ones), state and slot. Free data, the
record's id and list stay in the database and are read when the record is handed out.
Callback and appointment records (few) also keep an ``Extra`` with id, owner, team and the
callback's intent. Each campaign's heaps are a ``Queues`` (``queues`` describes them).

``Engine`` is one object built as a chain of classes, one concern each, every one calling
only itself and its ancestors:

- ``base.EngineBase``: the columns, campaign and zone indexes, numbers, lists, views;
- ``placement.Placement``: zone heads, placing, promoting and storing records;
- ``leasing.Leasing``: lease, release, extend, dispose, expire, ended leases;
- ``budgeting.Budgeting``: attempt counts and records held back by attempt budgets;
- ``selection.Selection``: logins, ``select``, ``next``, ``next_wake``;
- ``loading.Loading``: the rebuild's bulk load;
- ``explaining.Explaining``: why a record or a campaign is not handed out (read-only);
- ``admin.Engine``: campaign swaps on reload, read-outs, the consistency check.

Helpers: ``columns`` (column table, slot and state codes), ``queues``, ``agents``,
``tokens`` (lease secrets, ended leases), ``groups`` (the rebuild's input), ``callbacks``.
Only the event-loop thread calls the engine and nothing here awaits, so no locks.
"""

from .admin import Engine
from .agents import AgentSession
from .callbacks import callback_standing
from .columns import (
                      INF,
                      S_BUDGET,
                      S_CB_DORMANT,
                      S_CB_DUE,
                      S_DORMANT,
                      S_DUE,
                      S_HELD,
                      S_LEASED,
                      S_NO_NUMBER,
                      S_RESOLUTION,
                      SLOT_NAMES,
                      SLOTS,
                      STATE_NAMES,
                      phone_int,
                      score_of,
)
from .explaining import (
    BLOCKERS,
    REASONS,
    Blocker,
    CampaignFacts,
    RecordFacts,
    WindowFacts,
    blocked_gauges,
)
from .groups import ReadyGroup, ready_groups, ready_quotes
from .queues import Extra, Queues
from .tokens import ENDED_MEMORY, EndedLease, Secrets

__all__ = [
    "BLOCKERS", "ENDED_MEMORY", "REASONS", "Blocker", "CampaignFacts", "RecordFacts",
    "WindowFacts", "blocked_gauges", "INF", "SLOTS", "SLOT_NAMES", "STATE_NAMES",
    "S_BUDGET", "S_CB_DORMANT", "S_CB_DUE",
    "S_DORMANT", "S_DUE", "S_HELD", "S_LEASED", "S_NO_NUMBER", "S_RESOLUTION", "AgentSession",
    "EndedLease", "Engine", "Extra", "Queues", "ReadyGroup", "Secrets", "callback_standing",
    "phone_int", "ready_groups", "ready_quotes", "score_of",
]
