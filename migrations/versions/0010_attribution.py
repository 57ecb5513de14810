"""what decided each kernel's class (rule id, deciding op), CUDA-graph kernels, and each run's
time left in ``other`` and in graph kernels

Revision ID: 0010_attribution
Revises: 0009_run_data
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_attribution"
down_revision = "0009_run_data"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("graph", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("rule_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("deciding_op_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_kernel_deciding_op_id_symbol", "symbol", ["deciding_op_id"], ["id"])
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("other_ns", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("graph_ns", sa.BigInteger(), nullable=True))
    # Stored runs know their time in ``other`` from their rollups already; graph time needs a
    # reingest (it stays null until then).
    op.execute(
        "UPDATE run SET other_ns = COALESCE((SELECT SUM(r.total_ns) FROM operator_rollup r "
        "WHERE r.run_id = run.id AND r.operator = 'other'), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("graph_ns")
        batch_op.drop_column("other_ns")
    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.drop_constraint("fk_kernel_deciding_op_id_symbol", type_="foreignkey")
        batch_op.drop_column("deciding_op_id")
        batch_op.drop_column("rule_id")
        batch_op.drop_column("graph")
