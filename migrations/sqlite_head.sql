-- What the Alembic migrations leave in a new SQLite file: schema/sqlite_head.py makes new
-- files from it while this revision is the head.  Generated: python -m tracehouse.schema.sqlite_head
-- revision: 0015_query_paths
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE hardware (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	catalog_key VARCHAR(64), 
	vendor VARCHAR(32), 
	sm_count INTEGER, 
	memory_bytes BIGINT, 
	compute_capability VARCHAR(16), 
	peak_fp64_flops FLOAT, 
	peak_fp32_flops FLOAT, 
	peak_tf32_flops FLOAT, 
	peak_fp16_flops FLOAT, 
	peak_bf16_flops FLOAT, 
	peak_int8_ops FLOAT, 
	peak_bandwidth_bytes_s FLOAT, 
	CONSTRAINT pk_hardware PRIMARY KEY (id), 
	CONSTRAINT uq_hardware_name UNIQUE (name)
);
CREATE TABLE model (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	family VARCHAR(16), 
	architecture VARCHAR(64), 
	param_count BIGINT, 
	CONSTRAINT pk_model PRIMARY KEY (id), 
	CONSTRAINT uq_model_name UNIQUE (name)
);
CREATE TABLE symbol (
	id INTEGER NOT NULL, 
	digest VARCHAR(40) NOT NULL, 
	text TEXT NOT NULL, 
	CONSTRAINT pk_symbol PRIMARY KEY (id), 
	CONSTRAINT uq_symbol_digest UNIQUE (digest)
);
CREATE TABLE kernel_rollup (
	run_id INTEGER NOT NULL, 
	name_id INTEGER NOT NULL, 
	operator VARCHAR(32) NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	kernel_count BIGINT NOT NULL, 
	total_ns BIGINT NOT NULL, 
	min_ns BIGINT NOT NULL, 
	max_ns BIGINT NOT NULL, 
	CONSTRAINT pk_kernel_rollup PRIMARY KEY (run_id, name_id, operator), 
	CONSTRAINT fk_kernel_rollup_name_id_symbol FOREIGN KEY(name_id) REFERENCES symbol (id), 
	CONSTRAINT fk_kernel_rollup_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE
);
CREATE TABLE operator_rollup (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	operator VARCHAR(32) NOT NULL, 
	attention_type VARCHAR(32), 
	seq_q INTEGER, 
	seq_kv INTEGER, 
	component VARCHAR(32), 
	kernel_count BIGINT NOT NULL, 
	total_ns BIGINT NOT NULL, op_flops BIGINT, op_bytes BIGINT, costed_ns BIGINT, 
	CONSTRAINT pk_operator_rollup PRIMARY KEY (id), 
	CONSTRAINT fk_operator_rollup_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE
);
CREATE INDEX ix_operator_rollup_run_id ON operator_rollup (run_id);
CREATE TABLE run_tag (
	run_id INTEGER NOT NULL, 
	"key" VARCHAR(200) NOT NULL, 
	value TEXT NOT NULL, 
	CONSTRAINT pk_run_tag PRIMARY KEY (run_id, "key"), 
	CONSTRAINT fk_run_tag_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE
);
CREATE TABLE api_token (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	scope VARCHAR(8) NOT NULL, 
	token_sha256 VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	revoked BOOLEAN NOT NULL, 
	CONSTRAINT pk_api_token PRIMARY KEY (id), 
	CONSTRAINT uq_api_token_token_sha256 UNIQUE (token_sha256)
);
CREATE TABLE fleet_import (
	id INTEGER NOT NULL, 
	source TEXT NOT NULL, 
	format VARCHAR(16) NOT NULL, 
	rows_imported INTEGER NOT NULL, 
	rows_rejected INTEGER NOT NULL, 
	report TEXT, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_fleet_import PRIMARY KEY (id)
);
CREATE TABLE fleet_rollup (
	id INTEGER NOT NULL, 
	month VARCHAR(7) NOT NULL, 
	model_name VARCHAR(200) NOT NULL, 
	cluster VARCHAR(200), 
	gpu_type VARCHAR(64), 
	phase VARCHAR(16) NOT NULL, 
	jobs BIGINT NOT NULL, 
	gpu_hours FLOAT NOT NULL, 
	gpu_sum FLOAT NOT NULL, 
	gpu_sq_sum FLOAT NOT NULL, 
	gpu_x_hours FLOAT NOT NULL, 
	mem_hours FLOAT NOT NULL, 
	mem_weight FLOAT NOT NULL, 
	peak_hours FLOAT NOT NULL, 
	peak_weight FLOAT NOT NULL, 
	sm_hours FLOAT NOT NULL, 
	sm_weight FLOAT NOT NULL, 
	CONSTRAINT pk_fleet_rollup PRIMARY KEY (id)
);
CREATE INDEX ix_fleet_rollup_month ON fleet_rollup (month);
CREATE TABLE fleet_job (
	id INTEGER NOT NULL, 
	job_id TEXT NOT NULL, 
	cluster VARCHAR(200), 
	host TEXT, 
	model_id INTEGER, 
	model_name VARCHAR(200) NOT NULL, 
	phase VARCHAR(16) NOT NULL, 
	gpu_count INTEGER NOT NULL, 
	gpu_type VARCHAR(64), 
	start DATETIME NOT NULL, 
	"end" DATETIME NOT NULL, 
	gpu_hours FLOAT NOT NULL, 
	mean_mem_util FLOAT, 
	peak_mem_util FLOAT, 
	sm_util FLOAT, 
	import_id INTEGER NOT NULL, 
	CONSTRAINT pk_fleet_job PRIMARY KEY (id), 
	CONSTRAINT fk_fleet_job_import_id_fleet_import FOREIGN KEY(import_id) REFERENCES fleet_import (id) ON DELETE CASCADE, 
	CONSTRAINT fk_fleet_job_model_id_model FOREIGN KEY(model_id) REFERENCES model (id) ON DELETE SET NULL
);
CREATE INDEX ix_fleet_job_import_id ON fleet_job (import_id);
CREATE INDEX ix_fleet_job_model_id ON fleet_job (model_id);
CREATE INDEX ix_fleet_job_model_name ON fleet_job (model_name);
CREATE INDEX ix_fleet_job_start ON fleet_job (start);
CREATE TABLE ncu_metric (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	kernel_id INTEGER NOT NULL, 
	name_id INTEGER NOT NULL, 
	metric_name VARCHAR(200) NOT NULL, 
	metric_unit VARCHAR(64), 
	value FLOAT, kernel_ref BIGINT, 
	CONSTRAINT pk_ncu_metric PRIMARY KEY (id), 
	CONSTRAINT fk_ncu_metric_name_id_symbol FOREIGN KEY(name_id) REFERENCES symbol (id), 
	CONSTRAINT fk_ncu_metric_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE
);
CREATE INDEX ix_ncu_metric_run_id_metric_name ON ncu_metric (run_id, metric_name);
CREATE INDEX ix_fleet_job_job_id ON fleet_job (job_id);
CREATE TABLE "run" (
	id INTEGER NOT NULL, 
	model_id INTEGER, 
	hardware_id INTEGER, 
	attention_backend VARCHAR(32), 
	scale VARCHAR(16), 
	batch INTEGER, 
	dtype VARCHAR(16), 
	image_size INTEGER, 
	frames INTEGER, 
	denoising_steps INTEGER, 
	decode_tokens INTEGER, 
	text_length INTEGER, 
	param_count BIGINT, 
	peak_memory_bytes BIGINT, 
	rank INTEGER, 
	world_size INTEGER, 
	host VARCHAR(200), 
	device_kind VARCHAR(8) NOT NULL, 
	kernel_count BIGINT NOT NULL, 
	total_ns BIGINT NOT NULL, 
	span_ns BIGINT NOT NULL, 
	created_at DATETIME NOT NULL, 
	uploaded_by_token_id INTEGER, other_ns BIGINT, graph_ns BIGINT, experiment VARCHAR(200), git_commit VARCHAR(64), version VARCHAR(64), memcpy_count BIGINT DEFAULT '0' NOT NULL, memset_count BIGINT DEFAULT '0' NOT NULL, 
	CONSTRAINT pk_run PRIMARY KEY (id), 
	CONSTRAINT fk_run_hardware_id_hardware FOREIGN KEY(hardware_id) REFERENCES hardware (id), 
	CONSTRAINT fk_run_model_id_model FOREIGN KEY(model_id) REFERENCES model (id), 
	CONSTRAINT fk_run_uploaded_by_token_id_api_token FOREIGN KEY(uploaded_by_token_id) REFERENCES api_token (id) ON DELETE SET NULL
);
CREATE INDEX ix_run_hardware_id ON run (hardware_id);
CREATE INDEX ix_run_model_id ON run (model_id);
CREATE TABLE "trace" (
	id INTEGER NOT NULL, 
	run_id INTEGER, 
	format VARCHAR(16) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	size_bytes BIGINT NOT NULL, 
	event_count BIGINT NOT NULL, 
	original_name TEXT NOT NULL, 
	raw_path TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	warning_count INTEGER NOT NULL, 
	warnings TEXT, 
	ingested_at DATETIME NOT NULL, 
	content_sha256 VARCHAR(64) NOT NULL, 
	CONSTRAINT pk_trace PRIMARY KEY (id), 
	CONSTRAINT uq_trace_sha256 UNIQUE (sha256), 
	CONSTRAINT fk_trace_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE, 
	CONSTRAINT uq_trace_content_sha256 UNIQUE (content_sha256)
);
CREATE INDEX ix_trace_run_id ON trace (run_id);
CREATE TABLE "ingest_job" (
	id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	original_name TEXT NOT NULL, 
	upload_path TEXT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	size_bytes BIGINT NOT NULL, 
	meta TEXT, 
	run_id INTEGER, 
	error TEXT, 
	token_id INTEGER, 
	attempts INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	target_run_id INTEGER, 
	duplicate_of INTEGER, worker_id VARCHAR(200), lease_expires_at DATETIME, 
	CONSTRAINT pk_ingest_job PRIMARY KEY (id), 
	CONSTRAINT fk_ingest_job_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE SET NULL, 
	CONSTRAINT fk_ingest_job_token_id_api_token FOREIGN KEY(token_id) REFERENCES api_token (id), 
	CONSTRAINT fk_ingest_job_duplicate_of_run FOREIGN KEY(duplicate_of) REFERENCES run (id) ON DELETE SET NULL
);
CREATE INDEX ix_ingest_job_status ON ingest_job (status);
CREATE TABLE "kernel" (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	trace_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	device INTEGER, 
	stream BIGINT, 
	start_ns BIGINT NOT NULL, 
	dur_ns BIGINT NOT NULL, 
	name_id INTEGER NOT NULL, 
	correlation BIGINT, 
	grid_x INTEGER, 
	grid_y INTEGER, 
	grid_z INTEGER, 
	block_x INTEGER, 
	block_y INTEGER, 
	block_z INTEGER, 
	bytes BIGINT, 
	operator VARCHAR(32) NOT NULL, 
	operator_source VARCHAR(16) NOT NULL, 
	attention_type VARCHAR(32), 
	seq_q INTEGER, 
	seq_kv INTEGER, 
	batch INTEGER, 
	heads INTEGER, 
	head_dim INTEGER, 
	component VARCHAR(32), 
	step INTEGER, 
	cpu_op_id INTEGER, 
	annotation_id INTEGER, 
	op_flops BIGINT, 
	op_bytes BIGINT, 
	launch_ns BIGINT, 
	launch_dur_ns BIGINT, 
	graph BOOLEAN DEFAULT 0 NOT NULL, 
	rule_id VARCHAR(64), 
	deciding_op_id INTEGER, 
	CONSTRAINT pk_kernel PRIMARY KEY (id), 
	CONSTRAINT fk_kernel_cpu_op_id_symbol FOREIGN KEY(cpu_op_id) REFERENCES symbol (id), 
	CONSTRAINT fk_kernel_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE, 
	CONSTRAINT fk_kernel_annotation_id_symbol FOREIGN KEY(annotation_id) REFERENCES symbol (id), 
	CONSTRAINT fk_kernel_trace_id_trace FOREIGN KEY(trace_id) REFERENCES trace (id) ON DELETE CASCADE, 
	CONSTRAINT fk_kernel_name_id_symbol FOREIGN KEY(name_id) REFERENCES symbol (id), 
	CONSTRAINT fk_kernel_deciding_op_id_symbol FOREIGN KEY(deciding_op_id) REFERENCES symbol (id)
);
CREATE INDEX ix_kernel_run_id_operator ON kernel (run_id, operator);
CREATE INDEX ix_kernel_run_id_seq ON kernel (run_id, seq);
CREATE INDEX ix_kernel_trace_id ON kernel (trace_id);
CREATE INDEX ix_run_experiment ON run (experiment);
CREATE TABLE baseline (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	note TEXT, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_baseline PRIMARY KEY (id), 
	CONSTRAINT uq_baseline_name UNIQUE (name)
);
CREATE TABLE baseline_run (
	baseline_id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	CONSTRAINT pk_baseline_run PRIMARY KEY (baseline_id, run_id), 
	CONSTRAINT fk_baseline_run_baseline_id_baseline FOREIGN KEY(baseline_id) REFERENCES baseline (id) ON DELETE CASCADE, 
	CONSTRAINT fk_baseline_run_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE
);
CREATE INDEX ix_baseline_run_run_id ON baseline_run (run_id);
CREATE TABLE memory_event (
	run_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	trace_id INTEGER NOT NULL, 
	ts_ns BIGINT NOT NULL, 
	device_type SMALLINT NOT NULL, 
	device_id SMALLINT NOT NULL, 
	bytes BIGINT NOT NULL, 
	total_allocated BIGINT, 
	total_reserved BIGINT, 
	addr BIGINT, 
	component VARCHAR(32), 
	operator VARCHAR(32), 
	attention_type VARCHAR(32), 
	step INTEGER, 
	cpu_op_id INTEGER, 
	CONSTRAINT pk_memory_event PRIMARY KEY (run_id, seq), 
	CONSTRAINT fk_memory_event_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE, 
	CONSTRAINT fk_memory_event_trace_id_trace FOREIGN KEY(trace_id) REFERENCES trace (id) ON DELETE CASCADE, 
	CONSTRAINT fk_memory_event_cpu_op_id_symbol FOREIGN KEY(cpu_op_id) REFERENCES symbol (id)
);
CREATE INDEX ix_memory_event_trace_id ON memory_event (trace_id);
CREATE INDEX ix_memory_event_run_id_device_type_device_id ON memory_event (run_id, device_type, device_id);
CREATE TABLE sync_edge (
	run_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	trace_id INTEGER NOT NULL, 
	tid BIGINT, 
	call_ns BIGINT NOT NULL, 
	dst_correlation BIGINT, 
	CONSTRAINT pk_sync_edge PRIMARY KEY (run_id, seq), 
	CONSTRAINT fk_sync_edge_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE, 
	CONSTRAINT fk_sync_edge_trace_id_trace FOREIGN KEY(trace_id) REFERENCES trace (id) ON DELETE CASCADE
);
CREATE INDEX ix_sync_edge_trace_id ON sync_edge (trace_id);
CREATE TABLE launch_rollup (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	dimension VARCHAR(16) NOT NULL, 
	name_id INTEGER, 
	group_key VARCHAR(64), 
	kernels BIGINT NOT NULL, 
	graph_kernels BIGINT NOT NULL, 
	launches BIGINT NOT NULL, 
	gpu_ns BIGINT NOT NULL, 
	launch_ns BIGINT NOT NULL, 
	launch_bound BIGINT NOT NULL, 
	delay_median_ns FLOAT, 
	delay_p95_ns FLOAT, 
	delay_max_ns BIGINT, 
	CONSTRAINT pk_launch_rollup PRIMARY KEY (id), 
	CONSTRAINT fk_launch_rollup_run_id_run FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE, 
	CONSTRAINT fk_launch_rollup_name_id_symbol FOREIGN KEY(name_id) REFERENCES symbol (id)
);
CREATE INDEX ix_launch_rollup_run_id_dimension ON launch_rollup (run_id, dimension);
