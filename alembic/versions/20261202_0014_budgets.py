"""Chargeback: monthly budgets and their status

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 09:00:00

- `budgets`: the budget file (USAGE_BUDGETS) as loaded, per organization: a monthly amount in
  USD and thresholds (percent) per scope, a project id, an API key id and a user id, each NULL
  for "any" (not all NULL); unique per organization and scope, NULLs equal.
- `v_budget_status`: per organization, budget and calendar month (UTC) that has allocated spend
  (`cost_allocation_daily`), plus the current month: month-to-date spend in the budget's scope,
  the forecast to month end, percentages, the highest threshold reached and a status.

The forecast rule (written here once; the checks read this view):

    forecast = month-to-date spend
             + (spend of the trailing 7 days up to as_of) / (number of those days)
               * (days of the month after as_of)

where `as_of` is the last day of the month with allocated rows of the organization (the bill
lags, so "today" would count days not yet billed as zero), the trailing days are days of the
month only (fewer when the month is younger than 7 days: on the 3rd, the mean of 3 days), and
a day without spend counts as zero. A month with no allocated rows yet forecasts zero.

Frozen like every migration: the SQL is written out here, nothing is imported from the app.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
TABLE = "budgets"
SCOPE = "uq_budgets_scope"
SCOPE_COLUMNS = ["organization", "project_id", "api_key_id", "user_id"]


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


BUDGET_STATUS_VIEW = f"""
CREATE VIEW {S}.v_budget_status AS
WITH spend_months AS (
    -- Months with allocated spend, and the last allocated day of each (per organization).
    SELECT organization, date_trunc('month', usage_date)::date AS month,
           max(usage_date) AS as_of
    FROM {S}.cost_allocation_daily
    GROUP BY organization, date_trunc('month', usage_date)::date
),
months AS (
    SELECT organization, month, as_of FROM spend_months
    UNION ALL
    -- The current month (UTC) of an organization with budgets, before any of it is allocated.
    SELECT DISTINCT b.organization, date_trunc('month', now() AT TIME ZONE 'UTC')::date,
           NULL::date
    FROM {S}.budgets b
    WHERE NOT EXISTS (
        SELECT 1 FROM spend_months s
        WHERE s.organization = b.organization
          AND s.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
    )
),
measured AS (
    SELECT
        b.organization, b.id AS budget_id, m.month, b.project_id, b.api_key_id, b.user_id,
        b.monthly_usd, b.thresholds, m.as_of,
        coalesce(m.as_of - m.month + 1, 0) AS days_elapsed,
        (m.month + interval '1 month')::date - m.month AS days_in_month,
        least(7, coalesce(m.as_of - m.month + 1, 0)) AS trailing_days,
        s.spend, s.trailing_spend,
        (SELECT max(t) FROM unnest(b.thresholds) t) AS last_threshold
    FROM {S}.budgets b
    JOIN months m ON m.organization = b.organization
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(a.allocated_usd), 0) AS spend,
               coalesce(sum(a.allocated_usd) FILTER (WHERE a.usage_date > m.as_of - 7), 0)
                   AS trailing_spend
        FROM {S}.cost_allocation_daily a
        WHERE a.organization = b.organization
          AND a.usage_date >= m.month
          AND a.usage_date < (m.month + interval '1 month')::date
          AND (b.project_id IS NULL OR a.project_id = b.project_id)
          AND (b.api_key_id IS NULL OR a.api_key_id = b.api_key_id)
          AND (b.user_id IS NULL OR a.user_id = b.user_id)
    ) s
),
forecast AS (
    SELECT
        measured.*,
        spend + CASE WHEN trailing_days > 0
                     THEN trailing_spend * (days_in_month - days_elapsed) / trailing_days
                     ELSE 0 END AS forecast
    FROM measured
),
percent AS (
    SELECT
        forecast.*,
        100 * spend / monthly_usd AS percent_exact,
        100 * forecast / monthly_usd AS forecast_percent_exact
    FROM forecast
),
reached AS (
    SELECT
        percent.*,
        (SELECT max(t) FROM unnest(thresholds) t WHERE t <= percent_exact) AS threshold_reached,
        (SELECT max(t) FROM unnest(thresholds) t WHERE t <= forecast_percent_exact)
            AS forecast_threshold_reached
    FROM percent
)
SELECT
    r.organization,
    r.month,
    r.budget_id,
    r.project_id,
    p.name AS project_name,
    r.api_key_id,
    k.name AS api_key_name,
    r.user_id,
    u.name AS user_name,
    u.email AS user_email,
    r.monthly_usd,
    r.thresholds,
    r.as_of,
    r.days_elapsed,
    r.days_in_month,
    round(r.spend, 2) AS spend_to_date_usd,
    r.spend AS spend_to_date_exact_usd,
    round(r.monthly_usd - r.spend, 2) AS remaining_usd,
    round(r.forecast, 2) AS forecast_usd,
    r.forecast AS forecast_exact_usd,
    round(r.percent_exact, 2) AS percent_used,
    round(r.forecast_percent_exact, 2) AS forecast_percent,
    r.threshold_reached,
    r.forecast_threshold_reached,
    r.last_threshold,
    -- The forecast crosses a threshold the month-to-date spend has not reached yet.
    coalesce(r.forecast_threshold_reached > coalesce(r.threshold_reached, 0), false)
        AS forecast_at_risk,
    CASE
        WHEN r.threshold_reached >= r.last_threshold THEN 'over'
        WHEN r.threshold_reached IS NOT NULL THEN 'warn'
        WHEN r.forecast_threshold_reached >= r.last_threshold THEN 'forecast_over'
        WHEN r.forecast_threshold_reached IS NOT NULL THEN 'forecast_warn'
        ELSE 'ok'
    END AS status
