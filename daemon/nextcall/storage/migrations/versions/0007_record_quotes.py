"""Records keep their quote (value and chance %) for expected-value scoring; a partial
index finds the few quoted records at start without reading the others. Existing records
have no quote (NULL) and score as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

QUOTED = sa.text("quote_value IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("quote_value", sa.Float, nullable=True))
        batch.add_column(sa.Column("quote_chance", sa.Float, nullable=True))
    op.create_index("ix_records_quoted", "records", ["rid"], sqlite_where=QUOTED,
                    postgresql_where=QUOTED)


def downgrade() -> None:
    op.drop_index("ix_records_quoted", table_name="records")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("quote_chance")
        batch.drop_column("quote_value")
