"""memory_event: the profiler's allocations and frees per run (the memory timeline)

Revision ID: 0013_memory_events
Revises: 0012_worker_lease
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_memory_events"
down_revision = "0012_worker_lease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memory_event",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.Integer(), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("device_type", sa.SmallInteger(), nullable=False),
        sa.Column("device_id", sa.SmallInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("total_allocated", sa.BigInteger(), nullable=True),
        sa.Column("total_reserved", sa.BigInteger(), nullable=True),
        sa.Column("addr", sa.BigInteger(), nullable=True),
        sa.Column("component", sa.String(length=32), nullable=True),
        sa.Column("operator", sa.String(length=32), nullable=True),
        sa.Column("attention_type", sa.String(length=32), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("cpu_op_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_memory_event_run_id_run", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trace_id"], ["trace.id"], name="fk_memory_event_trace_id_trace", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cpu_op_id"], ["symbol.id"], name="fk_memory_event_cpu_op_id_symbol"),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_memory_event"),
    )
    op.create_index("ix_memory_event_trace_id", "memory_event", ["trace_id"], unique=False)
    op.create_index(
        "ix_memory_event_run_id_device_type_device_id",
        "memory_event",
        ["run_id", "device_type", "device_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_memory_event_run_id_device_type_device_id", table_name="memory_event")
    op.drop_index("ix_memory_event_trace_id", table_name="memory_event")
    op.drop_table("memory_event")
