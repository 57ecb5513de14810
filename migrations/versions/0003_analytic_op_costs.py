"""analytic op costs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("op_flops", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("op_bytes", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("operator_rollup", schema=None) as batch_op:
        batch_op.add_column(sa.Column("op_flops", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("op_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("costed_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operator_rollup", schema=None) as batch_op:
        batch_op.drop_column("costed_ns")
        batch_op.drop_column("op_bytes")
        batch_op.drop_column("op_flops")

    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.drop_column("op_bytes")
        batch_op.drop_column("op_flops")
