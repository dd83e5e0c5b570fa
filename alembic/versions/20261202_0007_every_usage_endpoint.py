"""Every usage endpoint: nine more hourly tables, loads and revisions per endpoint

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 03:00:00

`embeddings`, `moderations`, `images`, `audio_speeches`, `audio_transcriptions`, `vector_stores`,
`code_interpreter_sessions`, `file_search_calls` and `web_search_calls` each get an
`<name>_usage_hourly` table shaped like `completions_usage_hourly`: bucket bounds, one column
per group_by dimension, a bigint per metric, the whole result, unique per bucket and group with
NULLs equal. `usage_loads` and `usage_day_revisions` gain `endpoint` (in their keys; existing
rows are completions), the endpoint's `volume` and every metric's `totals`; their views gain the
endpoint. `v_vector_store_storage_daily` turns the hourly storage gauge into GiB-days.

Downgrade drops the new tables and the loads and revisions of the other endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"


def unique_nulls_equal(table: str, name: str, columns: list[str]) -> None:
    """A unique key under which NULLs compare equal (see migration 0001): NULLS NOT DISTINCT on
    PostgreSQL 15+, a unique index over coalesce(column::text, '') on PostgreSQL 14."""
    if op.get_bind().dialect.server_version_info >= (15,):
        op.create_unique_constraint(
            name, table, columns, schema=S, postgresql_nulls_not_distinct=True
        )
        return
    nullable = {
        c["name"]: c["nullable"] for c in sa.inspect(op.get_bind()).get_columns(table, schema=S)
    }
    keys = ", ".join(
        f"coalesce({column}::text, '')" if nullable[column] else column for column in columns
    )
    op.execute(f"CREATE UNIQUE INDEX {name} ON {S}.{table} ({keys})")


#: One row per load; negative `days_after_close` means the day was still open (today).
#: `*_tokens` are completions' (NULL for other endpoints); `*_volume` is each endpoint's own
#: measure (completions: input + output tokens; images: images; ...).
REVISIONS_VIEW = f"""
CREATE VIEW {S}.v_usage_day_revisions AS
WITH r AS (
    SELECT
        r.*,
        extract(epoch FROM r.loaded_at - ((r.usage_date + 1)::timestamp AT TIME ZONE 'UTC'))
            AS seconds_after_close,
        r.previous_input_tokens + r.previous_output_tokens AS previous_tokens,
        r.new_input_tokens + r.new_output_tokens AS new_tokens
    FROM {S}.usage_day_revisions r
)
SELECT
    r.usage_date,
    r.revision,
    r.dagster_run_id,
    r.loaded_at,
    r.day_closed,
    round(r.seconds_after_close / 3600, 1) AS hours_after_close,
    floor(r.seconds_after_close / 86400)::integer AS days_after_close,
    r.bucket_count,
    r.previous_row_count,
    r.new_row_count,
    r.new_row_count - r.previous_row_count AS row_change,
    r.new_row_count - first_value(coalesce(r.previous_row_count, r.new_row_count)) OVER w
        AS row_change_vs_first,
    r.previous_tokens,
    r.new_tokens,
    r.new_tokens - r.previous_tokens AS token_change,
    r.new_tokens - first_value(coalesce(r.previous_tokens, r.new_tokens)) OVER w
        AS token_change_vs_first,
    r.new_num_model_requests - r.previous_num_model_requests AS request_change,
    r.previous_input_tokens, r.new_input_tokens,
    r.previous_output_tokens, r.new_output_tokens,
    r.previous_num_model_requests, r.new_num_model_requests,
    r.endpoint,
    r.previous_volume,
    r.new_volume,
    r.new_volume - r.previous_volume AS volume_change,
    r.new_volume - first_value(coalesce(r.previous_volume, r.new_volume)) OVER w
        AS volume_change_vs_first,
    r.previous_totals,
    r.new_totals
