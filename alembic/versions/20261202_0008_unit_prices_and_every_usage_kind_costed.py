"""Unit prices and an estimate for every usage kind; reconciliation per line-item family

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00

- `unit_prices`: the snapshot of unit prices (USD per token, character, minute, image, GiB-day,
  session or call) of every usage kind but completions, from genai-prices, the package's bundled
  list and the override file, with effective dates (like `model_prices`).
- `usage_daily_costs`: priced usage of the nine other endpoints per day, project, kind, model and
  priced dimensions (`detail`), with its quantity, unit, the share of a free allowance and the
  unit price used; NULL cost and a reason when unpriced.
- `project_daily_costs.usage_kind` (always 'completions': its token usage), and
  `project_daily_cost_summary.unpriced_usage_rows` and `cost_by_kind` (the summary now sums every
  kind); stored rows are completions.
- The unit-pricing rules in one place, SQL functions: `base_model()` (a dated snapshot's model),
  `unit_price_for()` (which price row applies), `unit_free_quantity()` / `unit_cost_usd()` (the
  cost, with a free allowance per organization and day shared pro rata), `unit_unpriced_reason()`.
- `line_item_family()`: the usage kind a billed line item belongs to ('other' when unknown).
- Views: `v_usage_daily_cost` (every kind per day, project, model), `v_reconciliation_daily`
  (estimated vs billed per day, project and family); `v_project_daily_cost` and
  `v_estimated_vs_billed` gain the new summary columns.

Frozen like every migration: the SQL is written out here, nothing is imported from the app.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
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


# ----------------------------------------------------------------------------- the rules

#: `gpt-4o-2024-08-06` -> `gpt-4o`: a dated snapshot shares its model's price.
BASE_MODEL = f"""
CREATE FUNCTION {S}.base_model(model text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(model, '-[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$', '')
$$
"""

#: The unit price of a day's usage: of the rows of its kind in force that day whose model and
#: dimension values match, the most specific model match (exact name, then the dated snapshot's
#: model, then genai-prices' resolution, then the longest 'prefix*', then any model), then the
#: most dimension values, then the override file before genai-prices before the bundled list,
#: then the latest start. No row: NULL (the usage is unpriced).
UNIT_PRICE_FOR = f"""
CREATE FUNCTION {S}.unit_price_for(
    u_kind text, u_model text, u_model_ref text, u_detail jsonb, u_day date)
RETURNS {S}.unit_prices LANGUAGE sql STABLE AS $$
    SELECT p
    FROM {S}.unit_prices p
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN p.model IS NULL THEN 4
            WHEN p.model = u_model THEN 0
            WHEN p.model = {S}.base_model(u_model) THEN 1
            WHEN p.model = u_model_ref THEN 2
            WHEN right(p.model, 1) = '*' AND starts_with(u_model, left(p.model, -1)) THEN 3
        END AS model_rank
    ) m
    WHERE p.usage_kind = u_kind
      AND p.superseded_at IS NULL
      AND m.model_rank IS NOT NULL
      AND u_detail @> p.match
      AND p.effective_from <= u_day
      AND (p.effective_to IS NULL OR u_day < p.effective_to)
    ORDER BY m.model_rank,
             length(p.model) DESC NULLS LAST,
             (SELECT count(*) FROM jsonb_object_keys(p.match)) DESC,
             CASE WHEN p.source = 'override' THEN 0 WHEN p.source = 'bundled' THEN 2 ELSE 1 END,
             p.effective_from DESC
    LIMIT 1
