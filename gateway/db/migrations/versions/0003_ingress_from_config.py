"""ingresses_http.from_config: an ingress written from config.yaml follows it until an operator sets one by the API

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 18:00:00.000000

Before this, the first start stored the master tenant's ingress from the bind address and nothing ever updated it,
so setting `http.public_uri` later changed no guest link. The only ingress the server itself ever wrote is the
master tenant's, at bootstrap: that row is marked as written from the configuration (an operator who had replaced
it through the API and also sets `http.public_uri` gets the configured one back, which is what that setting asks).
A plain ADD COLUMN with a constant default, in place on SQLite and PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ingresses_http", sa.Column("from_config", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE ingresses_http SET from_config = true"
        " WHERE tenant_uuid IN (SELECT uuid FROM tenants WHERE parent_uuid IS NULL)"
    )


def downgrade() -> None:
    op.drop_column("ingresses_http", "from_config")
