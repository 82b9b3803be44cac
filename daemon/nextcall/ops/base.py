"""What every op handler module shares: answer types, the registry entry, record filling.

Kept apart from ``service.py`` so that handler modules import no daemon state at import
time (``service.py`` imports the long-poll and import-staging helpers from ``ops/``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .. import views
from ..core.changes import Change
from ..core.errors import NextcallError, Unavailable
from ..core.records import Lease, Record
from ..storage.base import Fetched

if TYPE_CHECKING:
    from ..service import Service

Body = dict[str, Any]
#: answers a request: a body, an error, or a body already encoded as JSON bytes
Reply = Callable[[Body | bytes | NextcallError], None]

#: answers at once from memory: ``handler(service, request, peer) -> Body``
SYNC = "sync"
#: changes the engine at once and answers from the commit's callback:
#: ``handler(service, request, peer, reply) -> None`` (or a coroutine to run as a task,
#: for the rare request that must read the database first)
DEFERRED = "deferred"
#: reads the database first and runs as a task: ``async handler(service, request, peer)``
ASYNC = "async"


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One op of the protocol: how its request is checked, who may send it, who runs it."""

    name: str
    model: type[BaseModel]
    handler: Callable[..., Any]
    #: the least role that may send it (finer rules stay in the handler)
    role: str
    kind: str
    #: the request field naming the agent the peer acts as, checked against the agent
    #: bindings before the handler runs (``roles.may_act_as``)
    agent_field: str | None = None


def fill_record(rec: Record, payload: tuple[str, str, str, str | None] | None) -> None:
    """Complete a record value with the fields kept only in the database."""
    if payload is not None:
        rec.id, rec.list, rec.data = payload[0], payload[1], payload[2]
        if rec.team is None:
            rec.team = payload[3]


def hand_out(svc: Service, leases: list[Lease], changes: list[Change], now: float,
             reply: Reply, t0: float) -> None:
    """Commit ``leases`` (reading their records' stored fields in the same transaction),
    then answer the ``next`` that took them."""
    def done(result: Fetched | BaseException) -> None:
        if isinstance(result, BaseException):
            reply(Unavailable(str(result)))
            return
        for lz in leases:
            fill_record(lz.record, result.get(lz.record.rid))
        svc.observer.next_answered(time.perf_counter() - t0, leases)
        reply({"leases": [views.lease_view(lz, now) for lz in leases]})
    svc.store.submit(changes, done, [lz.record.rid for lz in leases])
    # leases of several campaigns may have different lengths: the earliest counts
    svc.arm_expiry(leases[0].expires_at if len(leases) == 1
                   else min(lz.expires_at for lz in leases))
