"""names, billed costs, prices and cost attribution

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:09:04.659009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"

# One definition of the token kinds and of the pricing rules, shared by the cost assets and
# the BI views. README "Pricing rules" documents each line.
TOKEN_KINDS_VIEW = f"""
CREATE VIEW {S}.v_usage_token_kinds AS
SELECT
    u.bucket_start,
    (u.bucket_start AT TIME ZONE 'UTC')::date AS usage_date,
    u.project_id, u.user_id, u.api_key_id, u.model, u.batch, u.service_tier, u.api_source,
    u.input_tokens, u.output_tokens, u.num_model_requests,
    (u.input_text_tokens IS NULL) AS breakdown_fallback,
    coalesce(u.input_text_tokens,
             u.input_tokens - coalesce(u.input_cached_tokens, 0)
             - coalesce(u.input_cache_write_tokens, 0) - coalesce(u.input_cache_write_12h_tokens, 0)
             - coalesce(u.input_audio_tokens, 0) - coalesce(u.input_image_tokens, 0))
        AS input_text_uncached_tokens,
    coalesce(u.input_cached_text_tokens,
             coalesce(u.input_cached_tokens, 0) - coalesce(u.input_cached_audio_tokens, 0)
             - coalesce(u.input_cached_image_tokens, 0))
        AS input_text_cached_tokens,
    coalesce(u.input_cache_write_tokens, 0) AS input_cache_write_tokens,
    coalesce(u.input_cache_write_12h_tokens, 0) AS input_cache_write_12h_tokens,
    coalesce(u.input_audio_tokens, 0) AS input_audio_uncached_tokens,
    coalesce(u.input_cached_audio_tokens, 0) AS input_audio_cached_tokens,
    coalesce(u.input_image_tokens, 0) AS input_image_uncached_tokens,
    coalesce(u.input_cached_image_tokens, 0) AS input_image_cached_tokens,
    coalesce(u.output_text_tokens,
             u.output_tokens - coalesce(u.output_audio_tokens, 0) - coalesce(u.output_image_tokens, 0))
        AS output_text_tokens,
    coalesce(u.output_audio_tokens, 0) AS output_audio_tokens,
    coalesce(u.output_image_tokens, 0) AS output_image_tokens
