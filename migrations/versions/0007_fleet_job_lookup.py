"""look fleet jobs up by job id, so overlapping dumps replace earlier copies

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fleet_job", schema=None) as batch_op:
        batch_op.create_index("ix_fleet_job_job_id", ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fleet_job", schema=None) as batch_op:
        batch_op.drop_index("ix_fleet_job_job_id")
