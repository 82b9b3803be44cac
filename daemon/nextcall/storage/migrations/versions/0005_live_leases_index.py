"""Index only the leases not yet ended: ending a lease then deletes its entry from a
small index instead of moving it across a large one (one page fewer per disposition).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LIVE = sa.text("ended_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_leases_open", table_name="leases")
    op.create_index("ix_leases_live", "leases", ["expires_at"], sqlite_where=LIVE,
                    postgresql_where=LIVE)


def downgrade() -> None:
    op.drop_index("ix_leases_live", table_name="leases")
    op.create_index("ix_leases_open", "leases", ["ended_at", "expires_at"])
