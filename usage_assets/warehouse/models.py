"""SQLAlchemy 2 models of the `openai_usage` schema. Alembic migrations create them; the app never
calls `create_all`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from usage_assets.admin_api.endpoints import COMPLETIONS, USAGE_ENDPOINTS, UsageEndpoint
from usage_assets.settings import DEFAULT_ORGANIZATION_LABEL

SCHEMA = "openai_usage"
#: The app's Alembic version table: in our schema, never Dagster's `public.alembic_version`.
VERSION_TABLE = "usage_assets_alembic_version"
#: What `organization` holds for rows of a code location without OPENAI_ORGANIZATION or
#: USAGE_ORGANIZATION_LABEL, and for rows stored before migration 0009.
DEFAULT_ORGANIZATION = DEFAULT_ORGANIZATION_LABEL
# Column comments are the one description of a column: PostgreSQL has them (COMMENT ON, for
# BI tools), the Dagster UI shows them (`table_schema`), and the README's table dictionary is
# generated from them (`table_dictionary`). Every column has one.
ORGANIZATION_COMMENT = (
    "The OpenAI organization the row belongs to: OPENAI_ORGANIZATION of the code location that "
    "wrote it, else its USAGE_ORGANIZATION_LABEL (default 'default', also for rows stored "
    "before migration 0009)."
)
#: The comments the hourly usage tables share.
BUCKET_START_COMMENT = "Start of the UTC hour [bucket_start, bucket_end)."
BUCKET_END_COMMENT = "End of the UTC hour (exclusive)."
RESULT_COMMENT = (
    "The fields of the API's result object that have no column of their own (fields added after "
    "this release); NULL when there are none. openai_usage.api_result(row) rebuilds the whole "
    "object. A NUL character (which jsonb cannot store) in such a field or key is kept as the six "
    "characters \\u0000; NaN and Infinity as the strings 'NaN', 'Infinity'."
)
#: The hourly usage tables are partitioned by UTC month of the hour (`warehouse.partitions`).
PARTITION_BY = "RANGE (bucket_start)"
INGESTED_AT_COMMENT = "When the row was written."
#: costs_daily's key.
BILLED_ID_COMMENT = "Surrogate key (changes when the day is reloaded)."
#: The comments the daily tables computed from other tables share.
COMPUTED_ID_COMMENT = "Surrogate key (changes when the day is recomputed)."
COMPUTED_AT_COMMENT = "When the row was computed."
FETCHED_AT_COMMENT = "When the row was fetched from the Admin API."


def organization_column(*, primary_key: bool = False) -> Mapped[str]:
    """The `organization` column every table but the price tables has (first in its keys)."""
    return mapped_column(
        Text,
        primary_key=primary_key,
        server_default=DEFAULT_ORGANIZATION,
        comment=ORGANIZATION_COMMENT,
    )


def _completions(column: str) -> str:
    """The comment of a completions dimension or metric: written once, in `endpoints`."""
    return COMPLETIONS.comment_of(column)


#: The completions endpoint's dimensions and metrics, in API order (see `endpoints`).
DIMENSIONS: tuple[str, ...] = COMPLETIONS.dimension_names
#: Metrics every result carries (the endpoint document's first group).
REQUIRED_METRICS: tuple[str, ...] = COMPLETIONS.required_metrics
#: Metrics the API reference documents today; older data and API versions may omit them.
OPTIONAL_METRICS: tuple[str, ...] = COMPLETIONS.optional_metrics
METRICS: tuple[str, ...] = COMPLETIONS.metric_names


def usage_indexes(table: str) -> tuple[Index, Index]:
    """The two indexes of an hourly usage table, both small because each key repeats (B-tree
    deduplication): a day's or a month's rows, and a project's hours. No unique index over the
    whole group: it was 40% of the table's bytes; a group listed twice in one hour is refused
    while the day is written (`warehouse.usage_days`), in the day's transaction."""
    return (
        Index(f"ix_{table}_organization_bucket", "organization", "bucket_start"),
        Index(f"ix_{table}_project_bucket", "project_id", "bucket_start"),
    )


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
        CheckConstraint("bucket_end > bucket_start", name="bucket_order"),
        CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND num_model_requests >= 0",
            name="nonnegative_totals",
        ),
        *usage_indexes("completions_usage_hourly"),
        {
            "comment": "OpenAI completions usage, one row per UTC hour and usage group.",
            "postgresql_partition_by": PARTITION_BY,
        },
    )
    # No key in the database (see `usage_indexes`); the ORM's identity is the group's hour.
    __mapper_args__ = {  # noqa: RUF012 (SQLAlchemy reads it off the class)
        "primary_key": ("organization", "bucket_start", *DIMENSIONS)
    }

    organization: Mapped[str] = organization_column()
    bucket_start: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), comment=BUCKET_START_COMMENT
    )
    bucket_end: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), comment=BUCKET_END_COMMENT
    )

    project_id: Mapped[str | None] = mapped_column(Text, comment=_completions("project_id"))
    user_id: Mapped[str | None] = mapped_column(Text, comment=_completions("user_id"))
    api_key_id: Mapped[str | None] = mapped_column(Text, comment=_completions("api_key_id"))
    model: Mapped[str | None] = mapped_column(Text, comment=_completions("model"))
    batch: Mapped[bool | None] = mapped_column(Boolean, comment=_completions("batch"))
    service_tier: Mapped[str | None] = mapped_column(Text, comment=_completions("service_tier"))
    api_source: Mapped[str | None] = mapped_column(Text, comment=_completions("api_source"))

    input_tokens: Mapped[int] = mapped_column(BigInteger, comment=_completions("input_tokens"))
    output_tokens: Mapped[int] = mapped_column(BigInteger, comment=_completions("output_tokens"))
    num_model_requests: Mapped[int] = mapped_column(
        BigInteger, comment=_completions("num_model_requests")
    )
    input_cached_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_cached_tokens")
    )
    input_cache_write_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_cache_write_tokens")
    )
    input_cache_write_30m_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_cache_write_30m_tokens")
    )
    input_cache_write_12h_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_cache_write_12h_tokens")
    )
    input_uncached_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_uncached_tokens")
    )
    input_text_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_text_tokens")
    )
    input_audio_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_audio_tokens")
    )
    input_image_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_image_tokens")
    )
    input_cached_text_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_cached_text_tokens")
    )
    input_cached_audio_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_cached_audio_tokens")
    )
    input_cached_image_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("input_cached_image_tokens")
    )
    output_text_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("output_text_tokens")
    )
    output_audio_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("output_audio_tokens")
    )
    output_image_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=_completions("output_image_tokens")
    )

    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB, comment=RESULT_COMMENT)
    ingested_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=INGESTED_AT_COMMENT
    )