$$
"""

#: Quantities are in the usage's own unit (`per` of them make one priced unit: 60 seconds are
#: a minute). A free allowance (`free_per_day` priced units) is the organization's per day and
#: shared between its rows (projects) in proportion to their quantity.
UNIT_FREE_QUANTITY = f"""
CREATE FUNCTION {S}.unit_free_quantity(
    p {S}.unit_prices, quantity numeric, org_quantity numeric, per numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p.unit_price_id IS NULL OR coalesce(p.free_per_day, 0) = 0 OR org_quantity = 0
            THEN 0
        ELSE least(org_quantity, p.free_per_day * per) * quantity / org_quantity / per
    END
$$
"""

UNIT_COST = f"""
CREATE FUNCTION {S}.unit_cost_usd(
    p {S}.unit_prices, quantity numeric, org_quantity numeric, per numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p.unit_price_id IS NULL THEN NULL
        WHEN quantity = 0 OR p.usd_per_unit = 0 THEN 0
        WHEN coalesce(p.free_per_day, 0) = 0 AND per = 1 THEN quantity * p.usd_per_unit
        WHEN coalesce(p.free_per_day, 0) = 0 THEN quantity * p.usd_per_unit / per
        WHEN org_quantity <= p.free_per_day * per THEN 0
        ELSE (org_quantity - p.free_per_day * per) * p.usd_per_unit * quantity
             / (org_quantity * per)
    END
$$
"""

UNIT_UNPRICED_REASON = f"""
CREATE FUNCTION {S}.unit_unpriced_reason(kind text, model text, detail jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'no price for ' || kind || coalesce(' model ' || model, '')
           || coalesce((SELECT string_agg(' ' || key || ' ' || value, '' ORDER BY key)
                        FROM jsonb_each_text(detail)), '')
$$
"""

#: The usage kind (endpoint) a billed line item is for: by its quantity unit where that says,
#: else by keywords of the line item, else a token kind of a model is completions; anything
#: else is 'other' (kept, never dropped).
LINE_ITEM_FAMILY = f"""
CREATE FUNCTION {S}.line_item_family(line_item text, quantity_unit text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN u = 'characters' THEN 'audio_speeches'
        WHEN u LIKE 'duration%' AND li LIKE '%code interpreter%' THEN 'code_interpreter_sessions'
        WHEN u LIKE 'duration%' THEN 'audio_transcriptions'
        WHEN u LIKE 'gibibyte%' OR u LIKE 'gigabyte%' THEN 'vector_stores'
        WHEN u IN ('image', 'images') THEN 'images'
        WHEN li LIKE '%vector store%' OR li LIKE '%storage%' THEN 'vector_stores'
        WHEN li LIKE '%web search%' THEN 'web_search_calls'
        WHEN li LIKE '%file search%' THEN 'file_search_calls'
        WHEN li LIKE '%code interpreter%' THEN 'code_interpreter_sessions'
        WHEN li LIKE '%embedding%' THEN 'embeddings'
        WHEN li LIKE '%moderation%' THEN 'moderations'
        WHEN li LIKE '%tts%' OR li LIKE '%speech%' THEN 'audio_speeches'
        WHEN li LIKE '%whisper%' OR li LIKE '%transcri%' THEN 'audio_transcriptions'
        WHEN li LIKE '%dall-e%' OR li LIKE '%image generation%' OR li LIKE '%gpt-image%'
            THEN 'images'
        -- A model and a token kind: 'gpt-4o, cached input', 'gpt-5, cache writes - 12hr'.
        WHEN li ~ '^[^,]+.*, [^,]*(input|output|cache write)[^,]*$' THEN 'completions'
        ELSE 'other'
    END
    FROM (SELECT lower(trim(coalesce(line_item, ''))) AS li,
                 lower(trim(coalesce(quantity_unit, ''))) AS u) x
$$
"""

FUNCTIONS = [
    BASE_MODEL,
    UNIT_PRICE_FOR,
    UNIT_FREE_QUANTITY,
    UNIT_COST,
    UNIT_UNPRICED_REASON,
    LINE_ITEM_FAMILY,
]
DROP_FUNCTIONS = [
    f"DROP FUNCTION {S}.line_item_family",
    f"DROP FUNCTION {S}.unit_unpriced_reason",
    f"DROP FUNCTION {S}.unit_cost_usd",
    f"DROP FUNCTION {S}.unit_free_quantity",
    f"DROP FUNCTION {S}.unit_price_for",
    f"DROP FUNCTION {S}.base_model",
]

# ----------------------------------------------------------------------------- views

#: Every usage kind's estimate per day, project, kind and model, side by side: completions from
#: project_daily_costs (tokens), the others from usage_daily_costs (their own units).
USAGE_COST_VIEW = f"""
CREATE VIEW {S}.v_usage_daily_cost AS
SELECT c.usage_date, c.project_id,
       coalesce(p.name, c.project_id, '(default project)') AS project_name,
       c.usage_kind, c.model, jsonb_build_object('batch', c.batch, 'service_tier', c.service_tier)
       AS detail, (c.input_tokens + c.output_tokens)::numeric AS quantity, 'tokens'::text AS unit,
       c.cost_usd, c.unpriced_reason, mp.source AS price_source
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
UNION ALL
SELECT u.usage_date, u.project_id,
       coalesce(p.name, u.project_id, '(default project)') AS project_name,
       u.usage_kind, u.model, u.detail, u.quantity, u.unit, u.cost_usd, u.unpriced_reason,
       up.source AS price_source
FROM {S}.usage_daily_costs u
LEFT JOIN {S}.projects p ON p.id = u.project_id
LEFT JOIN {S}.unit_prices up ON up.unit_price_id = u.unit_price_id
"""

#: Estimated vs billed per day, project and line-item family (= usage kind, or 'other').
RECONCILIATION_VIEW = f"""
CREATE VIEW {S}.v_reconciliation_daily AS
WITH estimated AS (
    SELECT usage_date, project_id, usage_kind AS family, sum(cost_usd) AS estimated_usd,
           count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_rows
    FROM (
        SELECT usage_date, project_id, usage_kind, cost_usd FROM {S}.project_daily_costs
        UNION ALL
        SELECT usage_date, project_id, usage_kind, cost_usd FROM {S}.usage_daily_costs
    ) e
    GROUP BY 1, 2, 3
), billed AS (
    SELECT usage_date, project_id, {S}.line_item_family(line_item, quantity_unit) AS family,
           sum(amount_usd) AS billed_usd, count(*) AS line_items
    FROM {S}.costs_daily
    GROUP BY 1, 2, 3
)
SELECT coalesce(e.usage_date, b.usage_date) AS usage_date,
       coalesce(e.project_id, b.project_id) AS project_id,
       coalesce(p.name, e.project_id, b.project_id, '(default project)') AS project_name,
       coalesce(e.family, b.family) AS family,
       coalesce(e.estimated_usd, 0) AS estimated_usd,
       coalesce(e.unpriced_rows, 0) AS unpriced_rows,
       coalesce(b.billed_usd, 0) AS billed_usd,
       coalesce(b.line_items, 0) AS billed_line_items,
       coalesce(e.estimated_usd, 0) - coalesce(b.billed_usd, 0) AS difference_usd
FROM estimated e
FULL JOIN billed b
       ON b.usage_date = e.usage_date AND b.project_id IS NOT DISTINCT FROM e.project_id
      AND b.family = e.family
LEFT JOIN {S}.projects p ON p.id = coalesce(e.project_id, b.project_id)
"""

PROJECT_VIEW = f"""
CREATE OR REPLACE VIEW {S}.v_project_daily_cost AS
SELECT s.usage_date, s.project_id, coalesce(p.name, s.project_id, '(default project)')
       AS project_name, p.status AS project_status, s.cost_usd, s.unpriced_tokens,
       s.input_tokens, s.output_tokens, s.num_model_requests, s.models,
       s.unpriced_usage_rows, s.cost_by_kind
FROM {S}.project_daily_cost_summary s
LEFT JOIN {S}.projects p ON p.id = s.project_id
"""

ESTIMATED_VS_BILLED_VIEW = f"""
CREATE OR REPLACE VIEW {S}.v_estimated_vs_billed AS
WITH billed AS (
    SELECT usage_date, project_id, sum(amount_usd) AS billed_usd
    FROM {S}.costs_daily GROUP BY 1, 2
)
SELECT coalesce(s.usage_date, b.usage_date) AS usage_date,
       coalesce(s.project_id, b.project_id) AS project_id,
       coalesce(p.name, s.project_id, b.project_id, '(default project)') AS project_name,
       s.cost_usd AS estimated_usd, s.unpriced_tokens, b.billed_usd,
       coalesce(s.cost_usd, 0) - coalesce(b.billed_usd, 0) AS difference_usd,
       s.unpriced_usage_rows
FROM {S}.project_daily_cost_summary s
FULL JOIN billed b ON b.usage_date = s.usage_date AND b.project_id IS NOT DISTINCT FROM s.project_id
LEFT JOIN {S}.projects p ON p.id = coalesce(s.project_id, b.project_id)
"""

#: 0002's, restored by the downgrade (a view's columns cannot be dropped by OR REPLACE).
OLD_PROJECT_VIEW = f"""
CREATE VIEW {S}.v_project_daily_cost AS
SELECT s.usage_date, s.project_id, coalesce(p.name, s.project_id, '(default project)')
       AS project_name, p.status AS project_status, s.cost_usd, s.unpriced_tokens,
       s.input_tokens, s.output_tokens, s.num_model_requests, s.models
FROM {S}.project_daily_cost_summary s
LEFT JOIN {S}.projects p ON p.id = s.project_id
"""

OLD_ESTIMATED_VS_BILLED_VIEW = f"""
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
"""

# New tables and views are new objects: give them to the BI role (0002's grants). Default
# privileges cover objects created by the role that set them, which may not be this one.
GRANT_NEW = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.unit_prices, {S}.usage_daily_costs, {S}.v_usage_daily_cost,
            {S}.v_reconciliation_daily TO usage_readonly;
    END IF;
END
$$
"""
GRANT_OLD = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.v_project_daily_cost, {S}.v_estimated_vs_billed TO usage_readonly;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "unit_prices",
        sa.Column("unit_price_id", sa.Integer(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "usage_kind",
            sa.Text(),
            nullable=False,
            comment="The usage endpoint: embeddings, images, vector_stores, ...",
        ),
        sa.Column(
            "model",
            sa.Text(),
            nullable=True,
            comment="NULL: any model; 'x*': any model starting with x; else the model (a dated snapshot -YYYY-MM-DD shares its model's price)",
        ),
        sa.Column(
            "match",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment='Dimension values the usage must have, e.g. {"size": "1024x1024"}',
        ),
        sa.Column(
            "unit",
            sa.Text(),
            nullable=False,
            comment="tokens, characters, minutes, images, gib_days, sessions or calls",
        ),
        sa.Column("usd_per_unit", sa.Numeric(), nullable=False),
        sa.Column(
            "free_per_day",
            sa.Numeric(),
            nullable=True,
            comment="Units free per organization and day, shared by the projects pro rata",
        ),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True, comment="Exclusive; NULL: open"),
        sa.Column(
            "source",
            sa.Text(),
            nullable=False,
            comment="'genai-prices <version>', 'bundled' (the package's list) or 'override'",
        ),
        sa.Column(
            "rule", sa.Text(), nullable=True, comment="How the row was derived ('free', ...)"
        ),
        sa.Column("note", sa.Text(), nullable=True, comment="Where the price comes from (a URL)"),
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
        sa.PrimaryKeyConstraint("unit_price_id", name=op.f("pk_unit_prices")),
        schema=S,
        comment="Unit prices of every usage kind but completions, with effective dates.",
    )
    op.create_index(
        "ix_unit_prices_lookup",
        "unit_prices",
        ["usage_kind", "model", "effective_from"],
        unique=False,
        schema=S,
    )
    op.create_table(
        "usage_daily_costs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=True),
        sa.Column(
            "usage_kind", sa.Text(), nullable=False, comment="The usage endpoint (see unit_prices)"
        ),
        sa.Column("model", sa.Text(), nullable=True, comment="NULL: the endpoint has no model"),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="The priced dimensions: images {size, source}, web_search_calls {context_level}; {} for the others (NULL dimensions left out)",
        ),
        sa.Column(
            "quantity",
            sa.Numeric(),
            nullable=False,
            comment="Usage in `unit` (minutes: seconds / 60; gib_days: see the view)",
        ),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column(
            "num_model_requests",
            sa.BigInteger(),
            nullable=True,
            comment="NULL: the endpoint does not report requests",
        ),
        sa.Column(
            "free_quantity",
            sa.Numeric(),
            nullable=False,
            comment="This row's share of the organization's free allowance, in `unit`",
        ),
        sa.Column("unit_price_id", sa.Integer(), nullable=True, comment="The unit_prices row used"),
        sa.Column("cost_usd", sa.Numeric(), nullable=True, comment="NULL when unpriced"),
        sa.Column("unpriced_reason", sa.Text(), nullable=True),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_daily_costs")),
        schema=S,
        comment="Priced usage of every endpoint but completions per UTC day, project, kind.",
    )
    unique_nulls_equal(
        "usage_daily_costs",
        "uq_usage_daily_costs_grain",
        ["usage_date", "project_id", "usage_kind", "model", "detail"],
    )
    op.add_column(
        "project_daily_costs",
        sa.Column(
            "usage_kind",
            sa.Text(),
            server_default="completions",
            nullable=False,
            comment="The usage endpoint priced: always completions here (token usage); the other endpoints are in usage_daily_costs.",
        ),
        schema=S,
    )
    op.add_column(
        "project_daily_cost_summary",
        sa.Column(
            "unpriced_usage_rows",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="usage_daily_costs rows (non-token usage) with no price, not counted in cost_usd",
        ),
        schema=S,
    )
    op.add_column(
        "project_daily_cost_summary",
        sa.Column(
            "cost_by_kind",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment='Priced USD per usage kind, e.g. {"completions": 1.2, "images": 0.04}',
        ),
        schema=S,
    )
    # Stored summaries are of completions only.
    op.execute(
        f"UPDATE {S}.project_daily_cost_summary "
        "SET cost_by_kind = jsonb_build_object('completions', cost_usd)"
    )
    for statement in FUNCTIONS:
        op.execute(statement)
    op.execute(USAGE_COST_VIEW)
    op.execute(RECONCILIATION_VIEW)
    op.execute(PROJECT_VIEW)
    op.execute(ESTIMATED_VS_BILLED_VIEW)
    op.execute(GRANT_NEW)


def downgrade() -> None:
    op.execute(f"DROP VIEW {S}.v_reconciliation_daily")
    op.execute(f"DROP VIEW {S}.v_usage_daily_cost")
    op.execute(f"DROP VIEW {S}.v_estimated_vs_billed")
    op.execute(f"DROP VIEW {S}.v_project_daily_cost")
    op.execute(OLD_PROJECT_VIEW)
    op.execute(OLD_ESTIMATED_VS_BILLED_VIEW)
    op.execute(GRANT_OLD)
    for statement in DROP_FUNCTIONS:
        op.execute(statement)
    # The summary goes back to completions only: its cost without the other kinds.
    op.execute(
        f"UPDATE {S}.project_daily_cost_summary "
        "SET cost_usd = coalesce((cost_by_kind->>'completions')::numeric, 0)"
    )
    op.drop_column("project_daily_cost_summary", "cost_by_kind", schema=S)
    op.drop_column("project_daily_cost_summary", "unpriced_usage_rows", schema=S)
    op.drop_column("project_daily_costs", "usage_kind", schema=S)
    op.drop_table("usage_daily_costs", schema=S)
    op.drop_index("ix_unit_prices_lookup", table_name="unit_prices", schema=S)
    op.drop_table("unit_prices", schema=S)
