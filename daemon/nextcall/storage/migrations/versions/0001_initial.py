"""Initial schema: records, leases, history, agents.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _pk(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                     primary_key=True, autoincrement=False)


def upgrade() -> None:
    _records()
    _leases()
    _history()
    _agents()


def _records() -> None:
    op.create_table(
        "records", _pk("rid"),
        sa.Column("id", sa.String(200), nullable=False, unique=True),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("list", sa.String(100), nullable=False),
        sa.Column("phones", sa.Text, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16)),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(100)),
        sa.Column("team", sa.String(100)),
        sa.Column("best_cp", sa.Integer, nullable=False),
        sa.Column("phone_idx", sa.Integer, nullable=False),
        sa.Column("callback", sa.Text),
        sa.Column("imported_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_records_campaign_state", "records", ["campaign", "state"])


def _leases() -> None:
    op.create_table(
        "leases", _pk("lid"),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("rid", sa.BigInteger, nullable=False),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("uid", sa.Integer, nullable=False),
        sa.Column("issued_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("phone_idx", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("end", sa.String(16)),
        sa.Column("code", sa.String(32)),
        sa.Column("result", sa.Text),
    )
    op.create_index("ix_leases_open", "leases", ["ended_at", "expires_at"])


def _history() -> None:
    op.create_table(
        "history",
        sa.Column("hid", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("rid", sa.BigInteger, nullable=False),
        sa.Column("lid", sa.BigInteger),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(32)),
        sa.Column("note", sa.Text),
        sa.Column("revenue", sa.Float),
        sa.Column("fields", sa.Text),
        sa.Column("callback", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16)),
        sa.Column("due_at", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_history_rid", "history", ["rid"])


def _agents() -> None:
    op.create_table(
        "agents",
        sa.Column("agent", sa.String(100), primary_key=True),
        sa.Column("campaigns", sa.Text, nullable=False),
        sa.Column("teams", sa.Text, nullable=False),
        sa.Column("logged_in", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agents")
    op.drop_table("history")
    op.drop_table("leases")
    op.drop_table("records")