_TOTAL_COMMENT = (
    ", summed over its rows; NULL for an endpoint without that metric, and for days landed "
    "before migration 0005 until their next reload."
)


class UsageLoad(Base):
    """The last successful load of each endpoint's UTC day: what was fetched, from where, when."""

    __tablename__ = "usage_loads"
    __table_args__ = ({"comment": "One row per usage endpoint and loaded UTC day."},)

    organization: Mapped[str] = organization_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(
        Text,
        primary_key=True,
        server_default="completions",
        comment="The usage endpoint: completions, embeddings, images, ... (its table is "
        "<endpoint>_usage_hourly).",
    )
    usage_date: Mapped[dt.date] = mapped_column(Date, primary_key=True, comment="The UTC day.")
    row_count: Mapped[int] = mapped_column(Integer, comment="Rows the load wrote for the day.")
    bucket_count: Mapped[int] = mapped_column(
        Integer, comment="Hourly buckets the API returned for the day (24 for a closed day)."
    )
    group_by: Mapped[list[str]] = mapped_column(
        ARRAY(Text), comment="The dimensions requested (the API's group_by)."
    )
    simulated: Mapped[bool] = mapped_column(
        Boolean, comment="True: loaded from the simulated Admin API, not from OpenAI."
    )
    source_url: Mapped[str] = mapped_column(
        String(500), comment="The Admin API root the day was fetched from, or 'simulator'."
    )
    dagster_run_id: Mapped[str | None] = mapped_column(
        String(64), comment="The Dagster run that loaded the day."
    )
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment="When the day was loaded."
    )
    # The day's totals, so the next reload knows what it replaces without scanning the day;
    # NULL for days landed before migration 0005 (the next reload sums their rows once), and
    # for endpoints without the metric.
    input_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"The day's input_tokens{_TOTAL_COMMENT}"
    )
    output_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"The day's output_tokens{_TOTAL_COMMENT}"
    )
    num_model_requests: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"The day's num_model_requests{_TOTAL_COMMENT}"
    )
    totals: Mapped[dict[str, int] | None] = mapped_column(
        JSONB, comment="Sum of each metric over the day's rows (gauges: summed per hour)."
    )
    volume: Mapped[int | None] = mapped_column(
        BigInteger,
        comment="The endpoint's volume, what a reload must not lose: completions input + "
        "output tokens, embeddings and moderations input tokens, vector stores byte-hours, the "
        "others their first metric (images, characters, seconds, sessions, calls).",
    )


_PREVIOUS_COMMENT = (
    "of the day before this load; NULL on the day's first load and for an endpoint without "
    "that metric."
)
_NEW_COMMENT = "of this load; NULL for an endpoint without that metric."


class UsageDayRevision(Base):
    """Every load of an endpoint's UTC day, with the figures it replaced: how much a day
    changed after the fact (the evidence for USAGE_LOOKBACK_DAYS), and whether a reload lost
    usage."""

    __tablename__ = "usage_day_revisions"
    __table_args__ = (
        {"comment": "One row per load of a UTC day of usage: previous and new figures."},
    )

    organization: Mapped[str] = organization_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(
        Text,
        primary_key=True,
        server_default="completions",
        comment="The usage endpoint: completions, embeddings, images, ...",
    )
    usage_date: Mapped[dt.date] = mapped_column(
        Date, primary_key=True, comment="The UTC day loaded."
    )
    revision: Mapped[int] = mapped_column(
        Integer, primary_key=True, comment="1 for the day's first recorded load, then 2, 3, ..."
    )
    dagster_run_id: Mapped[str | None] = mapped_column(
        String(64), comment="The Dagster run of this load."
    )
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment="When this load was written."
    )
    day_closed: Mapped[bool] = mapped_column(
        Boolean, comment="The UTC day had ended when it was fetched (false: today, partial)."
    )
    bucket_count: Mapped[int] = mapped_column(Integer, comment="Hourly buckets this load fetched.")
    previous_row_count: Mapped[int | None] = mapped_column(
        Integer,
        comment="Rows of the load this one replaced; NULL: nothing was loaded for the day before.",
    )
    new_row_count: Mapped[int] = mapped_column(Integer, comment="Rows this load wrote.")
    previous_input_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"input_tokens {_PREVIOUS_COMMENT}"
    )
    new_input_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"input_tokens {_NEW_COMMENT}"
    )
    previous_output_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"output_tokens {_PREVIOUS_COMMENT}"
    )
    new_output_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"output_tokens {_NEW_COMMENT}"
    )
    previous_num_model_requests: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"num_model_requests {_PREVIOUS_COMMENT}"
    )
    new_num_model_requests: Mapped[int | None] = mapped_column(
        BigInteger, comment=f"num_model_requests {_NEW_COMMENT}"
    )
    previous_volume: Mapped[int | None] = mapped_column(
        BigInteger,
        comment="The endpoint's volume before this load (completions: input + output tokens); "
        "NULL on the day's first load.",
    )
    new_volume: Mapped[int | None] = mapped_column(
        BigInteger, comment="The endpoint's volume of this load."
    )
    previous_totals: Mapped[dict[str, int] | None] = mapped_column(
        JSONB, comment="Each metric summed over the day before this load; NULL on its first load."
    )
    new_totals: Mapped[dict[str, int] | None] = mapped_column(
        JSONB, comment="Each metric summed over this load's rows."
    )


