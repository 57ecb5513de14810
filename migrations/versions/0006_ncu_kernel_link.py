"""link nsight compute launches to timeline kernels; uploads that attach to a run

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ncu_metric", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kernel_ref", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target_run_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.drop_column("target_run_id")
    with op.batch_alter_table("ncu_metric", schema=None) as batch_op:
        batch_op.drop_column("kernel_ref")
