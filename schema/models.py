"""SQLAlchemy 2 models: what users query, not the JSON.

Change these only together with a migration (``migrations/versions``); a test compares the
models with the migrated database on SQLite and PostgreSQL.  Constraint names come from the
naming convention so migrations can refer to them on both backends.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    @classmethod
    def core_table(cls) -> Table:
        """The model's Core table (the object ``__table__`` holds, which SQLAlchemy types only as a
        FromClause): for plain INSERT / UPDATE executemany, without the ORM's bulk paths."""
        return cls.metadata.tables[cls.__tablename__]


class Hardware(Base):
    """A device kind (not a physical card); peaks come from the built-in catalogue."""

    __tablename__ = "hardware"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    catalog_key: Mapped[str | None] = mapped_column(String(64))
    vendor: Mapped[str | None] = mapped_column(String(32))
    sm_count: Mapped[int | None] = mapped_column(Integer)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    compute_capability: Mapped[str | None] = mapped_column(String(16))
    peak_fp64_flops: Mapped[float | None] = mapped_column(Float)
    peak_fp32_flops: Mapped[float | None] = mapped_column(Float)
    peak_tf32_flops: Mapped[float | None] = mapped_column(Float)
    peak_fp16_flops: Mapped[float | None] = mapped_column(Float)
    peak_bf16_flops: Mapped[float | None] = mapped_column(Float)
    peak_int8_ops: Mapped[float | None] = mapped_column(Float)
    peak_bandwidth_bytes_s: Mapped[float | None] = mapped_column(Float)


class Model(Base):
    __tablename__ = "model"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    family: Mapped[str | None] = mapped_column(String(16))  # llm / tti / ttv
    architecture: Mapped[str | None] = mapped_column(String(64))
    param_count: Mapped[int | None] = mapped_column(BigInteger)


class Run(Base):
    """One profiled execution: a model on a device with a set of knobs."""

    __tablename__ = "run"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("model.id"), index=True)
    hardware_id: Mapped[int | None] = mapped_column(ForeignKey("hardware.id"), index=True)
    attention_backend: Mapped[str | None] = mapped_column(String(32))
    scale: Mapped[str | None] = mapped_column(String(16))
    batch: Mapped[int | None] = mapped_column(Integer)
    dtype: Mapped[str | None] = mapped_column(String(16))
    image_size: Mapped[int | None] = mapped_column(Integer)
    frames: Mapped[int | None] = mapped_column(Integer)
    denoising_steps: Mapped[int | None] = mapped_column(Integer)
    decode_tokens: Mapped[int | None] = mapped_column(Integer)
    text_length: Mapped[int | None] = mapped_column(Integer)
    param_count: Mapped[int | None] = mapped_column(BigInteger)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    rank: Mapped[int | None] = mapped_column(Integer)
    world_size: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(200))
    device_kind: Mapped[str] = mapped_column(String(8))  # gpu / cpu: what the kernel rows are
    kernel_count: Mapped[int] = mapped_column(BigInteger)
    total_ns: Mapped[int] = mapped_column(BigInteger)  # sum of kernel durations (GPU busy, not wall)
    span_ns: Mapped[int] = mapped_column(BigInteger)  # first kernel start to last kernel end
    # Kernel time no rule could attribute (operator ``other``) and time in kernels a CUDA graph
    # launched (attributed to the graph's launching op only): how far the breakdown can be trusted.
    other_ns: Mapped[int | None] = mapped_column(BigInteger)
    graph_ns: Mapped[int | None] = mapped_column(BigInteger)
    # How many of ``kernel_count``'s activities are memory copies and sets: the runs listing
    # splits the count by kind from the run row, not from the kernel rollup.
    memcpy_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    memset_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The API token whose upload made it: that token may edit and delete it, others need admin.
    # Null for runs ingested locally (the CLI has the database itself).
    uploaded_by_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id", ondelete="SET NULL"))
    # What the run belongs to and what code made it: repeats of one command share an
    # experiment; the commit / version order a history and key a regression check.
    experiment: Mapped[str | None] = mapped_column(String(200), index=True)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(64))


class RunTag(Base):
    __tablename__ = "run_tag"
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Trace(Base):
    """A source file.  The raw bytes are kept (content-addressed) so it can be re-ingested."""

    __tablename__ = "trace"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)  # the file's bytes, as stored
    # The trace's content: the gunzipped bytes of a .json.gz, so one trace compressed two ways
    # (or .json and .json.gz) is one run.  Rows from before 0009 carry their file's sha256.
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    event_count: Mapped[int] = mapped_column(BigInteger)
    original_name: Mapped[str] = mapped_column(Text)
    raw_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # ingested
    warning_count: Mapped[int] = mapped_column(Integer)
    warnings: Mapped[str | None] = mapped_column(Text)  # JSON {kind: count}
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Symbol(Base):
    """Kernel and op names, stored once: kernel names run to kilobytes of C++ templates."""

    __tablename__ = "symbol"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A unique index on the text itself breaks PostgreSQL's btree row limit for long names.
    digest: Mapped[str] = mapped_column(String(40), unique=True)
    text: Mapped[str] = mapped_column(Text)