#: Columns the bulk writer fills, in COPY order (everything but `id` and `ingested_at`).
USAGE_COPY_COLUMNS: tuple[str, ...] = COMPLETIONS.copy_columns


def _usage_table(endpoint: UsageEndpoint) -> Table:
    """The `<name>_usage_hourly` table of an endpoint, made from its description: one row per
    hourly bucket and group (NULL dimensions equal), a bigint per metric, the whole result."""
    name = endpoint.table_name
    dimension_types = {"text": Text, "boolean": Boolean}
    required = [m.name for m in endpoint.metrics if m.required]
    return Table(
        name,
        Base.metadata,
        Column(
            "organization",
            Text,
            nullable=False,
            server_default=DEFAULT_ORGANIZATION,
            comment=ORGANIZATION_COMMENT,
        ),
        Column(
            "bucket_start", DateTime(timezone=True), nullable=False, comment=BUCKET_START_COMMENT
        ),
        Column("bucket_end", DateTime(timezone=True), nullable=False, comment=BUCKET_END_COMMENT),
        *(
            Column(d.name, dimension_types[d.type], comment=d.comment or None)
            for d in endpoint.dimensions
        ),
        *(
            Column(m.name, BigInteger, nullable=not m.required, comment=m.comment or None)
            for m in endpoint.metrics
        ),
        Column("result", JSONB, comment=RESULT_COMMENT),
        Column(
            "ingested_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.now(),
            comment=INGESTED_AT_COMMENT,
        ),
        CheckConstraint("bucket_end > bucket_start", name="bucket_order"),
        CheckConstraint(
            " AND ".join(f"{metric} >= 0" for metric in required), name="nonnegative_totals"
        ),
        *usage_indexes(name),
        comment=f"OpenAI {endpoint.name} usage, one row per UTC hour and usage group.",
        postgresql_partition_by=PARTITION_BY,
    )


#: Every endpoint's hourly table, by endpoint name (completions: the mapped class's table).
USAGE_TABLES: dict[str, Table] = {
    endpoint.name: (
        CompletionsUsageHourly.__table__  # type: ignore[misc]
        if endpoint is COMPLETIONS
        else _usage_table(endpoint)
    )
    for endpoint in USAGE_ENDPOINTS
}


# --------------------------------------------------------------------------- names


_NUL_COMMENT = " A NUL character in it is stored as U+FFFD."


class Project(Base):
    """Projects of the organization (`GET /v1/organization/projects`), for names in BI."""

    __tablename__ = "projects"
    __table_args__ = ({"comment": "OpenAI projects, refreshed from the Admin API."},)

    organization: Mapped[str] = organization_column(primary_key=True)
    id: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="The project id (proj_...), as in project_id elsewhere."
    )
    name: Mapped[str | None] = mapped_column(Text, comment=f"The project's name.{_NUL_COMMENT}")
    status: Mapped[str | None] = mapped_column(
        Text, comment=f"active or archived (archived projects are kept).{_NUL_COMMENT}"
    )
    created_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), comment="When the project was created."
    )
    archived_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), comment="When the project was archived; NULL: not archived."
    )
    fetched_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=FETCHED_AT_COMMENT
    )


class User(Base):
    """Users of the organization (`GET /v1/organization/users`)."""

    __tablename__ = "users"
    __table_args__ = ({"comment": "OpenAI organization users, refreshed from the Admin API."},)

    organization: Mapped[str] = organization_column(primary_key=True)
    id: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="The user id (user-...), as in user_id elsewhere."
    )
    name: Mapped[str | None] = mapped_column(Text, comment=f"The user's name.{_NUL_COMMENT}")
    email: Mapped[str | None] = mapped_column(Text, comment=f"The user's email.{_NUL_COMMENT}")
    role: Mapped[str | None] = mapped_column(
        Text, comment=f"The user's role in the organization: owner or reader.{_NUL_COMMENT}"
    )
    fetched_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=FETCHED_AT_COMMENT
    )


class ApiKey(Base):
    """Project API keys: id, name and the redacted value only, never more."""

    __tablename__ = "api_keys"
    __table_args__ = ({"comment": "Project API keys (id, name, redacted value only)."},)

    organization: Mapped[str] = organization_column(primary_key=True)
    id: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="The API key id (key_...), as in api_key_id elsewhere."
    )
    project_id: Mapped[str] = mapped_column(Text, comment="The project the key belongs to.")
    name: Mapped[str | None] = mapped_column(Text, comment=f"The key's name.{_NUL_COMMENT}")
    redacted_value: Mapped[str | None] = mapped_column(
        Text,
        comment=f"The key as the dashboard shows it (sk-...abcd), never the secret.{_NUL_COMMENT}",
    )
    fetched_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=FETCHED_AT_COMMENT
    )


# --------------------------------------------------------------------------- billed costs


