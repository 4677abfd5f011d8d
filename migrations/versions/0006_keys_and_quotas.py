"""API key management and tenant quotas

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


IN_FLIGHT = sa.text("finished_at IS NULL AND audit_item_id IS NULL")


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("revoked_at", TZ, nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", TZ, nullable=True))
    op.execute("UPDATE api_keys SET revoked_at = now() WHERE revoked")
    op.drop_column("api_keys", "revoked")
    op.create_index("ix_jobs_tenant_in_flight", "jobs", ["tenant_id"], postgresql_where=IN_FLIGHT)


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_in_flight", table_name="jobs", postgresql_where=IN_FLIGHT)
    op.add_column("api_keys", sa.Column("revoked", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE api_keys SET revoked = revoked_at IS NOT NULL")
    op.alter_column("api_keys", "revoked", server_default=None)
    op.drop_column("api_keys", "last_used_at")
    op.drop_column("api_keys", "revoked_at")
