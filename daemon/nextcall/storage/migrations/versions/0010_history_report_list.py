"""Reports without a join and, on SQLite, without a sort.

- ``history.list``: the record's list when the row was written, so a report grouped or
  filtered by list reads no record row. ``history.day``: the UTC day number of ``at``
  (``at // 86400``). Both are written with each new row (``storage/statements.py``);
  existing rows are filled here, with their record's list as it is now (the only one
  known).
- SQLite: ``ix_history_day_report`` replaces ``ix_history_at_report`` (0009). It holds
  the dispositions only (``lid IS NOT NULL``), ordered by day, campaign, code, agent and
  list, then the instant, the revenue and the record. A range of days is one range of the
  index, and within it the rows come in the order a report groups them, so SQLite, which
  has no hash aggregation, groups them as they come instead of sorting every row; the
  rows of a quote, won or lost code are found by seeks (``storage/reports_sqlite.py``).
  ``day`` is a stored column, not an index on an expression: SQLite 3.40's Bloom filter
  reads a wrong value for a computed column and a join into such an index can miss rows.
- PostgreSQL: ``ix_history_at_report`` keeps its name and gains ``list`` (PostgreSQL groups
  by hashing; the instant stays first).

Filling the columns rewrites every history row: about 5 s a million rows on SQLite.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: 0009's index, on PostgreSQL with ``list`` after ``agent`` from here on
OLD_COLS = ["at", "campaign", "code", "agent", "lid", "revenue", "rid"]
PG_COLS = ["at", "campaign", "code", "agent", "list", "lid", "revenue", "rid"]
SQLITE_COLS = ["day", "campaign", "code", "agent", "list", "at", "revenue", "rid"]
#: the UTC day number of ``at`` (which is never negative), per dialect
DAY = {"postgresql": "CAST(floor(at / 86400) AS INTEGER)",
       "sqlite": "CAST(at / 86400 AS INTEGER)"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("history", sa.Column("day", sa.Integer(), nullable=True))
    op.add_column("history", sa.Column("list", sa.String(100), nullable=True))
    op.drop_index("ix_history_at_report", table_name="history")
    op.execute(f'UPDATE history SET "day" = {DAY[dialect]}, "list" = '
               '(SELECT r."list" FROM records r WHERE r.rid = history.rid)')
    if dialect == "postgresql":
        op.create_index("ix_history_at_report", "history", PG_COLS)
    else:
        op.create_index("ix_history_day_report", "history", SQLITE_COLS,
                        sqlite_where=sa.text("lid IS NOT NULL"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_history_at_report", table_name="history")
    else:
        op.drop_index("ix_history_day_report", table_name="history")
    with op.batch_alter_table("history") as b:
        b.drop_column("list")
        b.drop_column("day")
    op.create_index("ix_history_at_report", "history", OLD_COLS)