class CostDaily(Base):
    """Billed costs (`GET /v1/organization/costs`), one row per day and grouping key: project,
    line item, API key, user and API source (those not grouped by are NULL, see `group_by`)."""

    __tablename__ = "costs_daily"
    __table_args__ = (
        UniqueConstraint(
            "organization",
            "usage_date",
            "project_id",
            "line_item",
            "api_key_id",
            "user_id",
            "api_source",
            name="uq_costs_daily_day_grouping_key",
            postgresql_nulls_not_distinct=True,
        ),
        {
            "comment": "Billed OpenAI costs per UTC day, project, line item, API key, user and "
            "API source."
        },
    )

    id: Mapped[int] = mapped_column(
        BigInteger, Identity(always=True), primary_key=True, comment=BILLED_ID_COMMENT
    )
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date, comment="The UTC day billed.")
    project_id: Mapped[str | None] = mapped_column(
        Text, comment="The billed project; NULL: the default project."
    )
    line_item: Mapped[str | None] = mapped_column(
        Text,
        comment="What was billed, e.g. 'gpt-4o-2024-08-06, cached input', 'web search tool "
        "calls', 'vector store storage'.",
    )
    line_item_model: Mapped[str | None] = mapped_column(
        Text,
        comment="Parsed from line_item at its last ', ' ('gpt-image-1, image generation' -> "
        "'gpt-image-1'); NULL for a line item without ', '.",
    )
    line_item_kind: Mapped[str | None] = mapped_column(
        Text,
        comment="Parsed from line_item at its last ', ' ('gpt-4o, cached input' -> 'cached "
        "input'); any kind is kept, known or not; NULL for a line item without ', '.",
    )
    amount_usd: Mapped[Decimal] = mapped_column(
        Numeric, comment="The billed amount, exact whether the API sent a number or a string."
    )
    currency: Mapped[str] = mapped_column(Text, comment="As billed: usd.")
    result: Mapped[dict[str, Any]] = mapped_column(
        JSONB,
        comment="The API's whole result object; a NUL character in it is kept as the text "
        "\\u0000, as in completions_usage_hourly.result.",
    )
    ingested_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=INGESTED_AT_COMMENT
    )
    api_key_id: Mapped[str | None] = mapped_column(
        Text, comment="The billed API key; NULL: not grouped by API key (see group_by), or no key."
    )
    user_id: Mapped[str | None] = mapped_column(
        Text, comment="The billed user; NULL: not grouped by user (see group_by), or no user."
    )
    api_source: Mapped[str | None] = mapped_column(
        Text,
        comment="The billed API source; NULL: not grouped by API source (see group_by), or none "
        "reported.",
    )
    quantity: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="Billed quantity of the line item, in quantity_unit; NULL when the API sends none.",
    )
    quantity_unit: Mapped[str | None] = mapped_column(
        Text,
        comment="tokens, 1000_tokens, duration_seconds, duration_minutes, duration_hours, "
        "gibibyte_hours, images, characters (any other text is kept as is).",
    )
    group_by: Mapped[list[str] | None] = mapped_column(
        ARRAY(Text),
        comment="The API grouping the day was fetched with, e.g. {project_id,line_item,"
        "api_key_id,user_id,api_source}; NULL: loaded before migration 0006 (fetched by "
        "project_id, line_item).",
    )


# --------------------------------------------------------------------------- prices and costs


class ModelAlias(Base):
    """How each reported model name resolves to a priced model (dated snapshots -> model)."""

    __tablename__ = "model_aliases"
    __table_args__ = ({"comment": "Reported model name -> priced model reference."},)

    model: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="A model name as usage of any kind reports it."
    )
    model_ref: Mapped[str | None] = mapped_column(
        Text, comment="The priced model it resolves to; NULL: unknown (unresolved)."
    )
    resolved_by: Mapped[str] = mapped_column(
        Text, comment="How it was resolved: genai-prices, override or unresolved."
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment="When the alias was stored."
    )


class ModelPrice(Base):
    """A price snapshot row: USD per million tokens of each kind, in force over a date range."""

    __tablename__ = "model_prices"
    __table_args__ = (
        Index("ix_model_prices_lookup", "model_ref", "service_tier", "batch", "effective_from"),
        {"comment": "Prices used for cost attribution, USD per 1M tokens, with effective dates."},
    )

    price_id: Mapped[int] = mapped_column(
        Integer,
        Identity(always=True),
        primary_key=True,
        comment="The price row (project_daily_costs.price_id refers to it).",
    )
    model_ref: Mapped[str] = mapped_column(
        Text, comment="The priced model (model_aliases.model_ref)."
    )
    service_tier: Mapped[str] = mapped_column(
        Text, comment="The service tier priced: default, flex, priority, scale, ..."
    )
    batch: Mapped[bool] = mapped_column(Boolean, comment="True: the Batch API price.")
    effective_from: Mapped[dt.date] = mapped_column(
        Date, comment="First UTC day the price applies to."
    )
    effective_to: Mapped[dt.date | None] = mapped_column(
        Date, comment="Day the price stops applying (exclusive); NULL: open."
    )
    input_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="USD per 1M uncached text input tokens (also image input without its rate).",
    )
    cache_read_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M cached text input tokens; NULL: input_mtok."
    )
    cache_write_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M tokens written to the cache for 30 minutes; NULL: input_mtok."
    )
    cache_write_12h_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="USD per 1M tokens written to the cache for 12 hours; NULL: cache_write_mtok, "
        "else input_mtok.",
    )
    input_audio_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M uncached audio input tokens; NULL: audio input is unpriced."
    )
    cache_audio_read_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M cached audio input tokens; NULL: input_audio_mtok."
    )
    input_image_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M uncached image input tokens; NULL: input_mtok."
    )
    cache_image_read_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="USD per 1M cached image input tokens; NULL: cache_read_mtok, else "
        "input_image_mtok, else input_mtok.",
    )
    output_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M text output tokens."
    )
    output_audio_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M audio output tokens; NULL: audio output is unpriced."
    )
    output_image_mtok: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="USD per 1M image output tokens; NULL: output_mtok."
    )
    source: Mapped[str] = mapped_column(
        Text, comment="Where the price comes from: 'genai-prices <version>' or 'override'."
    )
    rule: Mapped[str | None] = mapped_column(
        Text,
        comment="How the row was derived: base, batch variant (other rates at 50% where "
        "genai-prices has none), '<tier> variant', or the override's note.",
    )
    captured_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment="When the row was stored."
    )
    superseded_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), comment="Set when an explicit re-pricing replaced this row."
    )


