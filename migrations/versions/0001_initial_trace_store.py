"""initial trace store

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hardware",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("catalog_key", sa.String(length=64), nullable=True),
        sa.Column("vendor", sa.String(length=32), nullable=True),
        sa.Column("sm_count", sa.Integer(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("compute_capability", sa.String(length=16), nullable=True),
        sa.Column("peak_fp64_flops", sa.Float(), nullable=True),
        sa.Column("peak_fp32_flops", sa.Float(), nullable=True),
        sa.Column("peak_tf32_flops", sa.Float(), nullable=True),
        sa.Column("peak_fp16_flops", sa.Float(), nullable=True),
        sa.Column("peak_bf16_flops", sa.Float(), nullable=True),
        sa.Column("peak_int8_ops", sa.Float(), nullable=True),
        sa.Column("peak_bandwidth_bytes_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hardware")),
        sa.UniqueConstraint("name", name=op.f("uq_hardware_name")),
    )
    op.create_table(
        "model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("family", sa.String(length=16), nullable=True),
        sa.Column("architecture", sa.String(length=64), nullable=True),
        sa.Column("param_count", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model")),
        sa.UniqueConstraint("name", name=op.f("uq_model_name")),
    )
    op.create_table(
        "symbol",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_symbol")),
        sa.UniqueConstraint("digest", name=op.f("uq_symbol_digest")),
    )
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("hardware_id", sa.Integer(), nullable=True),
        sa.Column("attention_backend", sa.String(length=32), nullable=True),
        sa.Column("scale", sa.String(length=16), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.Column("dtype", sa.String(length=16), nullable=True),
        sa.Column("image_size", sa.Integer(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=True),
        sa.Column("denoising_steps", sa.Integer(), nullable=True),
        sa.Column("decode_tokens", sa.Integer(), nullable=True),
        sa.Column("text_length", sa.Integer(), nullable=True),
        sa.Column("param_count", sa.BigInteger(), nullable=True),
        sa.Column("peak_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("world_size", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("device_kind", sa.String(length=8), nullable=False),
        sa.Column("kernel_count", sa.BigInteger(), nullable=False),
        sa.Column("total_ns", sa.BigInteger(), nullable=False),
        sa.Column("span_ns", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["hardware_id"], ["hardware.id"], name=op.f("fk_run_hardware_id_hardware")),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_run_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run")),
    )
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_hardware_id"), ["hardware_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_run_model_id"), ["model_id"], unique=False)

    op.create_table(
        "kernel_rollup",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name_id", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("kernel_count", sa.BigInteger(), nullable=False),
        sa.Column("total_ns", sa.BigInteger(), nullable=False),
        sa.Column("min_ns", sa.BigInteger(), nullable=False),
        sa.Column("max_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["name_id"], ["symbol.id"], name=op.f("fk_kernel_rollup_name_id_symbol")),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_kernel_rollup_run_id_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "name_id", "operator", name=op.f("pk_kernel_rollup")),
    )
    op.create_table(
        "operator_rollup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(length=32), nullable=False),
        sa.Column("attention_type", sa.String(length=32), nullable=True),
        sa.Column("seq_q", sa.Integer(), nullable=True),
        sa.Column("seq_kv", sa.Integer(), nullable=True),
        sa.Column("component", sa.String(length=32), nullable=True),
        sa.Column("kernel_count", sa.BigInteger(), nullable=False),
        sa.Column("total_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_operator_rollup_run_id_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_rollup")),
    )
    with op.batch_alter_table("operator_rollup", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_rollup_run_id"), ["run_id"], unique=False)

    op.create_table(
        "run_tag",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_run_tag_run_id_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_run_tag")),
    )
    op.create_table(
        "trace",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("original_name", sa.Text(), nullable=False),
        sa.Column("raw_path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_trace_run_id_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trace")),
        sa.UniqueConstraint("sha256", name=op.f("uq_trace_sha256")),
    )
    with op.batch_alter_table("trace", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trace_run_id"), ["run_id"], unique=False)

    op.create_table(
        "kernel",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("device", sa.Integer(), nullable=True),
        sa.Column("stream", sa.BigInteger(), nullable=True),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("dur_ns", sa.BigInteger(), nullable=False),
        sa.Column("name_id", sa.Integer(), nullable=False),
        sa.Column("correlation", sa.BigInteger(), nullable=True),
        sa.Column("grid_x", sa.Integer(), nullable=True),
        sa.Column("grid_y", sa.Integer(), nullable=True),
        sa.Column("grid_z", sa.Integer(), nullable=True),
        sa.Column("block_x", sa.Integer(), nullable=True),
        sa.Column("block_y", sa.Integer(), nullable=True),
        sa.Column("block_z", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("operator", sa.String(length=32), nullable=False),
        sa.Column("operator_source", sa.String(length=16), nullable=False),
        sa.Column("attention_type", sa.String(length=32), nullable=True),
        sa.Column("seq_q", sa.Integer(), nullable=True),
        sa.Column("seq_kv", sa.Integer(), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.Column("heads", sa.Integer(), nullable=True),
        sa.Column("head_dim", sa.Integer(), nullable=True),
        sa.Column("component", sa.String(length=32), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("cpu_op_id", sa.Integer(), nullable=True),
        sa.Column("annotation_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["annotation_id"], ["symbol.id"], name=op.f("fk_kernel_annotation_id_symbol")),
        sa.ForeignKeyConstraint(["cpu_op_id"], ["symbol.id"], name=op.f("fk_kernel_cpu_op_id_symbol")),
        sa.ForeignKeyConstraint(["name_id"], ["symbol.id"], name=op.f("fk_kernel_name_id_symbol")),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_kernel_run_id_run"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trace_id"], ["trace.id"], name=op.f("fk_kernel_trace_id_trace"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kernel")),
    )
    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.create_index("ix_kernel_run_id_operator", ["run_id", "operator"], unique=False)
        batch_op.create_index("ix_kernel_run_id_seq", ["run_id", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_kernel_trace_id"), ["trace_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kernel", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kernel_trace_id"))
        batch_op.drop_index("ix_kernel_run_id_seq")
        batch_op.drop_index("ix_kernel_run_id_operator")

    op.drop_table("kernel")
    with op.batch_alter_table("trace", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trace_run_id"))

    op.drop_table("trace")
    op.drop_table("run_tag")
    with op.batch_alter_table("operator_rollup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_rollup_run_id"))

    op.drop_table("operator_rollup")
    op.drop_table("kernel_rollup")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_model_id"))
        batch_op.drop_index(batch_op.f("ix_run_hardware_id"))

    op.drop_table("run")
    op.drop_table("symbol")
    op.drop_table("model")
    op.drop_table("hardware")
