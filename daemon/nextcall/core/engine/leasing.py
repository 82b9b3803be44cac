"""Leases: handing a record out, expiry, release, extension, disposition, and the memory
of ended leases that makes retried requests idempotent.

``Leasing`` is the third link of the engine's class chain (see ``base``). A leased record
sits in no heap; ending its lease places it again.
"""

from __future__ import annotations

import heapq

from ..audit import LeaseAudit, audit_of
from ..records import READY, Lease, Record
from ..results import Outcome
from .columns import INF, N_LEASED, N_NONE, S_LEASED, SLOT_NAMES, ST_READY
from .placement import Placement
from .tokens import ENDED_MEMORY, EndedLease, parse_token


class Leasing(Placement):
    """Lease life cycle (see the module docstring)."""

    def lease(self, rid: int, agent: str, uid: int, reason: str, now: float,
              lease_s: float) -> Lease:
        """Hand record ``rid`` to ``agent`` until ``now + lease_s``."""
        picked = self.callable_phone(rid)
        idx, phone = picked if picked is not None else (0, "")
        rec = self.record(rid)
        assert rec is not None
        lid = self.next_lid
        self.next_lid += 1
        lease = Lease(lid, self._secret(), rec, agent, uid, now, now + lease_s, phone, idx,
                      reason, self._audit(rec, now))
        self._attach(lease)
        return lease

    def _audit(self, rec: Record, now: float) -> LeaseAudit | None:
        """The facts that allow handing ``rec`` out at ``now`` (``core/audit.py``)."""
        camp = self.campaigns.get(rec.campaign)
        if camp is None:
            return None
        cb = rec.callback
        return audit_of(camp, rec.timezone, now, rec.attempts,
                        bool(cb is not None and cb.override_window), self.list_versions)

    def _attach(self, lease: Lease) -> None:
        rec = lease.record
        rid = rec.rid
        self._bump(rid)
        rec.lease = lease
        rec.slot = S_LEASED
        self._set_slot(rid, self._q(self._camp_names[self.c_camp[rid]]), N_LEASED)
        self.leases[lease.lid] = lease
        self._lease_of[rid] = lease.lid
        self._push_expiry(lease)

    def _push_expiry(self, lease: Lease) -> None:
        exp = self.lease_expiry
        heapq.heappush(exp, (lease.expires_at, lease.lid, lease.ver))
        if len(exp) > 2 * len(self.leases) + 1024:
            # entries of leases disposed long before their expiry would pile up for a
            # whole lease length (millions at full speed): keep the live ones only
            self.lease_expiry = [(lz.expires_at, lz.lid, lz.ver) for lz in self.leases.values()]
            heapq.heapify(self.lease_expiry)

    def restore_lease(self, lease: Lease) -> None:
        """Rebuild: re-attach a persisted unexpired lease to its open record."""
        self.next_lid = max(self.next_lid, lease.lid + 1)
        self._attach(lease)

    def find_lease(self, token: str) -> tuple[int, str]:
        """Split a token into (lid, secret).

        Raises:
            BadRequest: malformed token, or a lease number out of range.
        """
        return parse_token(token)

    def _end(self, lease: Lease, kind: str, result: bytes | None = None,
             code: str | None = None) -> None:
        del self.leases[lease.lid]
        lease.ver += 1
        rec = lease.record
        rec.lease = None
        rid = rec.rid
        self._lease_of.pop(rid, None)
        self._set_slot(rid, self._q(self._camp_names[self.c_camp[rid]]), N_NONE)
        self.ended[lease.lid] = EndedLease(lease.secret, kind, result, code)
        if len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)

    def release(self, lease: Lease, now: float) -> None:
        """Give the record back unchanged."""
        self._end(lease, "released")
        self._place(lease.record.rid, now)

    def extend(self, lease: Lease, now: float, lease_s: float) -> None:
        """Renew the lease to ``now + lease_s``."""
        lease.expires_at = now + lease_s
        lease.ver += 1
        self._push_expiry(lease)

    def dispose(self, lease: Lease, outcome: Outcome, now: float, result: bytes,
                code: str) -> Record:
        """Apply a decided outcome and end the lease; returns the record's new value."""
        rec = lease.record
        self._end(lease, "disposed", result, code)
        rid = rec.rid
        if outcome.quote is not None:
            rec.quote = self.quotes[rid] = outcome.quote
        if outcome.state == READY and self.c_state[rid] == ST_READY and outcome.phones is None \
                and outcome.campaign is None and not outcome.listed:
            # the common case (a retry): only the scheduling columns change
            rec.due_at, rec.attempts = outcome.due_at, outcome.attempts
            rec.best_cp, rec.phone_idx, rec.team = outcome.best_cp, outcome.phone_idx, \
                outcome.team
            self.c_due[rid] = outcome.due_at
            self.c_att[rid] = min(outcome.attempts, 0xFFFFFFFF)
            self.c_bcp[rid] = outcome.best_cp
            self.c_pidx[rid] = outcome.phone_idx
            self.rescore(rid)
            self._place(rid, now)
            rec.score = self.c_score[rid]
            rec.slot = SLOT_NAMES[self.c_slot[rid]]
            return rec
        rec.state = outcome.state
        rec.reason = outcome.reason
        rec.due_at = outcome.due_at
        rec.attempts = outcome.attempts
        rec.owner = outcome.owner
        rec.team = outcome.team
        rec.best_cp = outcome.best_cp
        rec.phone_idx = outcome.phone_idx
        rec.callback = outcome.callback
        if outcome.phones is not None:
            rec.phones = outcome.phones
        if outcome.campaign is not None:
            rec.campaign = outcome.campaign
            rec.list = outcome.list_name or rec.list
        for number, which in outcome.listed:
            self.add_listed(number, which)
            self._withdraw_number(number)
        self._apply(rec, now)
        return rec

    def shift_leases(self, step: float) -> list[Lease]:
        """Move every live lease's expiry by ``step`` seconds (the wall clock was set by
        ``step``: each lease keeps the time it had left); returns them."""
        leases = list(self.leases.values())
        for lz in leases:
            lz.expires_at += step
        self.lease_expiry = [(lz.expires_at, lz.lid, lz.ver) for lz in leases]
        heapq.heapify(self.lease_expiry)
        return leases

    def expire(self, now: float) -> list[Lease]:
        """End every lease whose time is up; their records go back unchanged."""
        out = []
        exp = self.lease_expiry
        while exp and exp[0][0] <= now:
            _, lid, ver = heapq.heappop(exp)
            lease = self.leases.get(lid)
            if lease is None or lease.ver != ver:
                continue
            self._end(lease, "expired")
            self._place(lease.record.rid, now)
            out.append(lease)
        return out

    def expiry_due(self, now: float) -> bool:
        """Whether a lease-expiry entry (maybe a stale one) is due at ``now``."""
        exp = self.lease_expiry
        return bool(exp) and exp[0][0] <= now

    def next_expiry(self) -> float:
        """When the earliest live lease runs out (inf when none)."""
        exp = self.lease_expiry
        while exp:
            at, lid, ver = exp[0]
            lease = self.leases.get(lid)
            if lease is not None and lease.ver == ver:
                return at
            heapq.heappop(exp)
        return INF