#: Token kinds priced separately, in cost-table column order. They add up to `input_tokens` and
#: `output_tokens` exactly. `input_cache_write_tokens` (the cache-write total, 30m + 12h) is in
#: the cost table too, but is not a kind of its own: its two parts are.
TOKEN_KINDS: tuple[str, ...] = (
    "input_text_uncached_tokens",
    "input_text_cached_tokens",
    "input_cache_write_30m_tokens",
    "input_cache_write_12h_tokens",
    "input_audio_uncached_tokens",
    "input_audio_cached_tokens",
    "input_image_uncached_tokens",
    "input_image_cached_tokens",
    "output_text_tokens",
    "output_audio_tokens",
    "output_image_tokens",
)


#: What each token kind of `completions_usage_daily` is (the rules: README "Pricing rules").
_KIND_COMMENT = "The day's {kind} (v_usage_token_kinds, summed over the hours)."

COMPLETIONS_USAGE_DAILY = Table(
    "completions_usage_daily",
    Base.metadata,
    Column("organization", Text, nullable=False, server_default=DEFAULT_ORGANIZATION,
           comment=ORGANIZATION_COMMENT),
    Column("usage_date", Date, nullable=False, comment="The UTC day of the usage."),
    Column("project_id", Text, comment=_completions("project_id")),
    Column("api_key_id", Text, comment=_completions("api_key_id")),
    Column("user_id", Text, comment=_completions("user_id")),
    Column("model", Text, comment=_completions("model")),
    Column("batch", Boolean, comment=_completions("batch")),
    Column("service_tier", Text, comment=_completions("service_tier")),
    Column("input_tokens", BigInteger, nullable=False, comment=_completions("input_tokens")),
    Column("output_tokens", BigInteger, nullable=False, comment=_completions("output_tokens")),
    Column("num_model_requests", BigInteger, nullable=False,
           comment=_completions("num_model_requests")),
    *(
        Column(kind, BigInteger, nullable=False,
               comment=_KIND_COMMENT.format(kind=kind.removesuffix("_tokens").replace("_", " ")))
        for kind in TOKEN_KINDS
    ),
    Column("input_cache_write_tokens", BigInteger, nullable=False,
           comment="All cache writes (30-minute and 12-hour), as in completions_usage_hourly."),
    Column("breakdown_fallback", Boolean, nullable=False,
           comment="True: some hours lacked the breakdown fields (the fallback rule)."),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now(),
           comment=COMPUTED_AT_COMMENT),
    Index("ix_completions_usage_daily_organization_usage_date", "organization", "usage_date"),
    comment="Completions usage per UTC day, project, API key, user, model, batch flag and "
    "service tier, in token kinds: the one pass over the hourly rows that the estimate "
    "(project_daily_costs) and the allocation share; rebuilt with project_daily_costs.",
)  # fmt: skip


UNIT_USAGE_DAILY = Table(
    "unit_usage_daily",
    Base.metadata,
    Column("organization", Text, nullable=False, server_default=DEFAULT_ORGANIZATION,
           comment=ORGANIZATION_COMMENT),
    Column("usage_date", Date, nullable=False, comment="The UTC day of the usage."),
    Column("usage_kind", Text, nullable=False,
           comment="The endpoint (a usage kind of usage_daily_costs)."),
    Column("project_id", Text, comment="Project; NULL: the default project (or not grouped)."),
    Column("api_key_id", Text,
           comment="API key; NULL where the endpoint has none (vector stores, code "
           "interpreter) or for usage without a key."),
    Column("user_id", Text, comment="User; NULL where the endpoint has none, or no user."),
    Column("model", Text, comment="As reported; NULL for kinds without a model."),
    Column("detail", JSONB, nullable=False,
           comment="The priced dimensions, as in usage_daily_costs."),
    Column("quantity", Numeric, nullable=False,
           comment="The day's usage in the endpoint's own unit (seconds, not minutes; "
           "vector stores: GiB-days)."),
    Column("num_model_requests", BigInteger,
           comment="Summed where the endpoint reports it, else NULL."),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now(),
           comment=COMPUTED_AT_COMMENT),
    Index("ix_unit_usage_daily_organization_usage_date", "organization", "usage_date"),
    comment="Usage of every endpoint but completions per UTC day, kind, project, API key, "
    "user, model and priced dimensions: the one pass over the hourly rows that the estimate "
    "(usage_daily_costs) and the allocation share; rebuilt with usage_daily_costs.",
)  # fmt: skip


