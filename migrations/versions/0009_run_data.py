"""runs remember the token that uploaded them; traces dedupe on content; jobs say duplicate

Revision ID: 0009_run_data
Revises: 0008
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_run_data"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uploaded_by_token_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_run_uploaded_by_token_id_api_token"),
            "api_token",
            ["uploaded_by_token_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("trace", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
    # Old rows keep their file's digest as content digest: right for every uncompressed file, and
    # a gzip file's digest can never equal a decompressed trace's, so it never matches wrongly.
    op.execute("UPDATE trace SET content_sha256 = sha256")
    with op.batch_alter_table("trace", schema=None) as batch_op:
        batch_op.alter_column("content_sha256", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_trace_content_sha256"), ["content_sha256"])
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duplicate_of", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_ingest_job_duplicate_of_run"), "run", ["duplicate_of"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_ingest_job_duplicate_of_run"), type_="foreignkey")
        batch_op.drop_column("duplicate_of")
    with op.batch_alter_table("trace", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_trace_content_sha256"), type_="unique")
        batch_op.drop_column("content_sha256")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_run_uploaded_by_token_id_api_token"), type_="foreignkey")
        batch_op.drop_column("uploaded_by_token_id")
