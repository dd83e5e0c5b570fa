"""openai_usage schema: completions_usage_hourly and usage_loads

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "openai_usage"
DIMENSIONS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source")
OPTIONAL_METRICS = (
    "input_cached_tokens",
    "input_cache_write_tokens",
    "input_cache_write_12h_tokens",
    "input_uncached_tokens",
    "input_text_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "input_cached_text_tokens",
    "input_cached_audio_tokens",
    "input_cached_image_tokens",
    "output_text_tokens",
    "output_audio_tokens",
    "output_image_tokens",
)


def unique_nulls_equal(table: str, name: str, columns: list[str]) -> None:
    """A unique key under which NULLs compare equal (a group with no user is still one group).

    PostgreSQL 15+ says so with NULLS NOT DISTINCT; on PostgreSQL 14 the same rule is a unique
    index over the columns with NULL mapped to '' (ids and names are never empty strings; the
    NOT NULL columns stay as they are, their text forms would not be IMMUTABLE).
    """
    if op.get_bind().dialect.server_version_info >= (15,):
        op.create_unique_constraint(
            name, table, columns, schema="openai_usage", postgresql_nulls_not_distinct=True
        )
        return
    nullable = {
        c["name"]: c["nullable"]
        for c in sa.inspect(op.get_bind()).get_columns(table, schema="openai_usage")
    }
    keys = ", ".join(
        f"coalesce({column}::text, '')" if nullable[column] else column for column in columns
    )
    op.execute(f"CREATE UNIQUE INDEX {name} ON openai_usage.{table} ({keys})")


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.create_table(
        "completions_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("api_key_id", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("batch", sa.Boolean(), nullable=True),
        sa.Column("service_tier", sa.Text(), nullable=True),
        sa.Column("api_source", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in OPTIONAL_METRICS),
        sa.Column(
            "result",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="The API's full result object, including fields unknown today.",
        ),
        sa.Column(
            "ingested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "bucket_end > bucket_start", name=op.f("ck_completions_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND num_model_requests >= 0",
            name=op.f("ck_completions_usage_hourly_nonnegative_totals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_completions_usage_hourly")),
        schema=SCHEMA,
        comment="OpenAI completions usage, one row per UTC hour and usage group.",
    )
    unique_nulls_equal(
        "completions_usage_hourly",
        "uq_completions_usage_hourly_bucket_group",
        ["bucket_start", *DIMENSIONS],
    )
    op.create_index(
        "ix_completions_usage_hourly_project_bucket",
        "completions_usage_hourly",
        ["project_id", "bucket_start"],
        schema=SCHEMA,
    )
    op.create_table(
        "usage_loads",
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("bucket_count", sa.Integer(), nullable=False),
        sa.Column("group_by", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("source_url", sa.String(length=500), nullable=False),
        sa.Column("dagster_run_id", sa.String(length=64), nullable=True),
        sa.Column(
            "loaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("usage_date", name=op.f("pk_usage_loads")),
        schema=SCHEMA,
        comment="One row per loaded UTC day of completions usage.",
    )


def downgrade() -> None:
    op.drop_table("usage_loads", schema=SCHEMA)
    op.drop_table("completions_usage_hourly", schema=SCHEMA)
