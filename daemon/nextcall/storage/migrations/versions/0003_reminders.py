"""Callback reminders sent (one row per reminder).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reminders",
        sa.Column("rid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, primary_key=True),
        sa.Column("remind_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("channels", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reminders")
