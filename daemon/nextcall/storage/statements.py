"""The write statements, and the translation of changes (``core/changes.py``) into them.

An op is ``(Stmt, params)`` with ``params`` a tuple in the statement's column order: the
writer hands runs of ops with the same statement to the driver's ``executemany`` as they
are, so no per-row work happens in Python between the request and the database. The SQL
is written once here and rendered for each dialect's placeholder style (``?`` for
SQLite, ``$n`` for PostgreSQL); identifiers are quoted (``end`` is a keyword).

Nothing outside ``storage/`` builds SQL or knows a column order: callers hand changes to
the store, which turns them into ops here (``ops_of``) before queueing them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..core.changes import (
    AgentSaved,
    Change,
    HistoryAppended,
    LeaseEnded,
    LeaseExtended,
    LeaseIssued,
    NumberListed,
    NumberUnlisted,
    QuoteSaved,
    RecordImported,
    RecordReimported,
    RecordSaved,
    ReminderSent,
)


@dataclass(frozen=True, slots=True)
class Stmt:
    """One parameterised statement; ``sql`` has ``{}`` where the placeholders go (and
    ``{first}`` where the first parameter is used again).

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
    #: an insert's last column that, given as NULL, is read from the row of ``records``
    #: whose ``rid`` is the first parameter (a history row's list)
    fill: str | None = None

    def render(self, dialect: str) -> str:
        """The SQL with the dialect's placeholders."""
        if dialect == "sqlite":  # ``?1``: the first parameter again, after the ``?``s
            return self.sql.format(*["?"] * self.arity, first="?1")
        return self.sql.format(*[f"${i}" for i in range(1, self.arity + 1)], first="$1")


Op = tuple[Stmt, tuple[Any, ...]]


def _q(name: str) -> str:
    return f'"{name}"'


def _insert(table: str, cols: tuple[str, ...]) -> Stmt:
    return Stmt(f"insert {table}", f"INSERT INTO {table} ({', '.join(map(_q, cols))}) "
                f"VALUES ({', '.join('{}' for _ in cols)})", len(cols), table, cols)


def _insert_filled(table: str, cols: tuple[str, ...]) -> Stmt:
    """An insert whose last column, when its parameter is NULL, is the record's."""
    *given, last = cols
    values = ", ".join(["{}"] * len(given))
    fill = f'COALESCE({{}}, (SELECT {_q(last)} FROM records WHERE "rid" = {{first}}))'
    return Stmt(f"insert {table}", f"INSERT INTO {table} ({', '.join(map(_q, cols))}) "
                f"VALUES ({values}, {fill})", len(cols), table, cols, fill=last)


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
    "updated_at": "float8", "phones": "text", "list": "text", "last_code": "text",
    "last_at": "float8", "last_agent": "text",
    "local_at": "text", "zone": "text", "call_window": "text", "legal_window": "text",
    "max_attempts": "int", "dnc_version": "bigint", "block_version": "bigint",
    "prior": "text", "amends": "bigint", "amend_reason": "text", "day": "int",
}


def pg_set_based(stmt: Stmt, first: int) -> str | None:
    """``stmt`` over arrays ``$first``... (one per column, the key last for an update), as
    a data-modifying statement; None when it has no such form."""
    if not stmt.table or any(c not in PG_TYPES for c in stmt.cols):
        return None
    cols = (*stmt.cols, stmt.key) if stmt.key else stmt.cols
    args = ", ".join(f"${first + i}::{PG_TYPES[c]}[]" for i, c in enumerate(cols))
    if stmt.key is None and stmt.fill is not None:
        names = [f"c{i}" for i in range(len(cols))]
        fill = (f'COALESCE(u.{names[-1]}, (SELECT r.{_q(stmt.fill)} FROM records r '
                f'WHERE r."rid" = u.{names[0]}))')
        return (f"INSERT INTO {stmt.table} ({', '.join(map(_q, cols))}) "
                f"SELECT {', '.join(f'u.{n}' for n in names[:-1])}, {fill} "
                f"FROM unnest({args}) AS u({', '.join(names)})")
    if stmt.key is None:
        return f"INSERT INTO {stmt.table} ({', '.join(map(_q, cols))}) SELECT * FROM unnest({args})"
    names = [f"c{i}" for i in range(len(cols))]
    sets = ", ".join(f"{_q(c)} = u.{n}" for c, n in zip(stmt.cols, names, strict=False))
    return (f"UPDATE {stmt.table} SET {sets} FROM unnest({args}) AS u({', '.join(names)}) "
            f"WHERE {stmt.table}.{_q(stmt.key)} = u.{names[-1]}")


