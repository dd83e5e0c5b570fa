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
ORGANIZATION_COMMENT = (
    "The OpenAI organization the row belongs to: OPENAI_ORGANIZATION, else "
    "USAGE_ORGANIZATION_LABEL (default 'default')."
)


def organization_column(*, primary_key: bool = False) -> Mapped[str]:
    """The `organization` column every table but the price tables has (first in its keys)."""
    return mapped_column(
        Text,
        primary_key=primary_key,
        server_default=DEFAULT_ORGANIZATION,
        comment=ORGANIZATION_COMMENT,
    )


#: The completions endpoint's dimensions and metrics, in API order (see `endpoints`).
DIMENSIONS: tuple[str, ...] = COMPLETIONS.dimension_names
#: Metrics every result carries (the endpoint document's first group).
REQUIRED_METRICS: tuple[str, ...] = COMPLETIONS.required_metrics
#: Metrics the API reference documents today; older data and API versions may omit them.
OPTIONAL_METRICS: tuple[str, ...] = COMPLETIONS.optional_metrics
METRICS: tuple[str, ...] = COMPLETIONS.metric_names


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
            "organization",
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
    organization: Mapped[str] = organization_column()
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
    input_cache_write_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment="All input written to the cache: 30-minute and 12-hour retention."
    )
    input_cache_write_30m_tokens: Mapped[int | None] = mapped_column(
        BigInteger, comment="30-minute cache writes; NULL in older responses (total - 12h)."
    )
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
    # The day's totals, so the next reload knows what it replaces without scanning the day;
    # NULL for days landed before migration 0005 (the next reload sums their rows once), and
    # for endpoints without the metric.
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    num_model_requests: Mapped[int | None] = mapped_column(BigInteger)
    totals: Mapped[dict[str, int] | None] = mapped_column(
        JSONB, comment="Sum of each metric over the day's rows (gauges: summed per hour)."
    )
    volume: Mapped[int | None] = mapped_column(
        BigInteger, comment="The endpoint's volume (completions: input + output tokens)."
    )


