"""The ``records`` op: each record keeps its last disposition (code, instant, agent),
filled from the history for records disposed before; indexes page a campaign's records
in rid order by state, last code, list and callback owner.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

HAS_OWNER = sa.text("owner IS NOT NULL")


def _last(column: str) -> str:
    return (f"(SELECT h.{column} FROM history h WHERE h.rid = records.rid "
            "AND h.lid IS NOT NULL ORDER BY h.hid DESC LIMIT 1)")


def upgrade() -> None:
    # plain ADD COLUMN on both dialects: no table copy
    op.add_column("records", sa.Column("last_code", sa.String(32)))
    op.add_column("records", sa.Column("last_at", sa.Float))
    op.add_column("records", sa.Column("last_agent", sa.String(100)))
    op.execute(f"UPDATE records SET last_code = {_last('code')}, last_at = {_last('at')}, "
               f"last_agent = {_last('agent')} WHERE attempts > 0")
    op.drop_index("ix_records_campaign_state", table_name="records")
    op.create_index("ix_records_campaign_state", "records", ["campaign", "state", "rid"])
    op.create_index("ix_records_campaign", "records", ["campaign", "rid"])
    op.create_index("ix_records_last_code", "records", ["campaign", "last_code", "rid"])
    op.create_index("ix_records_list", "records", ["campaign", "list", "rid"])
    op.create_index("ix_records_owner", "records", ["campaign", "owner", "rid"],
                    sqlite_where=HAS_OWNER, postgresql_where=HAS_OWNER)


def downgrade() -> None:
    for name in ("ix_records_owner", "ix_records_list", "ix_records_last_code",
                 "ix_records_campaign", "ix_records_campaign_state"):
        op.drop_index(name, table_name="records")
    op.create_index("ix_records_campaign_state", "records", ["campaign", "state"])
    with op.batch_alter_table("records") as batch:
        batch.drop_column("last_agent")
        batch.drop_column("last_at")
        batch.drop_column("last_code")
