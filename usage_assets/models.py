"""SQLAlchemy 2 models of the `openai_usage` schema. Alembic migrations create them; the app never
calls `create_all`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "openai_usage"
#: The app's Alembic version table: in our schema, never Dagster's `public.alembic_version`.
VERSION_TABLE = "usage_assets_alembic_version"

#: Grouping dimensions of a completions usage result, in API order.
DIMENSIONS: tuple[str, ...] = (
    "project_id",
    "user_id",
    "api_key_id",
    "model",
    "batch",
    "service_tier",
    "api_source",
)
#: Metrics every result carries (the endpoint document's first group).
REQUIRED_METRICS: tuple[str, ...] = ("input_tokens", "output_tokens", "num_model_requests")
#: Metrics the API reference documents today; older data and API versions may omit them.
OPTIONAL_METRICS: tuple[str, ...] = (
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
METRICS: tuple[str, ...] = REQUIRED_METRICS + OPTIONAL_METRICS


class Base(DeclarativeBase):
    metadata = MetaData(
        schema=SCHEMA,
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "pk": "pk_%(table_name)s",
        },
    )


class CompletionsUsageHourly(Base):
    """One row per hourly bucket and group of `GET /v1/organization/usage/completions`."""

    __tablename__ = "completions_usage_hourly"
    __table_args__ = (
        # One row per bucket and group; NULL dimensions compare equal (PostgreSQL >= 15).
        UniqueConstraint(
            "bucket_start",
            *DIMENSIONS,
            name="uq_completions_usage_hourly_bucket_group",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint("bucket_end > bucket_start", name="bucket_order"),
        CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND num_model_requests >= 0",
            name="nonnegative_totals",
        ),
        Index("ix_completions_usage_hourly_project_bucket", "project_id", "bucket_start"),
        {"comment": "OpenAI completions usage, one row per UTC hour and usage group."},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    bucket_end: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    project_id: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    batch: Mapped[bool | None] = mapped_column(Boolean)
    service_tier: Mapped[str | None] = mapped_column(Text)
    api_source: Mapped[str | None] = mapped_column(Text)

    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    num_model_requests: Mapped[int] = mapped_column(BigInteger)
    input_cached_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_cache_write_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_cache_write_12h_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_uncached_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_text_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_audio_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_image_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_cached_text_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_cached_audio_tokens: Mapped[int | None] = mapped_column(BigInteger)
    input_cached_image_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_text_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_audio_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_image_tokens: Mapped[int | None] = mapped_column(BigInteger)

    result: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="The API's full result object, including fields unknown today."
    )
    ingested_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class UsageLoad(Base):
    """The last successful load of each UTC day: what was fetched, from where, and when."""

    __tablename__ = "usage_loads"
    __table_args__ = ({"comment": "One row per loaded UTC day of completions usage."},)

    usage_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    row_count: Mapped[int] = mapped_column(Integer)
    bucket_count: Mapped[int] = mapped_column(Integer)
    group_by: Mapped[list[str]] = mapped_column(ARRAY(Text))
    simulated: Mapped[bool] = mapped_column(Boolean)
    source_url: Mapped[str] = mapped_column(String(500))
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


#: Columns the bulk writer fills, in COPY order (everything but `id` and `ingested_at`).
USAGE_COPY_COLUMNS: tuple[str, ...] = (
    "bucket_start",
    "bucket_end",
    *DIMENSIONS,
    *METRICS,
    "result",
)