class UsageDayRevision(Base):
    """Every load of an endpoint's UTC day, with the figures it replaced: how much a day
    changed after the fact (the evidence for USAGE_LOOKBACK_DAYS), and whether a reload lost
    usage."""

    __tablename__ = "usage_day_revisions"
    __table_args__ = (
        {"comment": "One row per load of a UTC day of usage: previous and new figures."},
    )

    organization: Mapped[str] = organization_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(Text, primary_key=True, server_default="completions")
    usage_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    revision: Mapped[int] = mapped_column(
        Integer, primary_key=True, comment="1 for the day's first recorded load, then 2, 3, ..."
    )
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    day_closed: Mapped[bool] = mapped_column(
        Boolean, comment="The UTC day had ended when it was fetched (false: today, partial)."
    )
    bucket_count: Mapped[int] = mapped_column(Integer)
    previous_row_count: Mapped[int | None] = mapped_column(
        Integer, comment="NULL: nothing was loaded for the day before."
    )
    new_row_count: Mapped[int] = mapped_column(Integer)
    previous_input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    new_input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    previous_output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    new_output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    previous_num_model_requests: Mapped[int | None] = mapped_column(BigInteger)
    new_num_model_requests: Mapped[int | None] = mapped_column(BigInteger)
    previous_volume: Mapped[int | None] = mapped_column(
        BigInteger, comment="The endpoint's volume before (completions: tokens)."
    )
    new_volume: Mapped[int | None] = mapped_column(BigInteger)
    previous_totals: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    new_totals: Mapped[dict[str, int] | None] = mapped_column(JSONB)


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
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column(
            "organization",
            Text,
            nullable=False,
            server_default=DEFAULT_ORGANIZATION,
            comment=ORGANIZATION_COMMENT,
        ),
        Column("bucket_start", DateTime(timezone=True), nullable=False),
        Column("bucket_end", DateTime(timezone=True), nullable=False),
        *(
            Column(d.name, dimension_types[d.type], comment=d.comment or None)
            for d in endpoint.dimensions
        ),
        *(
            Column(m.name, BigInteger, nullable=not m.required, comment=m.comment or None)
            for m in endpoint.metrics
        ),
        Column(
            "result",
            JSONB,
            nullable=False,
            comment="The API's full result object, including fields unknown today.",
        ),
        Column("ingested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        UniqueConstraint(
            "organization",
            "bucket_start",
            *endpoint.dimension_names,
            name=f"uq_{name}_bucket_group",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint("bucket_end > bucket_start", name="bucket_order"),
        CheckConstraint(
            " AND ".join(f"{metric} >= 0" for metric in required), name="nonnegative_totals"
        ),
        Index(f"ix_{name}_project_bucket", "project_id", "bucket_start"),
        comment=f"OpenAI {endpoint.name} usage, one row per UTC hour and usage group.",
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


class Project(Base):
    """Projects of the organization (`GET /v1/organization/projects`), for names in BI."""

    __tablename__ = "projects"
    __table_args__ = ({"comment": "OpenAI projects, refreshed from the Admin API."},)

    organization: Mapped[str] = organization_column(primary_key=True)
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    fetched_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class User(Base):
    """Users of the organization (`GET /v1/organization/users`)."""

    __tablename__ = "users"
    __table_args__ = ({"comment": "OpenAI organization users, refreshed from the Admin API."},)

    organization: Mapped[str] = organization_column(primary_key=True)
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiKey(Base):
    """Project API keys: id, name and the redacted value only, never more."""

    __tablename__ = "api_keys"
    __table_args__ = ({"comment": "Project API keys (id, name, redacted value only)."},)

    organization: Mapped[str] = organization_column(primary_key=True)
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    project_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    redacted_value: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
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

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date)
    project_id: Mapped[str | None] = mapped_column(Text)
    line_item: Mapped[str | None] = mapped_column(Text)
    line_item_model: Mapped[str | None] = mapped_column(
        Text, comment="Model parsed from line_item ('gpt-4o-2024-08-06, input' -> the model)."
    )
    line_item_kind: Mapped[str | None] = mapped_column(
        Text, comment="Token kind parsed from line_item: input, cached input, output, ..."
    )
    amount_usd: Mapped[Decimal] = mapped_column(Numeric)
    currency: Mapped[str] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    ingested_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    api_key_id: Mapped[str | None] = mapped_column(
        Text, comment="NULL: not grouped by API key (see group_by), or no key."
    )
    user_id: Mapped[str | None] = mapped_column(
        Text, comment="NULL: not grouped by user (see group_by), or no user."
    )
    api_source: Mapped[str | None] = mapped_column(
        Text, comment="NULL: not grouped by API source (see group_by), or none reported."
    )
    quantity: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="Billed quantity of the line item, in quantity_unit."
    )
    quantity_unit: Mapped[str | None] = mapped_column(
        Text, comment="tokens, 1000_tokens, images, gibibyte_hours, duration_seconds, ..."
    )
    group_by: Mapped[list[str] | None] = mapped_column(
        ARRAY(Text),
        comment="The API grouping the day was fetched with; NULL: loaded before migration 0006 "
        "(project_id, line_item).",
    )


# --------------------------------------------------------------------------- prices and costs


