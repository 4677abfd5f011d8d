"""jobs: aggregated_rounds and touched_at (duplicate-safe steps, the sweeper), list index;
one webhook endpoint per tenant and URL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("aggregated_rounds", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("touched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_jobs_touched_at"), "jobs", ["touched_at"], unique=False)
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant_id", "created_at", "id"], unique=False)
    op.create_unique_constraint(op.f("webhook_endpoints_tenant_id_url_key"), "webhook_endpoints", ["tenant_id", "url"])


def downgrade() -> None:
    op.drop_constraint(op.f("webhook_endpoints_tenant_id_url_key"), "webhook_endpoints", type_="unique")
    op.drop_index("ix_jobs_tenant_created", table_name="jobs")
    op.drop_index(op.f("ix_jobs_touched_at"), table_name="jobs")
    op.drop_column("jobs", "touched_at")
    op.drop_column("jobs", "aggregated_rounds")
