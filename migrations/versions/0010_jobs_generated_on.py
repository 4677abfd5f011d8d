"""Where each job's candidates were generated (device, dtype, revision, versions, host)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("generated_on", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "generated_on")
