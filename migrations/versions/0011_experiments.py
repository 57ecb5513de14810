"""experiments: each run's experiment, git commit and version; named baselines of runs

Revision ID: 0011_experiments
Revises: 0010_attribution
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_experiments"
down_revision = "0010_attribution"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("experiment", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("git_commit", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("version", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_run_experiment", ["experiment"], unique=False)
    op.create_table(
        "baseline",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_baseline"),
        sa.UniqueConstraint("name", name="uq_baseline_name"),
    )
    op.create_table(
        "baseline_run",
        sa.Column("baseline_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["baseline_id"], ["baseline.id"], name="fk_baseline_run_baseline_id_baseline", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_baseline_run_run_id_run", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("baseline_id", "run_id", name="pk_baseline_run"),
    )
    op.create_index("ix_baseline_run_run_id", "baseline_run", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_baseline_run_run_id", table_name="baseline_run")
    op.drop_table("baseline_run")
    op.drop_table("baseline")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_experiment")
        batch_op.drop_column("version")
        batch_op.drop_column("git_commit")
        batch_op.drop_column("experiment")