class ModelAlias(Base):
    """How each reported model name resolves to a priced model (dated snapshots -> model)."""

    __tablename__ = "model_aliases"
    __table_args__ = ({"comment": "Reported model name -> priced model reference."},)

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    model_ref: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str] = mapped_column(Text, comment="genai-prices, override or unresolved")
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ModelPrice(Base):
    """A price snapshot row: USD per million tokens of each kind, in force over a date range."""

    __tablename__ = "model_prices"
    __table_args__ = (
        Index("ix_model_prices_lookup", "model_ref", "service_tier", "batch", "effective_from"),
        {"comment": "Prices used for cost attribution, USD per 1M tokens, with effective dates."},
    )

    price_id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    model_ref: Mapped[str] = mapped_column(Text)
    service_tier: Mapped[str] = mapped_column(Text)
    batch: Mapped[bool] = mapped_column(Boolean)
    effective_from: Mapped[dt.date] = mapped_column(Date)
    effective_to: Mapped[dt.date | None] = mapped_column(Date, comment="Exclusive; NULL: open")
    input_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    cache_read_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    cache_write_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    cache_write_12h_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    input_audio_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    cache_audio_read_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    input_image_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    cache_image_read_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    output_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    output_audio_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    output_image_mtok: Mapped[Decimal | None] = mapped_column(Numeric)
    source: Mapped[str] = mapped_column(Text, comment="'genai-prices <version>' or 'override'")
    rule: Mapped[str | None] = mapped_column(Text, comment="How the row was derived")
    captured_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    superseded_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), comment="Set when an explicit re-pricing replaced this row"
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

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date)
    project_id: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    batch: Mapped[bool | None] = mapped_column(Boolean)
    service_tier: Mapped[str | None] = mapped_column(Text)
    model_ref: Mapped[str | None] = mapped_column(Text)
    price_id: Mapped[int | None] = mapped_column(Integer)
    usage_kind: Mapped[str] = mapped_column(
        Text,
        server_default="completions",
        comment="The usage endpoint priced: always completions here (token usage); the other "
        "endpoints are in usage_daily_costs.",
    )
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    num_model_requests: Mapped[int] = mapped_column(BigInteger)
    input_text_uncached_tokens: Mapped[int] = mapped_column(BigInteger)
    input_text_cached_tokens: Mapped[int] = mapped_column(BigInteger)
    input_cache_write_tokens: Mapped[int] = mapped_column(
        BigInteger, comment="All cache writes: input_cache_write_30m_tokens + _12h_tokens"
    )
    input_cache_write_30m_tokens: Mapped[int] = mapped_column(BigInteger)
    input_cache_write_12h_tokens: Mapped[int] = mapped_column(BigInteger)
    input_audio_uncached_tokens: Mapped[int] = mapped_column(BigInteger)
    input_audio_cached_tokens: Mapped[int] = mapped_column(BigInteger)
    input_image_uncached_tokens: Mapped[int] = mapped_column(BigInteger)
    input_image_cached_tokens: Mapped[int] = mapped_column(BigInteger)
    output_text_tokens: Mapped[int] = mapped_column(BigInteger)
    output_audio_tokens: Mapped[int] = mapped_column(BigInteger)
    output_image_tokens: Mapped[int] = mapped_column(BigInteger)
    breakdown_fallback: Mapped[bool] = mapped_column(
        Boolean, comment="True when older rows without the breakdown were priced by the fallback"
    )
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric, comment="NULL when unpriced")
    unpriced_reason: Mapped[str | None] = mapped_column(Text)
    computed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
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

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date)
    project_id: Mapped[str | None] = mapped_column(Text)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric, comment="Sum of priced usage")
    unpriced_tokens: Mapped[int] = mapped_column(BigInteger, comment="Tokens with no price")
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    num_model_requests: Mapped[int] = mapped_column(BigInteger)
    models: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    unpriced_usage_rows: Mapped[int] = mapped_column(
        Integer,
        server_default="0",
        comment="usage_daily_costs rows (non-token usage) with no price, not counted in cost_usd",
    )
    cost_by_kind: Mapped[dict[str, Any]] = mapped_column(
        JSONB,
        server_default=text("'{}'::jsonb"),
        comment='Priced USD per usage kind, e.g. {"completions": 1.2, "images": 0.04}',
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

    unit_price_id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    usage_kind: Mapped[str] = mapped_column(
        Text, comment="The usage endpoint: embeddings, images, vector_stores, ..."
    )
    model: Mapped[str | None] = mapped_column(
        Text,
        comment="NULL: any model; 'x*': any model starting with x; else the model (a dated "
        "snapshot -YYYY-MM-DD shares its model's price)",
    )
    match: Mapped[dict[str, str]] = mapped_column(
        JSONB, comment='Dimension values the usage must have, e.g. {"size": "1024x1024"}'
    )
    unit: Mapped[str] = mapped_column(
        Text, comment="tokens, characters, minutes, images, gib_days, sessions or calls"
    )
    usd_per_unit: Mapped[Decimal] = mapped_column(Numeric)
    free_per_day: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="Units free per organization and day, shared by the projects pro rata"
    )
    effective_from: Mapped[dt.date] = mapped_column(Date)
    effective_to: Mapped[dt.date | None] = mapped_column(Date, comment="Exclusive; NULL: open")
    source: Mapped[str] = mapped_column(
        Text, comment="'genai-prices <version>', 'bundled' (the package's list) or 'override'"
    )
    rule: Mapped[str | None] = mapped_column(Text, comment="How the row was derived ('free', ...)")
    note: Mapped[str | None] = mapped_column(Text, comment="Where the price comes from (a URL)")
    captured_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    superseded_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), comment="Set when an explicit re-pricing replaced this row"
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

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date)
    project_id: Mapped[str | None] = mapped_column(Text)
    usage_kind: Mapped[str] = mapped_column(Text, comment="The usage endpoint (see unit_prices)")
    model: Mapped[str | None] = mapped_column(Text, comment="NULL: the endpoint has no model")
    detail: Mapped[dict[str, str]] = mapped_column(
        JSONB,
        comment="The priced dimensions: images {size, source}, web_search_calls "
        "{context_level}; {} for the others (NULL dimensions left out)",
    )
    quantity: Mapped[Decimal] = mapped_column(
        Numeric, comment="Usage in `unit` (minutes: seconds / 60; gib_days: see the view)"
    )
    unit: Mapped[str] = mapped_column(Text)
    num_model_requests: Mapped[int | None] = mapped_column(
        BigInteger, comment="NULL: the endpoint does not report requests"
    )
    free_quantity: Mapped[Decimal] = mapped_column(
        Numeric, comment="This row's share of the organization's free allowance, in `unit`"
    )
    unit_price_id: Mapped[int | None] = mapped_column(Integer, comment="The unit_prices row used")
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric, comment="NULL when unpriced")
    unpriced_reason: Mapped[str | None] = mapped_column(Text)
    computed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# --------------------------------------------------------------------------- chargeback