FROM r
WINDOW w AS (PARTITION BY r.endpoint, r.usage_date ORDER BY r.revision)
"""

#: Reloads grouped by endpoint and by how long after the day closed they ran: the volume each
#: brought in, and its share of the days' latest volume.
LATE_ARRIVAL_VIEW = f"""
CREATE VIEW {S}.v_usage_late_arrival AS
WITH reloads AS (
    SELECT
        v.*,
        last_value(v.new_volume) OVER (
            PARTITION BY v.endpoint, v.usage_date ORDER BY v.revision
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS latest_volume
    FROM {S}.v_usage_day_revisions v
    WHERE v.previous_volume IS NOT NULL
)
SELECT
    days_after_close,
    count(*) AS reloads,
    count(DISTINCT usage_date) AS days,
    sum(row_change) AS rows_added,
    sum(token_change) AS tokens_added,
    sum(greatest(-token_change, 0)) AS tokens_lost,
    round(100.0 * sum(token_change) / nullif(sum(latest_volume), 0), 4)
        AS pct_of_latest_tokens,
    endpoint,
    sum(volume_change) AS volume_added,
    sum(greatest(-volume_change, 0)) AS volume_lost,
    round(100.0 * sum(volume_change) / nullif(sum(latest_volume), 0), 4)
        AS pct_of_latest_volume
FROM reloads
GROUP BY endpoint, days_after_close
"""

#: Vector store storage is a gauge (bytes stored in each hour): a day's storage, the unit it
#: is billed in, is the mean over the day's 24 hours (an hour with no row stored nothing), in
#: GiB (2^30 bytes). Never sum usage_bytes over hours yourself.
VECTOR_STORE_DAILY_VIEW = f"""
CREATE VIEW {S}.v_vector_store_storage_daily AS
SELECT
    (v.bucket_start AT TIME ZONE 'UTC')::date AS usage_date,
    v.project_id,
    count(DISTINCT v.bucket_start) AS hours_reported,
    max(v.usage_bytes) AS max_usage_bytes,
    round(sum(v.usage_bytes)::numeric / 24, 0) AS mean_usage_bytes,
    sum(v.usage_bytes)::numeric / 24 / 1073741824 AS gib_days
FROM {S}.vector_stores_usage_hourly v
GROUP BY 1, 2
"""

#: 0005's views, restored by the downgrade.
OLD_REVISIONS_VIEW = f"""
CREATE VIEW {S}.v_usage_day_revisions AS
WITH r AS (
    SELECT
        r.*,
        extract(epoch FROM r.loaded_at - ((r.usage_date + 1)::timestamp AT TIME ZONE 'UTC'))
            AS seconds_after_close,
        r.previous_input_tokens + r.previous_output_tokens AS previous_tokens,
        r.new_input_tokens + r.new_output_tokens AS new_tokens
    FROM {S}.usage_day_revisions r
)
SELECT
    r.usage_date,
    r.revision,
    r.dagster_run_id,
    r.loaded_at,
    r.day_closed,
    round(r.seconds_after_close / 3600, 1) AS hours_after_close,
    floor(r.seconds_after_close / 86400)::integer AS days_after_close,
    r.bucket_count,
    r.previous_row_count,
    r.new_row_count,
    r.new_row_count - r.previous_row_count AS row_change,
    r.new_row_count - first_value(coalesce(r.previous_row_count, r.new_row_count)) OVER w
        AS row_change_vs_first,
    r.previous_tokens,
    r.new_tokens,
    r.new_tokens - r.previous_tokens AS token_change,
    r.new_tokens - first_value(coalesce(r.previous_tokens, r.new_tokens)) OVER w
        AS token_change_vs_first,
    r.new_num_model_requests - r.previous_num_model_requests AS request_change,
    r.previous_input_tokens, r.new_input_tokens,
    r.previous_output_tokens, r.new_output_tokens,
    r.previous_num_model_requests, r.new_num_model_requests
FROM r
WINDOW w AS (PARTITION BY r.usage_date ORDER BY r.revision)
"""

OLD_LATE_ARRIVAL_VIEW = f"""
CREATE VIEW {S}.v_usage_late_arrival AS
WITH reloads AS (
    SELECT
        v.*,
        last_value(v.new_tokens) OVER (
            PARTITION BY v.usage_date ORDER BY v.revision
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS latest_tokens
    FROM {S}.v_usage_day_revisions v
    WHERE v.previous_tokens IS NOT NULL
)
SELECT
    days_after_close,
    count(*) AS reloads,
    count(DISTINCT usage_date) AS days,
    sum(row_change) AS rows_added,
    sum(token_change) AS tokens_added,
    sum(greatest(-token_change, 0)) AS tokens_lost,
    round(100.0 * sum(token_change) / nullif(sum(latest_tokens), 0), 4)
        AS pct_of_latest_tokens
FROM reloads
GROUP BY days_after_close
"""


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "audio_speeches_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no user (service account key), or not grouped.",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no key (e.g. playground), or not grouped.",
        ),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column(
            "characters", sa.BigInteger(), nullable=False, comment="Characters turned into speech."
        ),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=True),
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
            "bucket_end > bucket_start", name=op.f("ck_audio_speeches_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint(
            "characters >= 0", name=op.f("ck_audio_speeches_usage_hourly_nonnegative_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audio_speeches_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI audio_speeches usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_audio_speeches_usage_hourly_project_bucket",
        "audio_speeches_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "audio_speeches_usage_hourly",
        "uq_audio_speeches_usage_hourly_bucket_group",
        ["bucket_start", "project_id", "user_id", "api_key_id", "model"],
    )
    op.create_table(
        "audio_transcriptions_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no user (service account key), or not grouped.",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no key (e.g. playground), or not grouped.",
        ),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column(
            "seconds", sa.BigInteger(), nullable=False, comment="Seconds of audio transcribed."
        ),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=True),
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
            "bucket_end > bucket_start",
            name=op.f("ck_audio_transcriptions_usage_hourly_bucket_order"),
        ),
        sa.CheckConstraint(
            "seconds >= 0", name=op.f("ck_audio_transcriptions_usage_hourly_nonnegative_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audio_transcriptions_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI audio_transcriptions usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_audio_transcriptions_usage_hourly_project_bucket",
        "audio_transcriptions_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "audio_transcriptions_usage_hourly",
        "uq_audio_transcriptions_usage_hourly_bucket_group",
        ["bucket_start", "project_id", "user_id", "api_key_id", "model"],
    )
    op.create_table(
        "code_interpreter_sessions_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "num_sessions",
            sa.BigInteger(),
            nullable=False,
            comment="Code interpreter sessions started.",
        ),
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
            "bucket_end > bucket_start",
            name=op.f("ck_code_interpreter_sessions_usage_hourly_bucket_order"),
        ),
        sa.CheckConstraint(
            "num_sessions >= 0",
            name=op.f("ck_code_interpreter_sessions_usage_hourly_nonnegative_totals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_interpreter_sessions_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI code_interpreter_sessions usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_code_interpreter_sessions_usage_hourly_project_bucket",
        "code_interpreter_sessions_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "code_interpreter_sessions_usage_hourly",
        "uq_code_interpreter_sessions_usage_hourly_bucket_group",
        ["bucket_start", "project_id"],
    )
    op.create_table(
        "embeddings_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no user (service account key), or not grouped.",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no key (e.g. playground), or not grouped.",
        ),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=True),
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
            "bucket_end > bucket_start", name=op.f("ck_embeddings_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint(
            "input_tokens >= 0", name=op.f("ck_embeddings_usage_hourly_nonnegative_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI embeddings usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_embeddings_usage_hourly_project_bucket",
        "embeddings_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "embeddings_usage_hourly",
        "uq_embeddings_usage_hourly_bucket_group",
        ["bucket_start", "project_id", "user_id", "api_key_id", "model"],
    )
    op.create_table(
        "file_search_calls_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no user (service account key), or not grouped.",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no key (e.g. playground), or not grouped.",
        ),
        sa.Column("vector_store_id", sa.Text(), nullable=True),
        sa.Column(
            "num_requests", sa.BigInteger(), nullable=False, comment="File search tool calls."
        ),
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
            "bucket_end > bucket_start", name=op.f("ck_file_search_calls_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint(
            "num_requests >= 0", name=op.f("ck_file_search_calls_usage_hourly_nonnegative_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_search_calls_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI file_search_calls usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_file_search_calls_usage_hourly_project_bucket",
        "file_search_calls_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "file_search_calls_usage_hourly",
        "uq_file_search_calls_usage_hourly_bucket_group",
        ["bucket_start", "project_id", "user_id", "api_key_id", "vector_store_id"],
    )
    op.create_table(
        "images_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no user (service account key), or not grouped.",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no key (e.g. playground), or not grouped.",
        ),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column(
            "size",
            sa.Text(),
            nullable=True,
            comment="256x256, 512x512, 1024x1024, 1792x1792 or 1024x1792.",
        ),
        sa.Column(
            "source",
            sa.Text(),
            nullable=True,
            comment="image.generation, image.edit or image.variation.",
        ),
        sa.Column("images", sa.BigInteger(), nullable=False, comment="Images produced."),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=True),
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
            "bucket_end > bucket_start", name=op.f("ck_images_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint("images >= 0", name=op.f("ck_images_usage_hourly_nonnegative_totals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI images usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_images_usage_hourly_project_bucket",
        "images_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "images_usage_hourly",
        "uq_images_usage_hourly_bucket_group",
        ["bucket_start", "project_id", "user_id", "api_key_id", "model", "size", "source"],
    )
    op.create_table(
        "moderations_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no user (service account key), or not grouped.",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no key (e.g. playground), or not grouped.",
        ),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=True),
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
            "bucket_end > bucket_start", name=op.f("ck_moderations_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint(
            "input_tokens >= 0", name=op.f("ck_moderations_usage_hourly_nonnegative_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderations_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI moderations usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_moderations_usage_hourly_project_bucket",
        "moderations_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "moderations_usage_hourly",
        "uq_moderations_usage_hourly_bucket_group",
        ["bucket_start", "project_id", "user_id", "api_key_id", "model"],
    )
    op.create_table(
        "vector_stores_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "usage_bytes",
            sa.BigInteger(),
            nullable=False,
            comment="Bytes stored in the hour: a size, never summed over hours (see v_vector_store_storage_daily for GiB-days).",
        ),
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
            "bucket_end > bucket_start", name=op.f("ck_vector_stores_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint(
            "usage_bytes >= 0", name=op.f("ck_vector_stores_usage_hourly_nonnegative_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vector_stores_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI vector_stores usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_vector_stores_usage_hourly_project_bucket",
        "vector_stores_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "vector_stores_usage_hourly",
        "uq_vector_stores_usage_hourly_bucket_group",
        ["bucket_start", "project_id"],
    )
    op.create_table(
        "web_search_calls_usage_hourly",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="NULL: the default project, or not grouped by it.",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no user (service account key), or not grouped.",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: no key (e.g. playground), or not grouped.",
        ),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column(
            "context_level",
            sa.Text(),
            nullable=True,
            comment="Search context size: low, medium or high.",
        ),
        sa.Column("api_source", sa.Text(), nullable=True),
        sa.Column(
            "num_requests", sa.BigInteger(), nullable=False, comment="Web search tool calls."
        ),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=True),
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
            "bucket_end > bucket_start", name=op.f("ck_web_search_calls_usage_hourly_bucket_order")
        ),
        sa.CheckConstraint(
            "num_requests >= 0", name=op.f("ck_web_search_calls_usage_hourly_nonnegative_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_search_calls_usage_hourly")),
        schema="openai_usage",
        comment="OpenAI web_search_calls usage, one row per UTC hour and usage group.",
    )
    op.create_index(
        "ix_web_search_calls_usage_hourly_project_bucket",
        "web_search_calls_usage_hourly",
        ["project_id", "bucket_start"],
        unique=False,
        schema="openai_usage",
    )
    unique_nulls_equal(
        "web_search_calls_usage_hourly",
        "uq_web_search_calls_usage_hourly_bucket_group",
        [
            "bucket_start",
            "project_id",
            "user_id",
            "api_key_id",
            "model",
            "context_level",
            "api_source",
        ],
    )
    op.add_column(
        "usage_day_revisions",
        sa.Column("endpoint", sa.Text(), server_default="completions", nullable=False),
        schema="openai_usage",
    )
    op.add_column(
        "usage_day_revisions",
        sa.Column(
            "previous_volume",
            sa.BigInteger(),
            nullable=True,
            comment="The endpoint's volume before (completions: tokens).",
        ),
        schema="openai_usage",
    )
    op.add_column(
        "usage_day_revisions",
        sa.Column("new_volume", sa.BigInteger(), nullable=True),
        schema="openai_usage",
    )
    op.add_column(
        "usage_day_revisions",
        sa.Column("previous_totals", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema="openai_usage",
    )
    op.add_column(
        "usage_day_revisions",
        sa.Column("new_totals", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema="openai_usage",
    )
    op.alter_column(
        "usage_day_revisions",
        "new_input_tokens",
        existing_type=sa.BIGINT(),
        nullable=True,
        schema="openai_usage",
    )
    op.alter_column(
        "usage_day_revisions",
        "new_output_tokens",
        existing_type=sa.BIGINT(),
        nullable=True,
        schema="openai_usage",
    )
    op.alter_column(
        "usage_day_revisions",
        "new_num_model_requests",
        existing_type=sa.BIGINT(),
        nullable=True,
        schema="openai_usage",
    )
    op.add_column(
        "usage_loads",
        sa.Column(
            "endpoint",
            sa.Text(),
            server_default="completions",
            nullable=False,
            comment="The usage endpoint: completions, embeddings, images, ... (its table is <endpoint>_usage_hourly).",
        ),
        schema="openai_usage",
    )
    op.add_column(
        "usage_loads",
        sa.Column(
            "totals",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="Sum of each metric over the day's rows (gauges: summed per hour).",
        ),
        schema="openai_usage",
    )
    op.add_column(
        "usage_loads",
        sa.Column(
            "volume",
            sa.BigInteger(),
            nullable=True,
            comment="The endpoint's volume (completions: input + output tokens).",
        ),
        schema="openai_usage",
    )
    op.create_table_comment(
        "usage_loads",
        "One row per usage endpoint and loaded UTC day.",
        existing_comment="One row per loaded UTC day of completions usage.",
        schema="openai_usage",
    )
    # The endpoint joins the keys of the loads and revisions (the existing rows: completions).
    op.execute(f"DROP VIEW {S}.v_usage_late_arrival")
    op.execute(f"DROP VIEW {S}.v_usage_day_revisions")
    op.drop_constraint("pk_usage_loads", "usage_loads", schema=S, type_="primary")
    op.create_primary_key("pk_usage_loads", "usage_loads", ["endpoint", "usage_date"], schema=S)
    op.drop_constraint("pk_usage_day_revisions", "usage_day_revisions", schema=S, type_="primary")
    op.create_primary_key(
        "pk_usage_day_revisions",
        "usage_day_revisions",
        ["endpoint", "usage_date", "revision"],
        schema=S,
    )
    op.execute(
        f"""
        UPDATE {S}.usage_loads SET
            volume = input_tokens + output_tokens,
            totals = CASE WHEN input_tokens IS NOT NULL THEN jsonb_build_object(
                'input_tokens', input_tokens, 'output_tokens', output_tokens,
                'num_model_requests', num_model_requests) END
        """
    )
    op.execute(
        f"""
        UPDATE {S}.usage_day_revisions SET
            previous_volume = previous_input_tokens + previous_output_tokens,
            new_volume = new_input_tokens + new_output_tokens,
            previous_totals = CASE WHEN previous_input_tokens IS NOT NULL THEN jsonb_build_object(
                'input_tokens', previous_input_tokens, 'output_tokens', previous_output_tokens,
                'num_model_requests', previous_num_model_requests) END,
            new_totals = jsonb_build_object(
                'input_tokens', new_input_tokens, 'output_tokens', new_output_tokens,
                'num_model_requests', new_num_model_requests)
        """
    )
    op.execute(REVISIONS_VIEW)
    op.execute(LATE_ARRIVAL_VIEW)
    op.execute(VECTOR_STORE_DAILY_VIEW)
    # ### end Alembic commands ###


def downgrade() -> None:
    op.execute(f"DROP VIEW {S}.v_vector_store_storage_daily")
    op.execute(f"DROP VIEW {S}.v_usage_late_arrival")
    op.execute(f"DROP VIEW {S}.v_usage_day_revisions")
    op.execute(f"DELETE FROM {S}.usage_day_revisions WHERE endpoint <> 'completions'")
    op.execute(f"DELETE FROM {S}.usage_loads WHERE endpoint <> 'completions'")
    op.drop_constraint("pk_usage_loads", "usage_loads", schema=S, type_="primary")
    op.create_primary_key("pk_usage_loads", "usage_loads", ["usage_date"], schema=S)
    op.drop_constraint("pk_usage_day_revisions", "usage_day_revisions", schema=S, type_="primary")
    op.create_primary_key(
        "pk_usage_day_revisions", "usage_day_revisions", ["usage_date", "revision"], schema=S
    )
    op.create_table_comment(
        "usage_loads",
        "One row per loaded UTC day of completions usage.",
        existing_comment="One row per usage endpoint and loaded UTC day.",
        schema="openai_usage",
    )
    op.drop_column("usage_loads", "volume", schema="openai_usage")
    op.drop_column("usage_loads", "totals", schema="openai_usage")
    op.drop_column("usage_loads", "endpoint", schema="openai_usage")
    op.alter_column(
        "usage_day_revisions",
        "new_num_model_requests",
        existing_type=sa.BIGINT(),
        nullable=False,
        schema="openai_usage",
    )
    op.alter_column(
        "usage_day_revisions",
        "new_output_tokens",
        existing_type=sa.BIGINT(),
        nullable=False,
        schema="openai_usage",
    )
    op.alter_column(
        "usage_day_revisions",
        "new_input_tokens",
        existing_type=sa.BIGINT(),
        nullable=False,
        schema="openai_usage",
    )
    op.drop_column("usage_day_revisions", "new_totals", schema="openai_usage")
    op.drop_column("usage_day_revisions", "previous_totals", schema="openai_usage")
    op.drop_column("usage_day_revisions", "new_volume", schema="openai_usage")
    op.drop_column("usage_day_revisions", "previous_volume", schema="openai_usage")
    op.drop_column("usage_day_revisions", "endpoint", schema="openai_usage")
    op.drop_index(
        "ix_web_search_calls_usage_hourly_project_bucket",
        table_name="web_search_calls_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("web_search_calls_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_vector_stores_usage_hourly_project_bucket",
        table_name="vector_stores_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("vector_stores_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_moderations_usage_hourly_project_bucket",
        table_name="moderations_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("moderations_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_images_usage_hourly_project_bucket",
        table_name="images_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("images_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_file_search_calls_usage_hourly_project_bucket",
        table_name="file_search_calls_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("file_search_calls_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_embeddings_usage_hourly_project_bucket",
        table_name="embeddings_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("embeddings_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_code_interpreter_sessions_usage_hourly_project_bucket",
        table_name="code_interpreter_sessions_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("code_interpreter_sessions_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_audio_transcriptions_usage_hourly_project_bucket",
        table_name="audio_transcriptions_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("audio_transcriptions_usage_hourly", schema="openai_usage")
    op.drop_index(
        "ix_audio_speeches_usage_hourly_project_bucket",
        table_name="audio_speeches_usage_hourly",
        schema="openai_usage",
    )
    op.drop_table("audio_speeches_usage_hourly", schema="openai_usage")
    op.execute(OLD_REVISIONS_VIEW)
    op.execute(OLD_LATE_ARRIVAL_VIEW)
