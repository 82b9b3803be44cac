"""The database schema (SQLAlchemy Core). Alembic migrations create and evolve it.

Hot-path writes are appends (``leases`` on next; ``history`` on dispose) plus one
update of the record row and of the lease row in the same group-committed batch.
Times are POSIX seconds (float) so SQLite and PostgreSQL store them alike and the heap
needs no conversion at rebuild.
"""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Boolean,
                        Column,
                        Float,
                        Index,
                        Integer,
                        MetaData,
                        String,
                        Table,
                        Text,
)

metadata = MetaData()

records = Table(
    "records", metadata,
    # import order, and the key every other table uses
    Column("rid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("id", String(200), nullable=False, unique=True),
    Column("campaign", String(100), nullable=False),
    Column("list", String(100), nullable=False),
    Column("phones", Text, nullable=False),  # JSON [[e164, status], ...]
    Column("timezone", String(64), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("data", Text, nullable=False),  # JSON object, verbatim
    Column("state", String(16), nullable=False),
    Column("reason", String(16)),
    Column("due_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("owner", String(100)),
    Column("team", String(100)),
    Column("best_cp", Integer, nullable=False, default=0),
    Column("phone_idx", Integer, nullable=False, default=0),
    Column("callback", Text),  # JSON CallbackIntent
    Column("imported_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # the last disposition (not a reopen or a scheduled callback): the ``records`` op
    # finds records by their last result
    Column("last_code", String(32)),
    Column("last_at", Float),
    Column("last_agent", String(100)),
    # the quote of expected-value scoring (NULL: none)
    Column("quote_value", Float),
    Column("quote_chance", Float),
)
# rid last: the ``records`` op pages in rid order from the index (keyset)
Index("ix_records_campaign_state", records.c.campaign, records.c.state, records.c.rid)
Index("ix_records_campaign", records.c.campaign, records.c.rid)
Index("ix_records_last_code", records.c.campaign, records.c.last_code, records.c.rid)
Index("ix_records_list", records.c.campaign, records.c.list, records.c.rid)
Index("ix_records_owner", records.c.campaign, records.c.owner, records.c.rid,
      sqlite_where=records.c.owner.isnot(None), postgresql_where=records.c.owner.isnot(None))
Index("ix_records_quoted", records.c.rid, sqlite_where=records.c.quote_value.is_not(None),
      postgresql_where=records.c.quote_value.is_not(None))
Index("ix_records_open", records.c.state, records.c.campaign, records.c.timezone,
      records.c.reason)

leases = Table(
    "leases", metadata,
    Column("lid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("secret", String(64), nullable=False),
    Column("rid", BigInteger, nullable=False),
    Column("agent", String(100), nullable=False),
    Column("uid", Integer, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("phone", String(32), nullable=False),
    Column("phone_idx", Integer, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("ended_at", Float),
    Column("end", String(16)),  # disposed | released | expired
    Column("code", String(32)),
    Column("result", Text),  # JSON answer of the disposition, for idempotent retries
    # the facts that allowed the hand-out (core/audit.py); NULL on leases from before 0008
    Column("local_at", String(40)),
    Column("zone", String(64)),
    Column("call_window", String(200)),
    Column("legal_window", String(16)),
    Column("attempts", Integer),
    Column("max_attempts", Integer),
    Column("dnc_version", BigInteger),
    Column("block_version", BigInteger),
)
Index("ix_leases_live", leases.c.expires_at, sqlite_where=leases.c.ended_at.is_(None),
      postgresql_where=leases.c.ended_at.is_(None))

history = Table(
    "history", metadata,
    Column("hid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("rid", BigInteger, nullable=False),
    Column("lid", BigInteger),
    Column("at", Float, nullable=False),
    Column("agent", String(100), nullable=False),
    Column("campaign", String(100), nullable=False),
    Column("code", String(32), nullable=False),
    Column("phone", String(32)),
    Column("note", Text),
    Column("revenue", Float),
    Column("fields", Text),  # JSON
    Column("callback", Text),  # JSON
    Column("state", String(16), nullable=False),  # state after
    Column("reason", String(16)),
    Column("due_at", Float),
    Column("attempts", Integer, nullable=False),
    Column("prior", Text),  # JSON: a disposition's record fields before it
    Column("amends", BigInteger),  # an amendment: the hid of the entry it replaces
    Column("amend_reason", Text),
    # reports (0010): the UTC day number of ``at``; the record's list when the row was
    # written (reports group and filter by it)
    Column("day", Integer),
    Column("list", String(100)),
)
Index("ix_history_rid", history.c.rid)
Index("ix_history_amends", history.c.amends)

#: a row per list ("dnc", "block"): one more at every change to the list; each lease
#: keeps the versions it was checked against
list_versions = Table(
    "list_versions", metadata,
    Column("list", String(8), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# reports (migrations 0009, 0010). PostgreSQL: a range of instants, covering the figures.
# SQLite: the dispositions by day, then in the order reports group them, so SQLite groups
# a range of days as it reads it, without sorting every row
Index("ix_history_at_report", history.c.at, history.c.campaign, history.c.code,
      history.c.agent, history.c.list, history.c.lid, history.c.revenue,
      history.c.rid).ddl_if(dialect="postgresql")
Index("ix_history_day_report", history.c.day, history.c.campaign, history.c.code,
      history.c.agent, history.c.list, history.c.at, history.c.revenue, history.c.rid,
      sqlite_where=history.c.lid.is_not(None)).ddl_if(dialect="sqlite")

agents = Table(
    "agents", metadata,
    Column("agent", String(100), primary_key=True),
    Column("campaigns", Text, nullable=False),  # JSON list
    Column("teams", Text, nullable=False),  # JSON list
    Column("logged_in", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
)

phone_lists = Table(
    "phone_lists", metadata,
    # E.164; a number is on at most one list (DNC wins over block)
    Column("number", String(32), primary_key=True),
    Column("list", String(8), nullable=False),  # dnc | block
    Column("added_at", Float, nullable=False),
    Column("rid", BigInteger),  # the record whose disposition listed it, if any
    Column("agent", String(100)),
)

reminders = Table(
    "reminders", metadata,
    # one row per reminder sent: the callback of record ``rid`` due at ``at`` (a new
    # callback time is a new reminder); written in the commit that records the sending,
    # so a restart neither loses a pending reminder nor sends one twice
    Column("rid", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Float, primary_key=True),
    Column("remind_at", Float, nullable=False),
    Column("sent_at", Float, nullable=False),
    Column("recipients", Text, nullable=False),  # JSON list of agents
    Column("channels", Text, nullable=False),  # JSON {"event": n, "email": [...], ...}
)
