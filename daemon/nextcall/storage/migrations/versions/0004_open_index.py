"""An index on (state, campaign, timezone, reason): the start-up read finds each
campaign's ready records zone by zone, and counts the closed ones by reason, from the
index alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_records_open", "records", ["state", "campaign", "timezone", "reason"])


def downgrade() -> None:
    op.drop_index("ix_records_open", table_name="records")
