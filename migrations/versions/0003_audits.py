"""audits and their items; defense jobs point at an audit item; deliveries of audit events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("callback_url", sa.String(length=2000), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("universal_media_id", sa.Uuid(), nullable=True),
        sa.Column("universal", sa.JSON(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("touched_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["universal_media_id"], ["media.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_audits_tenant_id"), "audits", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_audits_status"), "audits", ["status"], unique=False)
    op.create_index(op.f("ix_audits_touched_at"), "audits", ["touched_at"], unique=False)
    op.create_index("ix_audits_tenant_created", "audits", ["tenant_id", "created_at", "id"], unique=False)
    op.create_table(
        "audit_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("audit_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("media_id", sa.Uuid(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("verdicts", sa.JSON(), nullable=True),
        sa.Column("dispatched_at", TZ, nullable=True),
        sa.Column("attacked_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["audit_id"], ["audits.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("audit_id", "index"),
    )
    op.create_index(op.f("ix_audit_items_audit_id"), "audit_items", ["audit_id"], unique=False)
    op.add_column("jobs", sa.Column("audit_item_id", sa.Uuid(), nullable=True))
    op.add_column("jobs", sa.Column("audit_ref", sa.String(length=100), nullable=True))
    op.create_index(op.f("ix_jobs_audit_item_id"), "jobs", ["audit_item_id"], unique=False)
    op.create_foreign_key(
        op.f("jobs_audit_item_id_fkey"), "jobs", "audit_items", ["audit_item_id"], ["id"], ondelete="CASCADE"
    )
    op.create_unique_constraint(op.f("jobs_audit_item_id_audit_ref_key"), "jobs", ["audit_item_id", "audit_ref"])
    op.alter_column("deliveries", "job_id", existing_type=sa.Uuid(), nullable=True)
    op.add_column("deliveries", sa.Column("audit_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_deliveries_audit_id"), "deliveries", ["audit_id"], unique=False)
    op.create_foreign_key(
        op.f("deliveries_audit_id_fkey"), "deliveries", "audits", ["audit_id"], ["id"], ondelete="CASCADE"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("deliveries_audit_id_fkey"), "deliveries", type_="foreignkey")
    op.drop_index(op.f("ix_deliveries_audit_id"), table_name="deliveries")
    op.drop_column("deliveries", "audit_id")
    op.execute("DELETE FROM deliveries WHERE job_id IS NULL")
    op.alter_column("deliveries", "job_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_constraint(op.f("jobs_audit_item_id_audit_ref_key"), "jobs", type_="unique")
    op.drop_constraint(op.f("jobs_audit_item_id_fkey"), "jobs", type_="foreignkey")
    op.drop_index(op.f("ix_jobs_audit_item_id"), table_name="jobs")
    op.drop_column("jobs", "audit_ref")
    op.drop_column("jobs", "audit_item_id")
    op.drop_index(op.f("ix_audit_items_audit_id"), table_name="audit_items")
    op.drop_table("audit_items")
    op.drop_index("ix_audits_tenant_created", table_name="audits")
    op.drop_index(op.f("ix_audits_touched_at"), table_name="audits")
    op.drop_index(op.f("ix_audits_status"), table_name="audits")
    op.drop_index(op.f("ix_audits_tenant_id"), table_name="audits")
    op.drop_table("audits")
