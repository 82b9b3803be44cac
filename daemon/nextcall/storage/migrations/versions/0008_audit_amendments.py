"""Audit per hand-out and amendments: each lease keeps the facts that allowed the call;
history rows keep the record's fields before a disposition and, for an amendment, the
entry it replaces and why; the DNC and block lists get versions. (The amendment columns
of history are folded in here: there is no separate 0009.)

Leases and history rows written before this revision keep NULL in the new columns: they
show no audit facts and cannot be amended. The list versions start at the number of
numbers on each list.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

LEASE_COLUMNS = (
    ("local_at", sa.String(40)), ("zone", sa.String(64)), ("call_window", sa.String(200)),
    ("legal_window", sa.String(16)), ("attempts", sa.Integer()),
    ("max_attempts", sa.Integer()), ("dnc_version", sa.BigInteger()),
    ("block_version", sa.BigInteger()),
)


def upgrade() -> None:
    # plain ADD COLUMN (nullable, no default): no table is copied, on SQLite either
    for name, type_ in LEASE_COLUMNS:
        op.add_column("leases", sa.Column(name, type_, nullable=True))
    op.add_column("history", sa.Column("prior", sa.Text(), nullable=True))
    op.add_column("history", sa.Column("amends", sa.BigInteger(), nullable=True))
    op.add_column("history", sa.Column("amend_reason", sa.Text(), nullable=True))
    op.create_index("ix_history_amends", "history", ["amends"])
    versions = op.create_table(
        "list_versions",
        sa.Column("list", sa.String(8), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    conn = op.get_bind()
    counts: dict[str, int] = dict(conn.execute(sa.text(
        'SELECT "list", count(*) FROM phone_lists GROUP BY "list"')).fetchall())
    op.bulk_insert(versions, [{"list": name, "version": int(counts.get(name, 0))}
                              for name in ("dnc", "block")])


def downgrade() -> None:
    op.drop_table("list_versions")
    op.drop_index("ix_history_amends", table_name="history")
    with op.batch_alter_table("history") as b:
        for name in ("amend_reason", "amends", "prior"):
            b.drop_column(name)
    with op.batch_alter_table("leases") as b:
        for name, _ in reversed(LEASE_COLUMNS):
            b.drop_column(name)
