"""run.memcpy_count / memset_count and the launch rollup: the runs listing and /launches read
rows kept at ingest instead of aggregating rollups or kernel rows at query time

Revision ID: 0015_query_paths
Revises: 0014_sync_edges
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_query_paths"
down_revision = "0014_sync_edges"
branch_labels = None
depends_on = None

# The kernel rollup has every run's activities by kind: the existing runs' counts come from it
# (a few rollup rows per run through its (run_id, ...) primary key).
_BACKFILL = (
    "UPDATE run SET {column} = (SELECT coalesce(sum(r.kernel_count), 0) FROM kernel_rollup r "
    "WHERE r.run_id = run.id AND r.kind = '{kind}') "
    "WHERE EXISTS (SELECT 1 FROM kernel_rollup r WHERE r.run_id = run.id AND r.kind = '{kind}')"
)


def upgrade() -> None:
    # Added with a constant default: no table rewrite on PostgreSQL, none on SQLite either.
    op.add_column("run", sa.Column("memcpy_count", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("run", sa.Column("memset_count", sa.BigInteger(), server_default="0", nullable=False))
    for column, kind in (("memcpy_count", "memcpy"), ("memset_count", "memset")):
        op.execute(_BACKFILL.format(column=column, kind=kind))
    # Runs ingested before this revision have no launch rows: /launches reads their kernel rows,
    # as it did before, until they are re-ingested.
    op.create_table(
        "launch_rollup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("name_id", sa.Integer(), nullable=True),
        sa.Column("group_key", sa.String(length=64), nullable=True),
        sa.Column("kernels", sa.BigInteger(), nullable=False),
        sa.Column("graph_kernels", sa.BigInteger(), nullable=False),
        sa.Column("launches", sa.BigInteger(), nullable=False),
        sa.Column("gpu_ns", sa.BigInteger(), nullable=False),
        sa.Column("launch_ns", sa.BigInteger(), nullable=False),
        sa.Column("launch_bound", sa.BigInteger(), nullable=False),
        sa.Column("delay_median_ns", sa.Float(), nullable=True),
        sa.Column("delay_p95_ns", sa.Float(), nullable=True),
        sa.Column("delay_max_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_launch_rollup_run_id_run", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["name_id"], ["symbol.id"], name="fk_launch_rollup_name_id_symbol"),
        sa.PrimaryKeyConstraint("id", name="pk_launch_rollup"),
    )
    op.create_index("ix_launch_rollup_run_id_dimension", "launch_rollup", ["run_id", "dimension"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_launch_rollup_run_id_dimension", table_name="launch_rollup")
    op.drop_table("launch_rollup")
    # ALTER TABLE ... DROP COLUMN on both (SQLite 3.35+): a batch rebuild of ``run`` would drop
    # the table, and with foreign keys on that cascades to every row hanging off it.
    op.drop_column("run", "memset_count")
    op.drop_column("run", "memcpy_count")
