"""ingest jobs carry the worker that holds them and when its lease runs out, so several
worker processes (on several hosts) share one queue and a dead worker's job is taken over

Revision ID: 0012_worker_lease
Revises: 0011_experiments
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_worker_lease"
down_revision = "0011_experiments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("worker_id")
