"""Global DNC and block lists of phone numbers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "phone_lists",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("list", sa.String(8), nullable=False),
        sa.Column("added_at", sa.Float, nullable=False),
        sa.Column("rid", sa.BigInteger),
        sa.Column("agent", sa.String(100)),
    )


def downgrade() -> None:
    op.drop_table("phone_lists")
