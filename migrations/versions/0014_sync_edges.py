"""sync_edge: each run's cudaStreamWaitEvent calls and the kernel each gates (critical path)

Revision ID: 0014_sync_edges
Revises: 0013_memory_events
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_sync_edges"
down_revision = "0013_memory_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_edge",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.Integer(), nullable=False),
        sa.Column("tid", sa.BigInteger(), nullable=True),
        sa.Column("call_ns", sa.BigInteger(), nullable=False),
        sa.Column("dst_correlation", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_sync_edge_run_id_run", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trace_id"], ["trace.id"], name="fk_sync_edge_trace_id_trace", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_sync_edge"),
    )
    op.create_index("ix_sync_edge_trace_id", "sync_edge", ["trace_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sync_edge_trace_id", table_name="sync_edge")
    op.drop_table("sync_edge")
