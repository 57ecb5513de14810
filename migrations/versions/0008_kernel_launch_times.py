"""kernel launch call start and duration, for launch overhead

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("launch_ns", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("launch_dur_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.drop_column("launch_dur_ns")
        batch_op.drop_column("launch_ns")
