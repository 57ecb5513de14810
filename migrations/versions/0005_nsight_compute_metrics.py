"""nsight compute metrics

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ncu_metric",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kernel_id", sa.Integer(), nullable=False),
        sa.Column("name_id", sa.Integer(), nullable=False),
        sa.Column("metric_name", sa.String(length=200), nullable=False),
        sa.Column("metric_unit", sa.String(length=64), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["name_id"], ["symbol.id"], name=op.f("fk_ncu_metric_name_id_symbol")),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_ncu_metric_run_id_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ncu_metric")),
    )
    with op.batch_alter_table("ncu_metric", schema=None) as batch_op:
        batch_op.create_index("ix_ncu_metric_run_id_metric_name", ["run_id", "metric_name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ncu_metric", schema=None) as batch_op:
        batch_op.drop_index("ix_ncu_metric_run_id_metric_name")

    op.drop_table("ncu_metric")