LEASE_COLS = ("lid", "secret", "rid", "agent", "uid", "issued_at", "expires_at", "phone",
              "phone_idx", "reason", "local_at", "zone", "call_window", "legal_window",
              "attempts", "max_attempts", "dnc_version", "block_version")
#: ``day``: the UTC day number of ``at`` (reports on SQLite read by it); ``list`` last:
#: the record's list when the row is written, unless the change names it
HISTORY_COLS = ("rid", "lid", "at", "agent", "campaign", "code", "phone", "note", "revenue",
                "fields", "callback", "state", "reason", "due_at", "attempts", "prior",
                "amends", "amend_reason", "day", "list")
#: the record's state as dispositions and reopening change it
STATE_COLS = ("state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
              "phone_idx", "callback", "updated_at")
RECORD_COLS = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
               "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
               "phone_idx", "callback", "imported_at", "updated_at")

INS_LEASE = _insert("leases", LEASE_COLS)
END_LEASE = _update("leases", ("ended_at", "end", "code", "result"), "lid")
EXT_LEASE = _update("leases", ("expires_at",), "lid")
INS_HISTORY = _insert_filled("history", HISTORY_COLS)
UPD_RECORD = _update("records", STATE_COLS, "rid")
UPD_RECORD_MOVE = _update("records", (*STATE_COLS, "phones", "campaign", "list"), "rid")
#: a disposition's record update also keeps its last result (the ``records`` op's filter)
LAST_COLS = ("last_code", "last_at", "last_agent")
UPD_RECORD_DISPOSED = _update("records", (*STATE_COLS, *LAST_COLS), "rid")
UPD_RECORD_MOVE_DISPOSED = _update("records", (*STATE_COLS, "phones", "campaign", "list",
                                               *LAST_COLS), "rid")
UPD_RECORD_DATA = Stmt(
    "update records data",
    'UPDATE records SET "list" = {}, "phones" = {}, "timezone" = {}, "priority" = {}, '
    '"data" = {}, "updated_at" = {}, "team" = COALESCE({}, "team") WHERE "rid" = {}', 8)
INS_RECORD = _insert("records", RECORD_COLS)
#: no table: it takes the transaction path (it follows the same record's other update)
UPD_QUOTE = Stmt("update records quote",
                 'UPDATE records SET "quote_value" = {}, "quote_chance" = {} WHERE "rid" = {}',
                 3)
DEL_LISTED = Stmt("delete phone_lists", 'DELETE FROM phone_lists WHERE "number" = {}', 1)
INS_LISTED = _insert("phone_lists", ("number", "list", "added_at", "rid", "agent"))
SET_LIST_VERSION = Stmt("update list_versions",
                        'UPDATE list_versions SET "version" = {} WHERE "list" = {}', 2)
DEL_AGENT = Stmt("delete agents", 'DELETE FROM agents WHERE "agent" = {}', 1)
INS_AGENT = _insert("agents", ("agent", "campaigns", "teams", "logged_in", "updated_at"))
DEL_REMINDER = Stmt("delete reminders", 'DELETE FROM reminders WHERE "rid" = {} AND "at" = {}',
                    2)
INS_REMINDER = _insert("reminders", ("rid", "at", "remind_at", "sent_at", "recipients",
                                     "channels"))


