"""fleet jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("rows_imported", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_import")),
    )
    op.create_table(
        "fleet_rollup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("cluster", sa.String(length=200), nullable=True),
        sa.Column("gpu_type", sa.String(length=64), nullable=True),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("gpu_hours", sa.Float(), nullable=False),
        sa.Column("gpu_sum", sa.Float(), nullable=False),
        sa.Column("gpu_sq_sum", sa.Float(), nullable=False),
        sa.Column("gpu_x_hours", sa.Float(), nullable=False),
        sa.Column("mem_hours", sa.Float(), nullable=False),
        sa.Column("mem_weight", sa.Float(), nullable=False),
        sa.Column("peak_hours", sa.Float(), nullable=False),
        sa.Column("peak_weight", sa.Float(), nullable=False),
        sa.Column("sm_hours", sa.Float(), nullable=False),
        sa.Column("sm_weight", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_rollup")),
    )
    with op.batch_alter_table("fleet_rollup", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fleet_rollup_month"), ["month"], unique=False)

    op.create_table(
        "fleet_job",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("cluster", sa.String(length=200), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("gpu_type", sa.String(length=64), nullable=True),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gpu_hours", sa.Float(), nullable=False),
        sa.Column("mean_mem_util", sa.Float(), nullable=True),
        sa.Column("peak_mem_util", sa.Float(), nullable=True),
        sa.Column("sm_util", sa.Float(), nullable=True),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"], ["fleet_import.id"], name=op.f("fk_fleet_job_import_id_fleet_import"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["model.id"], name=op.f("fk_fleet_job_model_id_model"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_job")),
    )
    with op.batch_alter_table("fleet_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fleet_job_import_id"), ["import_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fleet_job_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fleet_job_model_name"), ["model_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_fleet_job_start"), ["start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fleet_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fleet_job_start"))
        batch_op.drop_index(batch_op.f("ix_fleet_job_model_name"))
        batch_op.drop_index(batch_op.f("ix_fleet_job_model_id"))
        batch_op.drop_index(batch_op.f("ix_fleet_job_import_id"))

    op.drop_table("fleet_job")
    with op.batch_alter_table("fleet_rollup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fleet_rollup_month"))

    op.drop_table("fleet_rollup")
    op.drop_table("fleet_import")
