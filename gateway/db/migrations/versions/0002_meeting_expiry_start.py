"""meetings.expiry_start: the expiry delay of a meeting made non-persistent runs from that moment

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 17:40:00.000000

A plain ADD COLUMN (nullable, no default), which SQLite and PostgreSQL both do in place: no batch copy of the
table, whose drop would cascade to the meeting owners and authorizations while SQLite enforces foreign keys.
Existing meetings keep NULL: their delay runs from creation_time, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("meetings", sa.Column("expiry_start", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("meetings", "expiry_start")
