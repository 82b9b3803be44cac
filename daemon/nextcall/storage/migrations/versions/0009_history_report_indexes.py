"""An index for reports over the contact history: on the disposition instant, covering
every column the report figures read, so a report over a range of days scans this index
alone (a campaign, agent or code filter reads its columns from it too). Existing rows
need nothing: the index is built from them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: the columns ``storage/reports.py`` reads for the figures, the instant first
REPORT_COLS = ["at", "campaign", "code", "agent", "lid", "revenue", "rid"]


def upgrade() -> None:
    op.create_index("ix_history_at_report", "history", REPORT_COLS)


def downgrade() -> None:
    op.drop_index("ix_history_at_report", table_name="history")