class ProjectDailyCost(Base):
    """Estimated cost per day, project, model, batch flag and service tier."""

    __tablename__ = "project_daily_costs"
    __table_args__ = (
        UniqueConstraint(
            "organization",
            "usage_date",
            "project_id",
            "model",
            "batch",
            "service_tier",
            name="uq_project_daily_costs_grain",
            postgresql_nulls_not_distinct=True,
        ),
        {"comment": "Priced usage per UTC day, project, model, batch flag and service tier."},
    )

    id: Mapped[int] = mapped_column(
        BigInteger, Identity(always=True), primary_key=True, comment=COMPUTED_ID_COMMENT
    )
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date, comment="The UTC day of the usage.")
    project_id: Mapped[str | None] = mapped_column(
        Text, comment="Project; NULL: the default project (or not grouped)."
    )
    model: Mapped[str | None] = mapped_column(
        Text, comment="Model as reported (dated snapshots and fine-tunes included)."
    )
    batch: Mapped[bool | None] = mapped_column(Boolean, comment="True: Batch API usage.")
    service_tier: Mapped[str | None] = mapped_column(
        Text, comment="default, flex, priority, scale, ..."
    )
    model_ref: Mapped[str | None] = mapped_column(
        Text, comment="The priced model the reported name resolved to; NULL: unknown."
    )
    price_id: Mapped[int | None] = mapped_column(
        Integer, comment="The model_prices row used; NULL: no price."
    )
    usage_kind: Mapped[str] = mapped_column(
        Text,
        server_default="completions",
        comment="Always completions (the token usage; the other kinds are in "
        "usage_daily_costs); rows stored before migration 0008 are completions too.",
    )
    input_tokens: Mapped[int] = mapped_column(
        BigInteger, comment="Sum of completions_usage_hourly.input_tokens."
    )
    output_tokens: Mapped[int] = mapped_column(
        BigInteger, comment="Sum of completions_usage_hourly.output_tokens."
    )
    num_model_requests: Mapped[int] = mapped_column(
        BigInteger, comment="Sum of completions_usage_hourly.num_model_requests."
    )
    input_text_uncached_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Uncached text input (the usage's input_text_tokens), priced at the input rate.",
    )
    input_text_cached_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Cached text input (input_cached_text_tokens), priced at the cached-input rate, "
        "else the input rate.",
    )
    input_cache_write_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="All cache writes (input_cache_write_30m_tokens + input_cache_write_12h_tokens), "
        "as in completions_usage_hourly; not a kind of its own.",
    )
    input_cache_write_30m_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Input written to the cache for 30 minutes (the usage's field, else "
        "input_cache_write_tokens - input_cache_write_12h_tokens), priced at the cache-write "
        "rate, else the input rate.",
    )
    input_cache_write_12h_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Input written to the cache for 12 hours, priced at the 12-hour cache-write "
        "rate, else the cache-write rate, else the input rate.",
    )
    input_audio_uncached_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Uncached audio input, priced at the audio input rate; no audio rate: unpriced.",
    )
    input_audio_cached_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Cached audio input, priced at the cached-audio rate, else the audio rate; no "
        "audio rate: unpriced.",
    )
    input_image_uncached_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Uncached image input, priced at the image input rate, else the input rate.",
    )
    input_image_cached_tokens: Mapped[int] = mapped_column(
        BigInteger,
        comment="Cached image input, priced at the cached-image rate, else the cached-input, "
        "image input or input rate.",
    )
    output_text_tokens: Mapped[int] = mapped_column(
        BigInteger, comment="Text output, priced at the output rate."
    )
    output_audio_tokens: Mapped[int] = mapped_column(
        BigInteger, comment="Audio output, priced at the audio output rate; no rate: unpriced."
    )
    output_image_tokens: Mapped[int] = mapped_column(
        BigInteger, comment="Image output, priced at the image output rate, else the output rate."
    )
    breakdown_fallback: Mapped[bool] = mapped_column(
        Boolean,
        comment="True: older usage rows without the breakdown fields were priced by the "
        "fallback rule (README Pricing rules).",
    )
    cost_usd: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="Estimated USD (list prices); NULL when unpriced."
    )
    unpriced_reason: Mapped[str | None] = mapped_column(
        Text, comment="Why not priced: unknown model, no rate for the tier, no audio rate, ..."
    )
    computed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=COMPUTED_AT_COMMENT
    )


class ProjectDailyCostSummary(Base):
    """Per-project daily rollup of `project_daily_costs`."""

    __tablename__ = "project_daily_cost_summary"
    __table_args__ = (
        UniqueConstraint(
            "organization",
            "usage_date",
            "project_id",
            name="uq_project_daily_cost_summary_day_project",
            postgresql_nulls_not_distinct=True,
        ),
        {"comment": "Estimated cost per UTC day and project."},
    )

    id: Mapped[int] = mapped_column(
        BigInteger, Identity(always=True), primary_key=True, comment=COMPUTED_ID_COMMENT
    )
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date, comment="The UTC day of the usage.")
    project_id: Mapped[str | None] = mapped_column(
        Text, comment="Project; NULL: the default project (or not grouped)."
    )
    cost_usd: Mapped[Decimal] = mapped_column(
        Numeric, comment="Estimated USD of the priced usage of every kind."
    )
    unpriced_tokens: Mapped[int] = mapped_column(
        BigInteger, comment="Completions tokens without a price (not in cost_usd)."
    )
    input_tokens: Mapped[int] = mapped_column(BigInteger, comment="Completions input tokens.")
    output_tokens: Mapped[int] = mapped_column(BigInteger, comment="Completions output tokens.")
    num_model_requests: Mapped[int] = mapped_column(
        BigInteger, comment="Completions model requests."
    )
    models: Mapped[int] = mapped_column(Integer, comment="Distinct completions models used.")
    computed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=COMPUTED_AT_COMMENT
    )
    unpriced_usage_rows: Mapped[int] = mapped_column(
        Integer,
        server_default="0",
        comment="usage_daily_costs rows (non-token usage) with no price, not counted in cost_usd.",
    )
    cost_by_kind: Mapped[dict[str, Any]] = mapped_column(
        JSONB,
        server_default=text("'{}'::jsonb"),
        comment='Priced USD per usage kind, e.g. {"completions": 1.2, "images": 0.04}; '
        "summaries stored before migration 0008 have completions only.",
    )