class CostAllocationDaily(Base):
    """The bill split over the usage behind it: each billed amount of a day, project and line
    item (and API key or user where the Costs grouping has them) shared out over the usage rows
    of the same line-item family in proportion to their estimated cost, so that per day, project
    and line item the rows sum to the billed amount exactly."""

    __tablename__ = "cost_allocation_daily"
    __table_args__ = (
        UniqueConstraint(
            "organization",
            "usage_date",
            "project_id",
            "line_item",
            "api_key_id",
            "user_id",
            "model",
            "usage_kind",
            name="uq_cost_allocation_daily_grain",
            postgresql_nulls_not_distinct=True,
        ),
        {
            "comment": "Billed cost allocated per UTC day, project, line item, API key, user, "
            "model and usage kind; sums to costs_daily exactly."
        },
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    organization: Mapped[str] = organization_column()
    usage_date: Mapped[dt.date] = mapped_column(Date)
    project_id: Mapped[str | None] = mapped_column(
        Text, comment="The billed project (NULL: the default project)."
    )
    line_item: Mapped[str | None] = mapped_column(Text, comment="The billed line item.")
    api_key_id: Mapped[str | None] = mapped_column(
        Text, comment="The API key of the usage the share went to (NULL: no key, or unallocated)."
    )
    user_id: Mapped[str | None] = mapped_column(
        Text, comment="The user of the usage the share went to (NULL: no user, or unallocated)."
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
        comment="This row's share of the billed amount, in whole 1e-6 USD (largest remainder); "
        "any sub-micro-dollar rest of the bill goes to the largest share.",
    )
    currency: Mapped[str] = mapped_column(Text, server_default="usd")
    estimated_usd: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="Estimated (list price) cost of the usage behind the share; NULL when "
        "unallocated or unpriced.",
    )
    quantity: Mapped[Decimal | None] = mapped_column(
        Numeric, comment="The share of the line item's billed quantity, in quantity_unit."
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
        DateTime(timezone=True), server_default=func.now()
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

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
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
        DateTime(timezone=True), server_default=func.now()
    )
