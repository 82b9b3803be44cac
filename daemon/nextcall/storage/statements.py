"""The write statements of the hot path, and the ops that carry them to the writer.

An op is ``(Stmt, params)`` with ``params`` a tuple in the statement's column order: the
writer hands runs of ops with the same statement to the driver's ``executemany`` as they
are, so no per-row work happens in Python between the request and the database. The SQL
is written once here and rendered for each dialect's placeholder style (``?`` for
SQLite, ``$n`` for PostgreSQL); identifiers are quoted (``end`` is a keyword).

Nothing outside ``storage/`` builds SQL or knows a column order: callers use the
functions below, which take domain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..core.records import CallbackIntent, Lease, Record


@dataclass(frozen=True, slots=True)
class Stmt:
    """One parameterised statement; ``sql`` has ``{}`` where the placeholders go.

    Inserts and single-key updates also carry their table, columns and key, from which
    the PostgreSQL writer builds a set-based form (``unnest`` of one array per column) to
    apply a whole batch in one statement.
    """

    name: str
    sql: str
    arity: int
    table: str = ""
    cols: tuple[str, ...] = ()
    #: the WHERE column of an update (its value is the last parameter); None: an insert
    key: str | None = None

    def render(self, dialect: str) -> str:
        """The SQL with the dialect's placeholders."""
        if dialect == "sqlite":
            return self.sql.format(*["?"] * self.arity)
        return self.sql.format(*[f"${i}" for i in range(1, self.arity + 1)])


Op = tuple[Stmt, tuple[Any, ...]]


def _q(name: str) -> str:
    return f'"{name}"'


def _insert(table: str, cols: tuple[str, ...]) -> Stmt:
    return Stmt(f"insert {table}", f"INSERT INTO {table} ({', '.join(map(_q, cols))}) "
                f"VALUES ({', '.join('{}' for _ in cols)})", len(cols), table, cols)


def _update(table: str, cols: tuple[str, ...], key: str) -> Stmt:
    sets = ", ".join(f"{_q(c)} = {{}}" for c in cols)
    return Stmt(f"update {table}", f"UPDATE {table} SET {sets} WHERE {_q(key)} = {{}}",
                len(cols) + 1, table, cols, key)


#: PostgreSQL types of the columns the set-based forms bind as arrays
PG_TYPES = {
    "lid": "bigint", "rid": "bigint", "secret": "text", "agent": "text", "uid": "int",
    "issued_at": "float8", "expires_at": "float8", "phone": "text", "phone_idx": "int",
    "reason": "text", "ended_at": "float8", "end": "text", "code": "text", "result": "text",
    "at": "float8", "campaign": "text", "note": "text", "revenue": "float8",
    "fields": "text", "callback": "text", "state": "text", "due_at": "float8",
    "attempts": "int", "owner": "text", "team": "text", "best_cp": "int",
    "updated_at": "float8", "phones": "text", "list": "text",
}


def pg_set_based(stmt: Stmt, first: int) -> str | None:
    """``stmt`` over arrays ``$first``... (one per column, the key last for an update), as
    a data-modifying statement; None when it has no such form."""
    if not stmt.table or any(c not in PG_TYPES for c in stmt.cols):
        return None
    cols = (*stmt.cols, stmt.key) if stmt.key else stmt.cols
    args = ", ".join(f"${first + i}::{PG_TYPES[c]}[]" for i, c in enumerate(cols))
    if stmt.key is None:
        return f"INSERT INTO {stmt.table} ({', '.join(map(_q, cols))}) SELECT * FROM unnest({args})"
    names = [f"c{i}" for i in range(len(cols))]
    sets = ", ".join(f"{_q(c)} = u.{n}" for c, n in zip(stmt.cols, names, strict=False))
    return (f"UPDATE {stmt.table} SET {sets} FROM unnest({args}) AS u({', '.join(names)}) "
            f"WHERE {stmt.table}.{_q(stmt.key)} = u.{names[-1]}")


LEASE_COLS = ("lid", "secret", "rid", "agent", "uid", "issued_at", "expires_at", "phone",
              "phone_idx", "reason")
HISTORY_COLS = ("rid", "lid", "at", "agent", "campaign", "code", "phone", "note", "revenue",
                "fields", "callback", "state", "reason", "due_at", "attempts")
#: the record's state as dispositions and reopening change it
STATE_COLS = ("state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
              "phone_idx", "callback", "updated_at")
RECORD_COLS = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
               "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
               "phone_idx", "callback", "imported_at", "updated_at")

