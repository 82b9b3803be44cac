"""The ops of the protocol: one registry that the decoder and the dispatcher both read.

Each entry names the op's request model (``protocol.py``), its handler, the least role
that may send it, how it runs (``ops/base.py``: ``sync``, ``deferred``, ``async``) and
the field naming the agent it acts as, if any (checked against the agent bindings).
Handlers live by concern:

- ``leases.py``: next, dispose, release, extend (the call cycle)
- ``agents.py``: agent.login, agent.logout, subscribe
- ``records.py``: record.get, record.reopen, callback.schedule, resolution
- ``imports.py``: records.import
- ``queries.py``: ping, campaigns, stats, callbacks
- ``listing.py``: records (a campaign's records by state, last result, ...)
- ``admin.py``: config.reload
- ``explain.py``: explain (why a record or a campaign is not handed out)
- ``amend.py``: amend (replace a committed disposition)
- ``reports.py``: report

Adding an op: its request model in ``protocol.py``, its handler in one of these modules,
a line below, a command in the CLI, and its section in docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..roles import ADMIN, AGENT, RANK, SUPERVISOR, Peer, may_act_as, require
from . import admin, agents, amend, explain, imports, leases, listing, queries, records, reports
from .base import ASYNC, DEFERRED, SYNC, Body, OpSpec, Reply

if TYPE_CHECKING:
    from ..service import Service

#: runs a coroutine handler as a task whose result (or error) answers the reply
Runner = Callable[[Coroutine[Any, Any, Body], Any], None]

#: the field that names the agent a request acts as (``OpSpec.agent_field``)
AS = "agent"

REGISTRY: dict[str, OpSpec] = {spec.name: spec for spec in (
    OpSpec("ping", queries.PingReq, queries.ping, AGENT, SYNC),
    OpSpec("campaigns", queries.CampaignsReq, queries.campaigns, AGENT, SYNC, AS),
    OpSpec("agent.login", agents.LoginReq, agents.login, AGENT, DEFERRED, AS),
    OpSpec("agent.logout", agents.LogoutReq, agents.logout, AGENT, DEFERRED, AS),
    OpSpec("next", leases.NextReq, leases.next_, AGENT, DEFERRED, AS),
    # and the lease's own agent, once the handler has found the lease (``live_lease``)
    OpSpec("dispose", leases.DisposeReq, leases.dispose, AGENT, DEFERRED, AS),
    OpSpec("release", leases.LeaseReq, leases.release, AGENT, DEFERRED, AS),
    OpSpec("extend", leases.ExtendReq, leases.extend, AGENT, DEFERRED, AS),
    OpSpec("record.get", records.RecordGetReq, records.get, AGENT, ASYNC),
    OpSpec("records.import", imports.ImportReq, imports.import_, SUPERVISOR, ASYNC),
    OpSpec("stats", queries.StatsReq, queries.stats, AGENT, SYNC),
    OpSpec("config.reload", admin.ReloadReq, admin.reload, ADMIN, SYNC),
    # and, for a closed record, a role its closing code names (``ops.permits``)
    OpSpec("record.reopen", records.ReopenReq, records.reopen, SUPERVISOR, ASYNC),
    # an agent-role peer only as described in ``ops.permits``
    OpSpec("callback.schedule", records.ScheduleReq, records.schedule, AGENT, ASYNC, AS),
    OpSpec("resolution", records.ResolutionReq, records.resolution, AGENT, ASYNC),
    OpSpec("callbacks", queries.CallbacksReq, queries.callbacks, AGENT, SYNC, AS),
    OpSpec("subscribe", agents.SubscribeReq, agents.subscribe, AGENT, SYNC, AS),
    OpSpec("records", listing.RecordsReq, listing.records, SUPERVISOR, ASYNC),
    # a campaign's needs the supervisor role; a record's, what record.get needs
    OpSpec("explain", explain.ExplainReq, explain.explain, AGENT, ASYNC, AS),
    # an agent-role peer only its own dispositions, within amend_grace_s (``ops.amend``)
    OpSpec("amend", amend.AmendReq, amend.amend, AGENT, ASYNC, AS),
    # ``agent`` is a filter there; the binding check passes supervisors and admins
    OpSpec("report", reports.ReportReq, reports.report, SUPERVISOR, ASYNC, AS),
)}

#: request models by op name, for the decoder
MODELS = {name: spec.model for name, spec in REGISTRY.items()}



def dispatch(svc: Service, spec: OpSpec, req: BaseModel, peer: Peer, reply: Reply,
             run: Runner) -> None:
    """Run one decoded request's handler, once the leases whose time is up have ended;
    exactly one answer goes to ``reply``, now or later. Typed errors raised before the
    answer propagate to the caller.

    Raises:
        NextcallError: the peer's role is too low, it may not act as the agent the
            request names, or the handler refused at once.
    """
    if RANK[peer.role] < RANK[spec.role]:
        require(peer, spec.role, spec.name)
    if spec.agent_field is not None and svc.settings.bindings is not None:
        agent = getattr(req, spec.agent_field)
        if agent is not None:
            may_act_as(peer, agent, svc.settings.bindings, spec.agent_field)
    # every op sees the leases as of its own instant: the ones past it end first, so no
    # handler can forget to (those that await call ``svc.expire`` again after)
    svc.expire(svc.clock())
    kind = spec.kind
    if kind is DEFERRED:
        pending = spec.handler(svc, req, peer, reply)
        if pending is not None:
            run(pending, reply)
    elif kind is SYNC:
        reply(spec.handler(svc, req, peer))
    else:
        run(spec.handler(svc, req, peer), reply)


__all__ = ["ASYNC", "DEFERRED", "MODELS", "REGISTRY", "SYNC", "OpSpec", "dispatch"]
