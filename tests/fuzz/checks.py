"""Invariants the fuzzers check: the shape of every answer, and the SQLite database read
directly (read-only) against what the daemon acknowledged.

Database invariants, each a method of ``Db`` returning the violations it found:

- a record has at most one live lease, and its leases follow one another: each is issued
  no earlier than the one before it ended (disposed, released) or ran out (its
  ``expires_at``, which ``extend`` moves);
- a record's ``attempts`` equals the dispositions in its history (rows with a lease; the
  rows of imports, reopenings and scheduled callbacks have none) since a ``roll`` last
  reset it, each in its latest version (a row an amendment replaced does not count);
- every acknowledged lease has its row, every acknowledged disposition its history row
  and its lease ended ``disposed`` with that code, every acknowledged release its lease
  ended ``released``;
- no lease has two current history rows (an amendment adds a row for the same lease,
  which replaces the one it ``amends``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nextcall.core import errors
from tests.fuzz.world import RESETS

EPS_S = 1e-6


def _codes(cls: type[errors.NextcallError]) -> set[str]:
    out = {cls.code}
    for sub in cls.__subclasses__():
        out |= _codes(sub)
    return out


#: every wire code a typed error may carry; ``internal`` is a bug by definition
WIRE_CODES = frozenset(_codes(errors.NextcallError) - {"internal"})


def answer_problem(msg: Any) -> str | None:
    """What is wrong with an answer's shape (None: nothing). An ``internal`` error is a
    problem; so is an unknown code or a field that is not a non-empty string."""
    if not isinstance(msg, dict) or msg.get("ok") not in (True, False):
        return "an answer without ok: true/false"
    if msg["ok"]:
        return None
    err = msg.get("error")
    if not isinstance(err, dict):
        return "a failure without an error object"
    code = err.get("code")
    if code == "internal":
        return "internal error"
    if code not in WIRE_CODES:
        return f"unknown error code {code!r}"
    if not isinstance(err.get("message"), str) or not err["message"]:
        return "an error without a message"
    field = err.get("field")
    if field is not None and (not isinstance(field, str) or not field):
        return f"an error field that is not a path: {field!r}"
    return None


def lid_of(token: Any) -> int | None:
    """The lease number of a token, when it has the ``<digits>.<secret>`` shape."""
    if not isinstance(token, str):
        return None
    head, dot, _ = token.partition(".")
    return int(head) if dot and head.isascii() and head.isdigit() else None


def _chunks(items: Sequence[Any], n: int = 400) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Db:
    """The daemon's SQLite database, opened read-only for each check (the daemon may be
    running: WAL readers see the last committed state and block nobody)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30,
                              isolation_level=None)
        con.execute("BEGIN")  # one snapshot for every query of the check
        return con

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        con = self._connect()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def _rows_for_ids(self, sql: str, ids: Iterable[str] | None) -> list[tuple[Any, ...]]:
        """``sql`` has a ``{where}`` slot filled with a filter on record ids (or none)."""
        if ids is None:
            return self._query(sql.format(where=""))
        out: list[tuple[Any, ...]] = []
        for part in _chunks(sorted(set(ids))):
            out += self._query(sql.format(where=f"WHERE r.id IN ({_marks(len(part))})"),
                               part)
        return out

    # ------------------------------------------------------------------ leases
    def lease_order(self, ids: Iterable[str] | None = None) -> list[str]:
        """Leases of one record follow one another; at most one is live."""
        rows = self._rows_for_ids(
            'SELECT r.id, l.lid, l.issued_at, l.expires_at, l.ended_at, l."end" '
            "FROM leases l JOIN records r ON r.rid = l.rid {where} ORDER BY l.rid, l.lid",
            ids)
        out = []
        prev: tuple[str, int, float] | None = None
        for rec, lid, issued, expires, ended, end in rows:
            if prev is not None and prev[0] == rec and issued < prev[2] - EPS_S:
                out.append(f"record {rec}: lease {lid} issued at {issued:.6f} while lease "
                           f"{prev[1]} held it until {prev[2]:.6f}")
            if end == "expired" and ended < expires - EPS_S:
                out.append(f"record {rec}: lease {lid} ended as expired at {ended:.6f}, "
                           f"before its expiry {expires:.6f}")
            until = ended if end in ("disposed", "released") else expires
            prev = (rec, lid, until)
        return out

    def live_counts(self, t0: float, t1: float) -> tuple[int, int]:
        """Leases live (not disposed or released) past ``t1``, and past ``t0``: a count
        taken between the two instants lies between them."""
        sql = ('SELECT count(*) FROM leases WHERE ("end" IS NULL OR "end" = \'expired\') '
               "AND expires_at > ?")
        return self._query(sql, (t1,))[0][0], self._query(sql, (t0,))[0][0]

    # ------------------------------------------------------------------ history
    def attempts(self, ids: Iterable[str] | None = None) -> list[str]:
        """``attempts`` equals the dispositions since the last reset."""
        resets = ",".join(f"'{c}'" for c in sorted(RESETS))
        rows = self._rows_for_ids(
            "SELECT r.id, r.attempts, (SELECT count(*) FROM history h WHERE h.rid = r.rid "
            f"AND h.lid IS NOT NULL AND {_current('h')} AND h.hid > coalesce((SELECT "
            "max(x.hid) FROM history x WHERE x.rid = r.rid AND x.lid IS NOT NULL AND "
            f"{_current('x')} AND x.code IN ({resets})), 0)) "
            "FROM records r {where}", ids)
        return [f"record {rec}: attempts {att} but {n} dispositions in its history"
                for rec, att, n in rows if att != n]

    def history_unique(self) -> list[str]:
        """No lease has two current history rows."""
        rows = self._query("SELECT lid, count(*) FROM history h WHERE lid IS NOT NULL "
                           f"AND {_current('h')} GROUP BY lid HAVING count(*) > 1")
        return [f"lease {lid}: {n} history rows" for lid, n in rows]

    # ------------------------------------------------------------------ acknowledged
    def _leases(self, lids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        out: dict[int, tuple[Any, ...]] = {}
        for part in _chunks(sorted(set(lids))):
            rows = self._query(
                'SELECT l.lid, r.id, l."end", l.code, (SELECT count(*) FROM history h '
                f"WHERE h.rid = l.rid AND h.lid = l.lid AND {_current('h')}) "
                "FROM leases l LEFT JOIN records r "
                f"ON r.rid = l.rid WHERE l.lid IN ({_marks(len(part))})", part)
            out.update((row[0], row) for row in rows)
        return out

    def acknowledged(self, leased: Sequence[tuple[int, str]],
                     disposed: Sequence[tuple[int, str, str]],
                     released: Sequence[tuple[int, str]]) -> list[str]:
        """Every acknowledged lease, disposition and release is in the database."""
        rows = self._leases([x[0] for x in (*leased, *disposed, *released)])
        out = []
        for lid, rec in leased:
            row = rows.get(lid)
            if row is None or row[1] != rec:
                out.append(f"acknowledged lease {lid} of {rec} lost: row {row}")
        for lid, rec, code in disposed:
            row = rows.get(lid)
            if row is None or row[1:] != (rec, "disposed", code, 1):
                out.append(f"acknowledged disposition {lid} of {rec} with {code} lost: "
                           f"lease row and history count {row}")
        for lid, rec in released:
            row = rows.get(lid)
            if row is None or row[1:3] != (rec, "released"):
                out.append(f"acknowledged release {lid} of {rec} lost: row {row}")
        return out

    def record_count(self) -> int:
        """How many records the database holds."""
        return int(self._query("SELECT count(*) FROM records")[0][0])


def _current(alias: str) -> str:
    """SQL: history row ``alias`` is current (no amendment replaced it)."""
    return f"NOT EXISTS (SELECT 1 FROM history a WHERE a.amends = {alias}.hid)"
