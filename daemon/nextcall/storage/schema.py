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
)
Index("ix_records_campaign_state", records.c.campaign, records.c.state)
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
)
Index("ix_history_rid", history.c.rid)
# reports (migration 0007): a range of instants, covering the figures
Index("ix_history_at_report", history.c.at, history.c.campaign, history.c.code,
      history.c.agent, history.c.lid, history.c.revenue, history.c.rid)

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