#: The usage kinds: the usage endpoints' names (completions: `project_daily_costs`; the others:
#: `usage_daily_costs`). Also the reconciliation's line-item families, with 'other'.
USAGE_KINDS: tuple[str, ...] = tuple(endpoint.name for endpoint in USAGE_ENDPOINTS)
UNIT_USAGE_KINDS: tuple[str, ...] = USAGE_KINDS[1:]
OTHER_FAMILY = "other"


class UnitPrice(Base):
    """A unit price snapshot row: USD per unit of a non-token usage kind (or per token of
    embeddings and moderations), for a model and dimension values, over a date range."""

    __tablename__ = "unit_prices"
    __table_args__ = (
        Index("ix_unit_prices_lookup", "usage_kind", "model", "effective_from"),
        {"comment": "Unit prices of every usage kind but completions, with effective dates."},
    )

    unit_price_id: Mapped[int] = mapped_column(
        Integer,
        Identity(always=True),
        primary_key=True,
        comment="The unit price row (usage_daily_costs.unit_price_id refers to it).",
    )
    usage_kind: Mapped[str] = mapped_column(
        Text, comment="The usage endpoint: embeddings, images, vector_stores, ..."
    )
    model: Mapped[str | None] = mapped_column(
        Text,
        comment="NULL: any model; 'x*': any model starting with x; else the model (a dated "
        "snapshot -YYYY-MM-DD shares its model's price).",
    )
    match: Mapped[dict[str, str]] = mapped_column(
        JSONB, comment='Dimension values the usage must have, e.g. {"size": "1024x1024"}.'
    )
    unit: Mapped[str] = mapped_column(
        Text, comment="tokens, characters, minutes, images, gib_days, sessions or calls."
    )
    usd_per_unit: Mapped[Decimal] = mapped_column(
        Numeric, comment="USD per unit, exact (usd_per_1m 0.02 is stored as 0.00000002)."
    )
    free_per_day: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="Units free per organization and day, shared by the projects pro rata."
    )
    effective_from: Mapped[dt.date] = mapped_column(
        Date, comment="First UTC day the price applies to."
    )
    effective_to: Mapped[dt.date | None] = mapped_column(
        Date, comment="Day the price stops applying (exclusive); NULL: open."
    )
    source: Mapped[str] = mapped_column(
        Text, comment="'genai-prices <version>', 'bundled' (the package's list) or 'override'."
    )
    rule: Mapped[str | None] = mapped_column(
        Text,
        comment="How the row was derived: 'free', 'usd_per_1k 35', 'genai-prices audio_hours "
        "0.36', ...",
    )
    note: Mapped[str | None] = mapped_column(Text, comment="Where the price comes from (a URL).")
    captured_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment="When the row was stored."
    )
    superseded_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), comment="Set when an explicit re-pricing replaced this row."
    )


class UsageDailyCost(Base):
    """Estimated cost of the non-token usage kinds (and embeddings, moderations) per day,
    project, kind, model and priced dimensions."""

    __tablename__ = "usage_daily_costs"
    __table_args__ = (
        UniqueConstraint(
            "organization",
            "usage_date",
            "project_id",
            "usage_kind",
            "model",
            "detail",
            name="uq_usage_daily_costs_grain",
            postgresql_nulls_not_distinct=True,
        ),
        {"comment": "Priced usage of every endpoint but completions per UTC day, project, kind."},
    )

    id: Mapped[int] = mapped_column(
        BigInteger, Identity(always=True), primary_key=True, comment=COMPUTED_ID_COMMENT
    )
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date, comment="The UTC day of the usage.")
    project_id: Mapped[str | None] = mapped_column(
        Text, comment="Project; NULL: the default project (or not grouped)."
    )
    usage_kind: Mapped[str] = mapped_column(
        Text,
        comment="The endpoint: embeddings, moderations, images, audio_speeches, "
        "audio_transcriptions, vector_stores, code_interpreter_sessions, file_search_calls, "
        "web_search_calls.",
    )
    model: Mapped[str | None] = mapped_column(
        Text,
        comment="As reported (dated snapshots included); NULL for kinds without a model (vector "
        "stores, code interpreter, file search) or when not grouped.",
    )
    detail: Mapped[dict[str, str]] = mapped_column(
        JSONB,
        comment='The priced dimensions: images {"size", "source"}, web search '
        '{"context_level"}, {} otherwise; NULL dimensions are left out.',
    )
    quantity: Mapped[Decimal] = mapped_column(
        Numeric,
        comment="The day's usage in the priced unit (minutes: seconds / 60; gib_days: see "
        "v_vector_store_storage_daily).",
    )
    unit: Mapped[str] = mapped_column(
        Text, comment="tokens, images, characters, minutes, gib_days, sessions or calls."
    )
    num_model_requests: Mapped[int | None] = mapped_column(
        BigInteger, comment="Summed where the endpoint reports it, else NULL."
    )
    free_quantity: Mapped[Decimal] = mapped_column(
        Numeric,
        comment="The row's share of the organization's free allowance (vector stores: of the "
        "first GiB-day), in unit; 0 otherwise.",
    )
    unit_price_id: Mapped[int | None] = mapped_column(
        Integer, comment="The unit_prices row used; NULL: unpriced."
    )
    cost_usd: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="Estimated USD; 0 for free usage (moderations); NULL when unpriced."
    )
    unpriced_reason: Mapped[str | None] = mapped_column(
        Text,
        comment="Why not priced, e.g. 'no price for images model gpt-image-1 size 1024x1024 "
        "source image.generation'.",
    )
    computed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=COMPUTED_AT_COMMENT
    )


