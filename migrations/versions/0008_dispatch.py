"""job dispatch (outbox, fair admission) and worker liveness

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("dispatched_at", TZ, nullable=True))
    op.add_column("jobs", sa.Column("claimed_by", sa.String(length=120), nullable=True))
    op.create_index(op.f("ix_jobs_dispatched_at"), "jobs", ["dispatched_at"], unique=False)
    op.execute("UPDATE jobs SET dispatched_at = created_at")  # jobs made before dispatching existed were sent at once
    for table in ("audits", "audit_items", "robust_models"):
        op.add_column(table, sa.Column("claimed_by", sa.String(length=120), nullable=True))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("queues", sa.String(length=200), nullable=False),
        sa.Column("started_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("seen_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_workers_seen_at"), "workers", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_workers_seen_at"), table_name="workers")
    op.drop_table("workers")
    for table in ("robust_models", "audit_items", "audits"):
        op.drop_column(table, "claimed_by")
    op.drop_index(op.f("ix_jobs_dispatched_at"), table_name="jobs")
    op.drop_column("jobs", "claimed_by")
    op.drop_column("jobs", "dispatched_at")