FROM reached r
LEFT JOIN {S}.projects p ON p.organization = r.organization AND p.id = r.project_id
LEFT JOIN {S}.api_keys k ON k.organization = r.organization AND k.id = r.api_key_id
LEFT JOIN {S}.users u ON u.organization = r.organization AND u.id = r.user_id
"""


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "organization",
            sa.Text(),
            server_default="default",
            nullable=False,
            comment="The OpenAI organization the row belongs to: OPENAI_ORGANIZATION, else USAGE_ORGANIZATION_LABEL (default 'default').",
        ),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="The budgeted project (NULL: any project).",
        ),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="The budgeted API key (NULL: any key).",
        ),
        sa.Column(
            "user_id", sa.Text(), nullable=True, comment="The budgeted user (NULL: any user)."
        ),
        sa.Column(
            "monthly_usd",
            sa.Numeric(),
            nullable=False,
            comment="The budget per calendar month (UTC), in USD.",
        ),
        sa.Column(
            "thresholds",
            postgresql.ARRAY(sa.Numeric()),
            nullable=False,
            comment="Percentages of monthly_usd that warn, increasing; reaching the last one fails.",
        ),
        sa.Column(
            "source",
            sa.Text(),
            nullable=False,
            comment="The budget file (USAGE_BUDGETS) and entry the row came from.",
        ),
        sa.Column(
            "loaded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("monthly_usd > 0", name=op.f("ck_budgets_positive_amount")),
        sa.CheckConstraint(
            "num_nonnulls(project_id, api_key_id, user_id) > 0",
            name=op.f("ck_budgets_scope_given"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        schema=S,
        comment="Monthly budgets per project, API key and/or user, from USAGE_BUDGETS.",
    )
    unique_nulls_equal(TABLE, SCOPE, SCOPE_COLUMNS)
    op.execute(BUDGET_STATUS_VIEW)


def downgrade() -> None:
    op.execute(f"DROP VIEW {S}.v_budget_status")
    op.drop_table(TABLE, schema=S)
