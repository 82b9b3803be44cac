"""Indexes for reports over the contact history: one on the disposition instant that
covers every column the report figures read (a report over a date range scans this
index alone), and one on (campaign, instant) for a report of one campaign. Existing rows
need nothing: the indexes are built from them.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

#: the columns ``storage/reports.py`` reads for the figures, the instant first
REPORT_COLS = ["at", "campaign", "code", "agent", "lid", "revenue", "rid"]


def upgrade() -> None:
    op.create_index("ix_history_at_report", "history", REPORT_COLS)
    op.create_index("ix_history_campaign_at", "history", ["campaign", "at"])


def downgrade() -> None:
    op.drop_index("ix_history_campaign_at", table_name="history")
    op.drop_index("ix_history_at_report", table_name="history")