FROM {S}.completions_usage_hourly u
"""

KIND_ARGS = """
    text_uncached numeric, text_cached numeric, cache_write numeric, cache_write_12h numeric,
    audio_uncached numeric, audio_cached numeric, image_uncached numeric, image_cached numeric,
    out_text numeric, out_audio numeric, out_image numeric"""

TOKENS_TIMES_RATE = f"""
CREATE FUNCTION {S}.tokens_times_rate(tokens numeric, rate_per_mtok numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN tokens = 0 THEN 0 ELSE tokens * rate_per_mtok / 1000000 END
$$
"""

# Cost by billed line-item kind (the kinds of `/v1/organization/costs` line items), so estimates
# reconcile with the invoice per model and kind; a NULL cost means a rate is missing.
ESTIMATE_COST_BY_KIND = f"""
CREATE FUNCTION {S}.estimate_cost_by_kind(p {S}.model_prices, {KIND_ARGS})
RETURNS TABLE (line_item_kind text, cost_usd numeric) LANGUAGE sql STABLE AS $$
    VALUES
    ('input',
         {S}.tokens_times_rate(text_uncached, p.input_mtok)
       + {S}.tokens_times_rate(audio_uncached, p.input_audio_mtok)
       + {S}.tokens_times_rate(image_uncached, coalesce(p.input_image_mtok, p.input_mtok))),
    ('cached input',
         {S}.tokens_times_rate(text_cached, coalesce(p.cache_read_mtok, p.input_mtok))
       + {S}.tokens_times_rate(audio_cached, coalesce(p.cache_audio_read_mtok, p.input_audio_mtok))
       + {S}.tokens_times_rate(image_cached,
             coalesce(p.cache_image_read_mtok, p.cache_read_mtok, p.input_image_mtok, p.input_mtok))),
    ('cache writes',
         {S}.tokens_times_rate(cache_write, coalesce(p.cache_write_mtok, p.input_mtok))),
    ('cache writes - 12hr',
         {S}.tokens_times_rate(cache_write_12h,
             coalesce(p.cache_write_12h_mtok, p.cache_write_mtok, p.input_mtok))),
    ('output',
         {S}.tokens_times_rate(out_text, p.output_mtok)
       + {S}.tokens_times_rate(out_audio, p.output_audio_mtok)
       + {S}.tokens_times_rate(out_image, coalesce(p.output_image_mtok, p.output_mtok)))
$$
"""

ARG_NAMES = "text_uncached, text_cached, cache_write, cache_write_12h, audio_uncached, audio_cached, image_uncached, image_cached, out_text, out_audio, out_image"

ESTIMATE_COST = f"""
CREATE FUNCTION {S}.estimate_cost_usd(p {S}.model_prices, {KIND_ARGS}) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_or(k.cost_usd IS NULL) THEN NULL ELSE sum(k.cost_usd) END
    FROM {S}.estimate_cost_by_kind(p, {ARG_NAMES}) k
$$
"""

UNPRICED_REASON = f"""
CREATE FUNCTION {S}.unpriced_reason(model_ref text, p {S}.model_prices, {KIND_ARGS})
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN model_ref IS NULL THEN 'unknown model: not in genai-prices or the override file'
        WHEN p.price_id IS NULL THEN 'no price for this service tier and batch flag on this day'
        WHEN text_uncached + cache_write + cache_write_12h + text_cached + image_uncached
             + image_cached > 0 AND p.input_mtok IS NULL THEN 'no input rate'
        WHEN audio_uncached + audio_cached > 0 AND p.input_audio_mtok IS NULL
            THEN 'no audio input rate'
        WHEN out_text + out_image > 0 AND p.output_mtok IS NULL THEN 'no output rate'
        WHEN out_audio > 0 AND p.output_audio_mtok IS NULL THEN 'no audio output rate'
    END
$$
"""

BI_VIEWS = [
    f"""
CREATE VIEW {S}.v_project_daily_cost AS
SELECT s.usage_date, s.project_id, coalesce(p.name, s.project_id, '(default project)')
       AS project_name, p.status AS project_status, s.cost_usd, s.unpriced_tokens,
       s.input_tokens, s.output_tokens, s.num_model_requests, s.models
FROM {S}.project_daily_cost_summary s
LEFT JOIN {S}.projects p ON p.id = s.project_id
""",
    f"""
CREATE VIEW {S}.v_model_daily_cost AS
SELECT c.usage_date, c.project_id, coalesce(p.name, c.project_id, '(default project)')
       AS project_name, c.model, c.model_ref, c.batch, c.service_tier, c.input_tokens,
       c.output_tokens, c.num_model_requests, c.cost_usd, c.unpriced_reason, c.price_id,
       mp.source AS price_source
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
""",
    f"""
CREATE VIEW {S}.v_api_key_daily_cost AS
SELECT k.usage_date, k.project_id, coalesce(p.name, k.project_id, '(default project)')
       AS project_name, k.api_key_id, ak.name AS api_key_name, ak.redacted_value,
       sum(k.input_tokens) AS input_tokens, sum(k.output_tokens) AS output_tokens,
       sum(k.num_model_requests) AS num_model_requests,
       CASE WHEN bool_or(x.cost IS NULL) THEN NULL ELSE sum(x.cost) END AS cost_usd
FROM {S}.v_usage_token_kinds k
LEFT JOIN {S}.project_daily_costs c
       ON c.usage_date = k.usage_date AND c.project_id IS NOT DISTINCT FROM k.project_id
      AND c.model IS NOT DISTINCT FROM k.model AND c.batch IS NOT DISTINCT FROM k.batch
      AND c.service_tier IS NOT DISTINCT FROM k.service_tier
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
LEFT JOIN {S}.projects p ON p.id = k.project_id
LEFT JOIN {S}.api_keys ak ON ak.id = k.api_key_id
CROSS JOIN LATERAL (SELECT {S}.estimate_cost_usd(mp,
    k.input_text_uncached_tokens, k.input_text_cached_tokens, k.input_cache_write_tokens,
    k.input_cache_write_12h_tokens, k.input_audio_uncached_tokens, k.input_audio_cached_tokens,
    k.input_image_uncached_tokens, k.input_image_cached_tokens, k.output_text_tokens,
    k.output_audio_tokens, k.output_image_tokens) AS cost) x
GROUP BY 1, 2, 3, 4, 5, 6
""",
    f"""
CREATE VIEW {S}.v_estimated_vs_billed AS
WITH billed AS (
    SELECT usage_date, project_id, sum(amount_usd) AS billed_usd
    FROM {S}.costs_daily GROUP BY 1, 2
)
SELECT coalesce(s.usage_date, b.usage_date) AS usage_date,
       coalesce(s.project_id, b.project_id) AS project_id,
       coalesce(p.name, s.project_id, b.project_id, '(default project)') AS project_name,
       s.cost_usd AS estimated_usd, s.unpriced_tokens, b.billed_usd,
       coalesce(s.cost_usd, 0) - coalesce(b.billed_usd, 0) AS difference_usd
FROM {S}.project_daily_cost_summary s
FULL JOIN billed b ON b.usage_date = s.usage_date AND b.project_id IS NOT DISTINCT FROM s.project_id
LEFT JOIN {S}.projects p ON p.id = coalesce(s.project_id, b.project_id)
""",
]

SQL_OBJECTS = [
    TOKEN_KINDS_VIEW,
    TOKENS_TIMES_RATE,
    ESTIMATE_COST_BY_KIND,
    ESTIMATE_COST,
    UNPRICED_REASON,
    *BI_VIEWS,
]
DROP_SQL_OBJECTS = [
    f"DROP VIEW {S}.v_estimated_vs_billed",
    f"DROP VIEW {S}.v_api_key_daily_cost",
    f"DROP VIEW {S}.v_model_daily_cost",
    f"DROP VIEW {S}.v_project_daily_cost",
    f"DROP FUNCTION {S}.unpriced_reason",
    f"DROP FUNCTION {S}.estimate_cost_usd",
    f"DROP FUNCTION {S}.estimate_cost_by_kind",
    f"DROP FUNCTION {S}.tokens_times_rate",
    f"DROP VIEW {S}.v_usage_token_kinds",
]

# A read-only role for BI tools: `GRANT usage_readonly TO metabase;`. Roles are cluster-wide,
# so creation is idempotent, and a user without CREATEROLE gets a notice instead of a failure.
READONLY_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        BEGIN
            CREATE ROLE usage_readonly NOLOGIN;
        EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN
            RAISE NOTICE 'usage_readonly not created (%); create it and rerun the grants', SQLERRM;
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT USAGE ON SCHEMA {S} TO usage_readonly;
        GRANT SELECT ON ALL TABLES IN SCHEMA {S} TO usage_readonly;
        ALTER DEFAULT PRIVILEGES IN SCHEMA {S} GRANT SELECT ON TABLES TO usage_readonly;
    END IF;
END
$$
"""
DROP_READONLY_ROLE = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA {S} REVOKE SELECT ON TABLES FROM usage_readonly;
        REVOKE SELECT ON ALL TABLES IN SCHEMA {S} FROM usage_readonly;
        REVOKE USAGE ON SCHEMA {S} FROM usage_readonly;
    END IF;
END
$$
"""


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
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("redacted_value", sa.Text(), nullable=True),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        schema="openai_usage",
        comment="Project API keys (id, name, redacted value only).",
    )
    op.create_table(
        "costs_daily",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=True),
        sa.Column("line_item", sa.Text(), nullable=True),
        sa.Column(
            "line_item_model",
            sa.Text(),
            nullable=True,
            comment="Model parsed from line_item ('gpt-4o-2024-08-06, input' -> the model).",
        ),
        sa.Column(
            "line_item_kind",
            sa.Text(),
            nullable=True,
            comment="Token kind parsed from line_item: input, cached input, output, ...",
        ),
        sa.Column("amount_usd", sa.Numeric(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "ingested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_costs_daily")),
        schema="openai_usage",
        comment="Billed OpenAI costs per UTC day, project and line item.",
    )
    unique_nulls_equal(
        "costs_daily",
        "uq_costs_daily_day_project_line_item",
        ["usage_date", "project_id", "line_item"],
    )
    op.create_table(
        "model_aliases",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_ref", sa.Text(), nullable=True),
        sa.Column(
            "resolved_by", sa.Text(), nullable=False, comment="genai-prices, override or unresolved"
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_model_aliases")),
        schema="openai_usage",
        comment="Reported model name -> priced model reference.",
    )
    op.create_table(
        "model_prices",
        sa.Column("price_id", sa.Integer(), sa.Identity(always=True), nullable=False),
        sa.Column("model_ref", sa.Text(), nullable=False),
        sa.Column("service_tier", sa.Text(), nullable=False),
        sa.Column("batch", sa.Boolean(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True, comment="Exclusive; NULL: open"),
        sa.Column("input_mtok", sa.Numeric(), nullable=True),
        sa.Column("cache_read_mtok", sa.Numeric(), nullable=True),
        sa.Column("cache_write_mtok", sa.Numeric(), nullable=True),
        sa.Column("cache_write_12h_mtok", sa.Numeric(), nullable=True),
        sa.Column("input_audio_mtok", sa.Numeric(), nullable=True),
        sa.Column("cache_audio_read_mtok", sa.Numeric(), nullable=True),
        sa.Column("input_image_mtok", sa.Numeric(), nullable=True),
        sa.Column("cache_image_read_mtok", sa.Numeric(), nullable=True),
        sa.Column("output_mtok", sa.Numeric(), nullable=True),
        sa.Column("output_audio_mtok", sa.Numeric(), nullable=True),
        sa.Column("output_image_mtok", sa.Numeric(), nullable=True),
        sa.Column(
            "source", sa.Text(), nullable=False, comment="'genai-prices <version>' or 'override'"
        ),
        sa.Column("rule", sa.Text(), nullable=True, comment="How the row was derived"),
        sa.Column(
            "captured_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "superseded_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Set when an explicit re-pricing replaced this row",
        ),
        sa.PrimaryKeyConstraint("price_id", name=op.f("pk_model_prices")),
        schema="openai_usage",
        comment="Prices used for cost attribution, USD per 1M tokens, with effective dates.",
    )
    op.create_index(
        "ix_model_prices_lookup",
        "model_prices",
        ["model_ref", "service_tier", "batch", "effective_from"],
        unique=False,
        schema="openai_usage",
    )
    op.create_table(
        "project_daily_cost_summary",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(), nullable=False, comment="Sum of priced usage"),
        sa.Column(
            "unpriced_tokens", sa.BigInteger(), nullable=False, comment="Tokens with no price"
        ),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=False),
        sa.Column("models", sa.Integer(), nullable=False),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_daily_cost_summary")),
        schema="openai_usage",
        comment="Estimated cost per UTC day and project.",
    )
    unique_nulls_equal(
        "project_daily_cost_summary",
        "uq_project_daily_cost_summary_day_project",
        ["usage_date", "project_id"],
    )
    op.create_table(
        "project_daily_costs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("batch", sa.Boolean(), nullable=True),
        sa.Column("service_tier", sa.Text(), nullable=True),
        sa.Column("model_ref", sa.Text(), nullable=True),
        sa.Column("price_id", sa.Integer(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=False),
        sa.Column("input_text_uncached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_text_cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_cache_write_12h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_audio_uncached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_audio_cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_image_uncached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_image_cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_text_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_audio_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_image_tokens", sa.BigInteger(), nullable=False),
        sa.Column(
            "breakdown_fallback",
            sa.Boolean(),
            nullable=False,
            comment="True when older rows without the breakdown were priced by the fallback",
        ),
        sa.Column("cost_usd", sa.Numeric(), nullable=True, comment="NULL when unpriced"),
        sa.Column("unpriced_reason", sa.Text(), nullable=True),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_daily_costs")),
        schema="openai_usage",
        comment="Priced usage per UTC day, project, model, batch flag and service tier.",
    )
    unique_nulls_equal(
        "project_daily_costs",
        "uq_project_daily_costs_grain",
        ["usage_date", "project_id", "model", "batch", "service_tier"],
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        schema="openai_usage",
        comment="OpenAI projects, refreshed from the Admin API.",
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        schema="openai_usage",
        comment="OpenAI organization users, refreshed from the Admin API.",
    )
    # ### end Alembic commands ###
    for statement in SQL_OBJECTS:
        op.execute(statement)
    op.execute(READONLY_ROLE)


def downgrade() -> None:
    op.execute(DROP_READONLY_ROLE)
    for statement in DROP_SQL_OBJECTS:
        op.execute(statement)
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table("users", schema="openai_usage")
    op.drop_table("projects", schema="openai_usage")
    op.drop_table("project_daily_costs", schema="openai_usage")
    op.drop_table("project_daily_cost_summary", schema="openai_usage")
    op.drop_index("ix_model_prices_lookup", table_name="model_prices", schema="openai_usage")
    op.drop_table("model_prices", schema="openai_usage")
    op.drop_table("model_aliases", schema="openai_usage")
    op.drop_table("costs_daily", schema="openai_usage")
    op.drop_table("api_keys", schema="openai_usage")
    # ### end Alembic commands ###
