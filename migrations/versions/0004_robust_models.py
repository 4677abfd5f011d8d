"""robust models: robustify runs as GPU jobs (checkpoint files in the object store)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "robust_models",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source_model", sa.String(length=300), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("touched_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_robust_models_tenant_id"), "robust_models", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_robust_models_status"), "robust_models", ["status"], unique=False)
    op.create_index(op.f("ix_robust_models_touched_at"), "robust_models", ["touched_at"], unique=False)
    op.create_index("ix_robust_models_tenant_created", "robust_models", ["tenant_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_robust_models_tenant_created", table_name="robust_models")
    op.drop_index(op.f("ix_robust_models_touched_at"), table_name="robust_models")
    op.drop_index(op.f("ix_robust_models_status"), table_name="robust_models")
    op.drop_index(op.f("ix_robust_models_tenant_id"), table_name="robust_models")
    op.drop_table("robust_models")