INS_LEASE = _insert("leases", LEASE_COLS)
END_LEASE = _update("leases", ("ended_at", "end", "code", "result"), "lid")
EXT_LEASE = _update("leases", ("expires_at",), "lid")
INS_HISTORY = _insert("history", HISTORY_COLS)
UPD_RECORD = _update("records", STATE_COLS, "rid")
UPD_RECORD_MOVE = _update("records", (*STATE_COLS, "phones", "campaign", "list"), "rid")
UPD_RECORD_DATA = Stmt(
    "update records data",
    'UPDATE records SET "list" = {}, "phones" = {}, "timezone" = {}, "priority" = {}, '
    '"data" = {}, "updated_at" = {}, "team" = COALESCE({}, "team") WHERE "rid" = {}', 8)
INS_RECORD = _insert("records", RECORD_COLS)
DEL_LISTED = Stmt("delete phone_lists", 'DELETE FROM phone_lists WHERE "number" = {}', 1)
INS_LISTED = _insert("phone_lists", ("number", "list", "added_at", "rid", "agent"))
DEL_AGENT = Stmt("delete agents", 'DELETE FROM agents WHERE "agent" = {}', 1)
INS_AGENT = _insert("agents", ("agent", "campaigns", "teams", "logged_in", "updated_at"))
DEL_REMINDER = Stmt("delete reminders", 'DELETE FROM reminders WHERE "rid" = {} AND "at" = {}',
                    2)
INS_REMINDER = _insert("reminders", ("rid", "at", "remind_at", "sent_at", "recipients",
                                     "channels"))


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


def _cb(cb: CallbackIntent | None) -> str | None:
    return _json(cb.to_json()) if cb is not None else None


def lease_issued(lz: Lease) -> Op:
    """A lease handed out."""
    return (INS_LEASE, (lz.lid, lz.secret, lz.record.rid, lz.agent, lz.uid, lz.issued_at,
                        lz.expires_at, lz.phone, lz.phone_idx, lz.reason))


def lease_ended(lid: int, now: float, end: str, code: str | None = None,
                result: bytes | None = None) -> Op:
    """A lease disposed (with its answer, for retries), released or expired."""
    return (END_LEASE, (now, end, code, result.decode() if result is not None else None,
                        lid))


def lease_extended(lid: int, expires_at: float) -> Op:
    """A lease renewed."""
    return (EXT_LEASE, (expires_at, lid))


def history(rec: Record, *, lid: int | None, at: float, agent: str, code: str,
            phone: str | None, note: str | None = None, revenue: float | None = None,
            fields: dict[str, Any] | None = None) -> Op:
    """A contact-history row: what happened, and the record's state after it."""
    return (INS_HISTORY, (rec.rid, lid, at, agent, rec.campaign, code, phone, note, revenue,
                          _json(fields) if fields else None, _cb(rec.callback), rec.state,
                          rec.reason, rec.due_at, rec.attempts))


def record_state(rec: Record, now: float, moved: bool = False) -> Op:
    """The record row's state after a change (with its numbers, campaign and list too when
    a disposition ``moved`` them)."""
    params = (rec.state, rec.reason, rec.due_at, rec.attempts, rec.owner, rec.team,
              rec.best_cp, rec.phone_idx, _cb(rec.callback), now)
    if not moved:
        return (UPD_RECORD, (*params, rec.rid))
    return (UPD_RECORD_MOVE, (*params, _json(rec.phone_list()), rec.campaign, rec.list,
                              rec.rid))


def record_data(rid: int, *, list_name: str, phones: list[list[str]], timezone: str,
                priority: int, data: str, team: str | None, now: float) -> Op:
    """A re-imported record's list, numbers, zone, priority, data and (if given) team."""
    return (UPD_RECORD_DATA, (list_name, _json(phones), timezone, priority, data, now, team,
                              rid))


def record_inserted(rec: Record, now: float) -> Op:
    """A new record."""
    return (INS_RECORD, (rec.rid, rec.id, rec.campaign, rec.list, _json(rec.phone_list()),
                         rec.timezone, rec.priority, rec.data, rec.state, rec.reason,
                         rec.due_at, rec.attempts, rec.owner, rec.team, rec.best_cp,
                         rec.phone_idx, _cb(rec.callback), now, now))


def listed(number: str, which: str, now: float, rid: int | None, agent: str | None
           ) -> list[Op]:
    """A number put on the DNC or block list (one list per number: the last one wins)."""
    return [(DEL_LISTED, (number,)), (INS_LISTED, (number, which, now, rid, agent))]


def agent_saved(agent: str, campaigns: list[str], teams: list[str], logged_in: bool,
                now: float) -> list[Op]:
    """An agent's login state."""
    return [(DEL_AGENT, (agent,)),
            (INS_AGENT, (agent, _json(campaigns), _json(teams), logged_in, now))]


def reminder_sent(rid: int, at: float, remind_at: float, sent_at: float,
                  recipients: list[str], channels: dict[str, Any]) -> list[Op]:
    """A callback reminder went out (one row per record and callback instant)."""
    return [(DEL_REMINDER, (rid, at)),
            (INS_REMINDER, (rid, at, remind_at, sent_at, _json(recipients), _json(channels)))]