class Kernel(Base):
    """One GPU activity (kernel, memcpy, memset) or, for CPU-only runs, one top-level host op."""

    __tablename__ = "kernel"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    trace_id: Mapped[int] = mapped_column(ForeignKey("trace.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # execution order within the run
    kind: Mapped[str] = mapped_column(String(8))  # kernel / memcpy / memset / cpu
    device: Mapped[int | None] = mapped_column(Integer)
    stream: Mapped[int | None] = mapped_column(BigInteger)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    dur_ns: Mapped[int] = mapped_column(BigInteger)
    name_id: Mapped[int] = mapped_column(ForeignKey("symbol.id"))
    correlation: Mapped[int | None] = mapped_column(BigInteger)
    grid_x: Mapped[int | None] = mapped_column(Integer)
    grid_y: Mapped[int | None] = mapped_column(Integer)
    grid_z: Mapped[int | None] = mapped_column(Integer)
    block_x: Mapped[int | None] = mapped_column(Integer)
    block_y: Mapped[int | None] = mapped_column(Integer)
    block_z: Mapped[int | None] = mapped_column(Integer)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    operator: Mapped[str] = mapped_column(String(32))
    operator_source: Mapped[str] = mapped_column(String(16))  # annotation / op / kernel_name
    attention_type: Mapped[str | None] = mapped_column(String(32))
    seq_q: Mapped[int | None] = mapped_column(Integer)
    seq_kv: Mapped[int | None] = mapped_column(Integer)
    batch: Mapped[int | None] = mapped_column(Integer)
    heads: Mapped[int | None] = mapped_column(Integer)
    head_dim: Mapped[int | None] = mapped_column(Integer)
    component: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[int | None] = mapped_column(Integer)
    cpu_op_id: Mapped[int | None] = mapped_column(ForeignKey("symbol.id"))
    annotation_id: Mapped[int | None] = mapped_column(ForeignKey("symbol.id"))
    # Analytic cost of the launching GEMM / conv op, on its first kernel (0 on the others,
    # null when the shapes don't say): sums over kernel rows give the ops' FLOPs and bytes.
    op_flops: Mapped[int | None] = mapped_column(BigInteger)
    op_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The host launch call (cudaLaunchKernel ...) that enqueued it: start and duration, ns.
    launch_ns: Mapped[int | None] = mapped_column(BigInteger)
    launch_dur_ns: Mapped[int | None] = mapped_column(BigInteger)
    # Launched as part of a CUDA graph: ``launch_*`` is then the whole graph's launch call.
    graph: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # What decided ``operator`` besides ``operator_source``: the rule's id (``name.linear``,
    # ``op.conv``, a lab's ``user.*``) and, for ``op``, the deciding op's name.
    rule_id: Mapped[str | None] = mapped_column(String(64))
    deciding_op_id: Mapped[int | None] = mapped_column(ForeignKey("symbol.id"))

    __table_args__ = (
        Index("ix_kernel_run_id_seq", "run_id", "seq"),
        Index("ix_kernel_run_id_operator", "run_id", "operator"),
    )


class OperatorRollup(Base):
    """run × operator × attention type × seq lens × component → count, total ns; kept at ingest
    so breakdowns never scan kernels."""

    __tablename__ = "operator_rollup"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    operator: Mapped[str] = mapped_column(String(32))
    attention_type: Mapped[str | None] = mapped_column(String(32))
    seq_q: Mapped[int | None] = mapped_column(Integer)
    seq_kv: Mapped[int | None] = mapped_column(Integer)
    component: Mapped[str | None] = mapped_column(String(32))
    kernel_count: Mapped[int] = mapped_column(BigInteger)
    total_ns: Mapped[int] = mapped_column(BigInteger)
    op_flops: Mapped[int | None] = mapped_column(BigInteger)
    op_bytes: Mapped[int | None] = mapped_column(BigInteger)
    costed_ns: Mapped[int | None] = mapped_column(BigInteger)  # kernel time the op costs cover


class KernelRollup(Base):
    """run × kernel name × operator → count, total/min/max ns."""

    __tablename__ = "kernel_rollup"
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    name_id: Mapped[int] = mapped_column(ForeignKey("symbol.id"), primary_key=True)
    operator: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    kernel_count: Mapped[int] = mapped_column(BigInteger)
    total_ns: Mapped[int] = mapped_column(BigInteger)
    min_ns: Mapped[int] = mapped_column(BigInteger)
    max_ns: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """An API token; only its sha256 is stored, the token itself is shown once."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(8))  # read / write / admin
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class IngestJob(Base):
    """An uploaded file waiting for (or done with) ingest.  Jobs live in the database so a
    restarted service picks up what was queued; ingest itself is one transaction, so a crash
    mid-job leaves no partial run and the job simply runs again."""

    __tablename__ = "ingest_job"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued / running / done / failed
    original_name: Mapped[str] = mapped_column(Text)
    upload_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[str | None] = mapped_column(Text)  # JSON object of run metadata
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    # Nsight Compute uploads may attach their counters to an existing run instead of a new one.
    target_run_id: Mapped[int | None] = mapped_column(Integer)
    # Set when the upload's content was already a run: its metadata was not applied to it.
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The worker ("host:pid") running the job, and until when: a worker that stops renewing its
    # lease is presumed dead and the job is claimed again (api/jobs.py).
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FleetImport(Base):
    """One file of fleet job records (CSV, JSON, sacct, nvidia-smi) imported in one transaction;
    ``report`` keeps the rejected lines and unknown model names as JSON."""

    __tablename__ = "fleet_import"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    rows_imported: Mapped[int] = mapped_column(Integer)
    rows_rejected: Mapped[int] = mapped_column(Integer)
    report: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FleetJob(Base):
    """One cluster job (paper Fig 1's unit).  ``model_name`` is kept even when the model is not
    registered yet, so registering it later brings the job into the per-parameter figures."""

    __tablename__ = "fleet_job"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(Text)
    cluster: Mapped[str | None] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("model.id", ondelete="SET NULL"), index=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    phase: Mapped[str] = mapped_column(String(16))  # training / inference
    gpu_count: Mapped[int] = mapped_column(Integer)
    gpu_type: Mapped[str | None] = mapped_column(String(64))
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    gpu_hours: Mapped[float] = mapped_column(Float)
    mean_mem_util: Mapped[float | None] = mapped_column(Float)  # 0..1
    peak_mem_util: Mapped[float | None] = mapped_column(Float)
    sm_util: Mapped[float | None] = mapped_column(Float)
    import_id: Mapped[int] = mapped_column(ForeignKey("fleet_import.id", ondelete="CASCADE"), index=True)

    # Finds the earlier copy of a job when an overlapping accounting dump is imported again.
    __table_args__ = (Index("ix_fleet_job_job_id", "job_id"),)


class FleetRollup(Base):
    """model name × cluster × GPU type × phase × month → sums, refreshed per touched month at
    import, so the fleet comparison reads thousands of rows, not millions of jobs.  Keyed by
    model name (joined to ``model`` at query time) so registry changes need no refresh."""

    __tablename__ = "fleet_rollup"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM of the job's start, UTC
    model_name: Mapped[str] = mapped_column(String(200))
    cluster: Mapped[str | None] = mapped_column(String(200))
    gpu_type: Mapped[str | None] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(16))
    jobs: Mapped[int] = mapped_column(BigInteger)
    gpu_hours: Mapped[float] = mapped_column(Float)
    gpu_sum: Mapped[float] = mapped_column(Float)  # sum of gpu_count
    gpu_sq_sum: Mapped[float] = mapped_column(Float)  # sum of gpu_count², for the spread
    gpu_x_hours: Mapped[float] = mapped_column(Float)  # sum of gpu_count · gpu_hours
    mem_hours: Mapped[float] = mapped_column(Float)  # sum of gpu_hours · mean_mem_util
    mem_weight: Mapped[float] = mapped_column(Float)  # gpu_hours of jobs with a mean figure
    peak_hours: Mapped[float] = mapped_column(Float)
    peak_weight: Mapped[float] = mapped_column(Float)
    sm_hours: Mapped[float] = mapped_column(Float)
    sm_weight: Mapped[float] = mapped_column(Float)


class NcuMetric(Base):
    """One Nsight Compute counter of one profiled kernel launch (kernel × metric, long form)."""

    __tablename__ = "ncu_metric"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    kernel_id: Mapped[int] = mapped_column(Integer)  # ncu's launch ID: order within the run
    name_id: Mapped[int] = mapped_column(ForeignKey("symbol.id"))
    metric_name: Mapped[str] = mapped_column(String(200))
    metric_unit: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    # The run's timeline kernel this launch was matched to (name and order), when the run has
    # one.  No FK constraint: kernel and counter rows only ever go together, with their run.
    kernel_ref: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_ncu_metric_run_id_metric_name", "run_id", "metric_name"),)


ALL_TABLES = tuple(Base.metadata.sorted_tables)
__all__ = [
    "ApiToken",
    "Base",
    "FleetImport",
    "FleetJob",
    "FleetRollup",
    "Hardware",
    "IngestJob",
    "Kernel",
    "KernelRollup",
    "Model",
    "OperatorRollup",
    "Run",
    "RunTag",
    "Symbol",
    "Trace",
]

from tracehouse.schema import experiments as _experiments  # noqa: E402,F401  (baselines)
from tracehouse.schema import launches as _launches  # noqa: E402,F401  (the launch rollup)
from tracehouse.schema import memory as _memory  # noqa: E402,F401  (the profiler's memory events)
from tracehouse.schema import sync as _sync  # noqa: E402,F401  (cross-stream waits, for the critical path)