# --------------------------------------------------------------------------- chargeback


#: `Table.info` key: the columns a table is unique on (NULLs equal) without a unique index in
#: the database; whoever writes the table refuses rows that repeat them.
CHECKED_GRAIN = "checked_grain"
#: One row of `cost_allocation_daily` per these. Checked by the allocation when it writes a
#: day, not by a unique index: under one, every row of a replaced day met the deleted row of
#: the same grain and visited the heap for it (migration 0024).
ALLOCATION_GRAIN = (
    "organization", "usage_date", "project_id", "line_item", "api_key_id", "user_id", "model",
    "usage_kind",
)  # fmt: skip


class CostAllocationDaily(Base):
    """The bill split over the usage behind it: each billed amount of a day, project and line
    item (and API key or user where the Costs grouping has them) shared out over the usage rows
    of the same line-item family in proportion to their estimated cost, so that per day, project
    and line item the rows sum to the billed amount exactly."""

    __tablename__ = "cost_allocation_daily"
    __table_args__ = (
        Index("ix_cost_allocation_daily_organization_usage_date", "organization", "usage_date"),
        {
            "info": {CHECKED_GRAIN: ALLOCATION_GRAIN},
            "comment": "Billed cost allocated per UTC day, project, line item, API key, user, "
            "model and usage kind; sums to costs_daily exactly.",
        },
    )

    id: Mapped[int] = mapped_column(
        BigInteger, Identity(always=True), primary_key=True, comment=COMPUTED_ID_COMMENT
    )
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date, comment="The UTC day billed.")
    project_id: Mapped[str | None] = mapped_column(
        Text, comment="The billed project (NULL: the default project)."
    )
    line_item: Mapped[str | None] = mapped_column(Text, comment="The billed line item.")
    api_key_id: Mapped[str | None] = mapped_column(
        Text,
        comment="The API key of the usage the share went to (the billed one when the bill was "
        "grouped by key); NULL: no key, or an unallocated row of an ungrouped bill.",
    )
    user_id: Mapped[str | None] = mapped_column(
        Text,
        comment="The user of the usage the share went to (the billed one when the bill was "
        "grouped by user); NULL: no user, or an unallocated row of an ungrouped bill.",
    )
    model: Mapped[str | None] = mapped_column(
        Text, comment="The usage's model (unallocated: the line item's model, if it names one)."
    )
    usage_kind: Mapped[str] = mapped_column(
        Text,
        comment="The line item's family: the usage endpoint (completions, images, ...) or "
        "'other' when the line item names none.",
    )
    allocated_usd: Mapped[Decimal] = mapped_column(
        Numeric,
        comment="This row's share of the billed amount, in whole 1e-6 USD (largest remainder; "
        "any sub-micro-dollar rest of the bill goes to the largest share); per day, project and "
        "line item the rows sum to costs_daily.amount_usd exactly.",
    )
    currency: Mapped[str] = mapped_column(Text, server_default="usd", comment="As billed: usd.")
    estimated_usd: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="Estimated (list price) cost of the usage behind the share; NULL when "
        "unallocated or unpriced.",
    )
    quantity: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="The share of the line item's billed quantity (proportional to the share), in "
        "quantity_unit.",
    )
    quantity_unit: Mapped[str | None] = mapped_column(
        Text, comment="The billed quantity's unit (tokens, images, ...)."
    )
    allocation_basis: Mapped[str | None] = mapped_column(
        Text,
        comment="What the shares are proportional to: 'estimated cost of the token kind', "
        "'estimated cost of the model', 'estimated cost', 'usage quantity'; NULL: unallocated.",
    )
    unallocated_reason: Mapped[str | None] = mapped_column(
        Text, comment="Why no usage took this billed amount; NULL when allocated."
    )
    computed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), comment=COMPUTED_AT_COMMENT
    )


class Budget(Base):
    """A monthly budget of the budget file (USAGE_BUDGETS): an amount and thresholds for a
    scope (project, API key and/or user; NULL = any), compared in `v_budget_status` with the
    allocated spend (`cost_allocation_daily`)."""

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint(
            "organization",
            "project_id",
            "api_key_id",
            "user_id",
            name="uq_budgets_scope",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint("monthly_usd > 0", name="positive_amount"),
        CheckConstraint("num_nonnulls(project_id, api_key_id, user_id) > 0", name="scope_given"),
        {"comment": "Monthly budgets per project, API key and/or user, from USAGE_BUDGETS."},
    )

    id: Mapped[int] = mapped_column(
        BigInteger,
        Identity(always=True),
        primary_key=True,
        comment="Surrogate key (changes when the budget file is reloaded).",
    )
    organization: Mapped[str] = organization_column()
    project_id: Mapped[str | None] = mapped_column(
        Text, comment="The budgeted project (NULL: any project)."
    )
    api_key_id: Mapped[str | None] = mapped_column(
        Text, comment="The budgeted API key (NULL: any key)."
    )
    user_id: Mapped[str | None] = mapped_column(Text, comment="The budgeted user (NULL: any user).")
    monthly_usd: Mapped[Decimal] = mapped_column(
        Numeric, comment="The budget per calendar month (UTC), in USD."
    )
    thresholds: Mapped[list[Decimal]] = mapped_column(
        ARRAY(Numeric),
        comment="Percentages of monthly_usd that warn, increasing; reaching the last one fails.",
    )
    source: Mapped[str] = mapped_column(
        Text, comment="The budget file (USAGE_BUDGETS) and entry the row came from."
    )
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        comment="When the budget file was loaded.",
    )