def utc_day(at: float) -> int:
    """The UTC day number of instant ``at`` (``history.day``)."""
    return int(at // 86400)


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


def _opt_json(v: Any) -> str | None:
    return orjson.dumps(v).decode() if v else None


def _lease_issued(c: LeaseIssued) -> Op:
    return (INS_LEASE, c)  # the record's fields are the columns, in order


def _lease_ended(c: LeaseEnded) -> Op:
    result = c.result.decode() if c.result is not None else None
    return (END_LEASE, (c.at, c.end, c.code, result, c.lid))


def _lease_extended(c: LeaseExtended) -> Op:
    return (EXT_LEASE, (c.expires_at, c.lid))


def _history(c: HistoryAppended) -> Op:
    return (INS_HISTORY, (c.rid, c.lid, c.at, c.agent, c.campaign, c.code, c.phone, c.note,
                          c.revenue, _opt_json(c.fields), _opt_json(c.callback), c.state,
                          c.reason, c.due_at, c.attempts, _opt_json(c.prior), c.amends,
                          c.amend_reason, utc_day(c.at), c.list))


def _record_saved(c: RecordSaved, by: HistoryAppended | None = None) -> Op:
    """The record's update; ``by``: the disposition whose entry precedes it, kept as the
    record's last result in the same statement."""
    params: tuple[Any, ...] = (c.state, c.reason, c.due_at, c.attempts, c.owner, c.team,
                               c.best_cp, c.phone_idx, _opt_json(c.callback), c.at)
    if c.moved is not None:
        phones, campaign, list_name = c.moved
        params = (*params, _json(phones), campaign, list_name)
    if by is None:
        return (UPD_RECORD if c.moved is None else UPD_RECORD_MOVE, (*params, c.rid))
    return (UPD_RECORD_DISPOSED if c.moved is None else UPD_RECORD_MOVE_DISPOSED,
            (*params, by.code, by.at, by.agent, c.rid))


def _record_imported(c: RecordImported) -> Op:
    return (INS_RECORD, (c.rid, c.id, c.campaign, c.list, _json(c.phones), c.timezone,
                         c.priority, c.data, c.state, c.reason, c.due_at, c.attempts,
                         c.owner, c.team, c.best_cp, c.phone_idx, _opt_json(c.callback),
                         c.at, c.at))


def _record_reimported(c: RecordReimported) -> Op:
    return (UPD_RECORD_DATA, (c.list, _json(c.phones), c.timezone, c.priority, c.data, c.at,
                              c.team, c.rid))


def _quote_saved(c: QuoteSaved) -> list[Op]:
    return [(UPD_QUOTE, (c.value, c.chance, c.rid))]


def _number_listed(c: NumberListed) -> list[Op]:
    return [(DEL_LISTED, (c.number,)), (INS_LISTED, tuple(c)[:5]),
            (SET_LIST_VERSION, (c.version, c.list))]


def _number_unlisted(c: NumberUnlisted) -> list[Op]:
    return [(DEL_LISTED, (c.number,)), (SET_LIST_VERSION, (c.version, c.list))]


def _agent_saved(c: AgentSaved) -> list[Op]:
    return [(DEL_AGENT, (c.agent,)),
            (INS_AGENT, (c.agent, _json(c.campaigns), _json(c.teams), c.logged_in, c.at))]


def _reminder_sent(c: ReminderSent) -> list[Op]:
    return [(DEL_REMINDER, (c.rid, c.at)),
            (INS_REMINDER, (c.rid, c.at, c.remind_at, c.sent_at, _json(c.recipients),
                            _json(c.channels)))]


#: changes that are one statement each (the hot path's), and those that are several
_ONE: dict[type, Any] = {
    LeaseIssued: _lease_issued, LeaseEnded: _lease_ended, LeaseExtended: _lease_extended,
    HistoryAppended: _history, RecordSaved: _record_saved, RecordImported: _record_imported,
    RecordReimported: _record_reimported,
}
_MANY: dict[type, Any] = {
    NumberListed: _number_listed, NumberUnlisted: _number_unlisted,
    AgentSaved: _agent_saved, ReminderSent: _reminder_sent, QuoteSaved: _quote_saved,
}


def ops_of(changes: Iterable[Change]) -> list[Op]:
    """The statements that make ``changes`` durable, in order. A disposition's record
    update (the ``RecordSaved`` after its ``HistoryAppended`` with a lease) also stores
    the record's last result."""
    one = _ONE
    out: list[Op] = []
    append = out.append
    disposed: HistoryAppended | None = None
    for c in changes:
        if isinstance(c, HistoryAppended) and c.lid is not None:
            disposed = c
        elif disposed is not None and isinstance(c, RecordSaved) and disposed.rid == c.rid:
            append(_record_saved(c, disposed))
            disposed = None
            continue
        fn = one.get(type(c))
        if fn is not None:
            append(fn(c))
        else:
            out += _MANY[type(c)](c)
    return out
