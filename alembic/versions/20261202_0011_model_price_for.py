"""The token price selection as a SQL function, beside the other pricing rules

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 04:35:00

Which `model_prices` row prices a day's completions usage was a LATERAL subquery in the
application's cost SQL; it is now `openai_usage.model_price_for(model_ref, batch, service_tier,
usage_date)`, so every pricing rule lives in the schema's SQL functions: this selection,
`estimate_cost_by_kind()` / `estimate_cost_usd()` (0004) for tokens, `unit_price_for()` /
`unit_cost_usd()` (0008) for the other kinds. Same rule as before: the current (not
superseded) row of the model, batch flag and tier in force on the day; an override row first,
then the exact tier (`scale`, prepaid capacity, falls back to the default rates), then the
latest `effective_from`. NULL batch / tier (not grouped) mean interactive / default. A
set-returning SQL function (zero or one row), so PostgreSQL inlines it into the cost query's
FROM clause like the subquery it replaces (a scalar function call per group was measured 20-30%
slower).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"

MODEL_PRICE_FOR = f"""
CREATE FUNCTION {S}.model_price_for(
    model_ref text, batch boolean, service_tier text, usage_date date
) RETURNS SETOF {S}.model_prices
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1 AS $$
    SELECT p.*
    FROM {S}.model_prices p
    WHERE p.model_ref = model_price_for.model_ref
      AND p.superseded_at IS NULL
      AND p.batch = coalesce(model_price_for.batch, false)
      AND p.service_tier IN (coalesce(model_price_for.service_tier, 'default'),
                             CASE WHEN model_price_for.service_tier = 'scale' THEN 'default' END)
      AND p.effective_from <= model_price_for.usage_date
      AND (p.effective_to IS NULL OR model_price_for.usage_date < p.effective_to)
    ORDER BY (p.source = 'override') DESC,
             (p.service_tier = coalesce(model_price_for.service_tier, 'default')) DESC,
             p.effective_from DESC
    LIMIT 1
$$
"""


def upgrade() -> None:
    op.execute(MODEL_PRICE_FOR)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {S}.model_price_for(text, boolean, text, date)")
