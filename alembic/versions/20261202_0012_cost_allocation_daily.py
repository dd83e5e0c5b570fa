"""Chargeback: the bill allocated over the usage behind it

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:14:59

- `cost_allocation_daily`: each day's billed amount per project and line item (and API key or
  user where the Costs grouping has them) split over the usage of the same line-item family in
  proportion to its estimated cost; per day, project and line item the rows sum to the billed
  amount exactly. Billed cost with no usage behind it is a row with an `unallocated_reason`.
- `v_cost_allocation_daily`: spend per day, project, API key, user, model and usage kind, with
  names, that sums to the invoice (the allocation's line items summed).

Frozen like every migration: the SQL is written out here, nothing is imported from the app.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
TABLE = "cost_allocation_daily"
GRAIN = "uq_cost_allocation_daily_grain"
GRAIN_COLUMNS = [
    "organization", "usage_date", "project_id", "line_item", "api_key_id", "user_id", "model",
    "usage_kind",
]  # fmt: skip


VIEW = f"""
CREATE VIEW {S}.v_cost_allocation_daily AS
SELECT a.organization, a.usage_date, a.project_id,
       coalesce(p.name, a.project_id, '(default project)') AS project_name,
       a.api_key_id, k.name AS api_key_name, k.redacted_value AS api_key_redacted,
       a.user_id, coalesce(u.email, u.name) AS user_name, a.model, a.usage_kind,
       sum(a.allocated_usd) AS billed_usd,
       sum(a.estimated_usd) AS estimated_usd,
       coalesce(sum(a.allocated_usd) FILTER (WHERE a.unallocated_reason IS NOT NULL), 0)
           AS unallocated_usd,
       count(*) AS line_items,
       min(a.currency) AS currency
FROM {S}.cost_allocation_daily a
LEFT JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id
LEFT JOIN {S}.api_keys k ON k.organization = a.organization AND k.id = a.api_key_id
LEFT JOIN {S}.users u ON u.organization = a.organization AND u.id = a.user_id
GROUP BY a.organization, a.usage_date, a.project_id, p.name, a.api_key_id, k.name,
         k.redacted_value, a.user_id, u.email, u.name, a.model, a.usage_kind
"""


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


def upgrade() -> None:
    op.create_table(
        "cost_allocation_daily",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "organization",
            sa.Text(),
            server_default="default",
            nullable=False,
            comment="The OpenAI organization the row belongs to: OPENAI_ORGANIZATION, else USAGE_ORGANIZATION_LABEL (default 'default').",
        ),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column(
            "project_id",
            sa.Text(),
            nullable=True,
            comment="The billed project (NULL: the default project).",
        ),
        sa.Column("line_item", sa.Text(), nullable=True, comment="The billed line item."),
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="The API key of the usage the share went to (NULL: no key, or unallocated).",
        ),
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="The user of the usage the share went to (NULL: no user, or unallocated).",
        ),
        sa.Column(
            "model",
            sa.Text(),
            nullable=True,
            comment="The usage's model (unallocated: the line item's model, if it names one).",
        ),
        sa.Column(
            "usage_kind",
            sa.Text(),
            nullable=False,
            comment="The line item's family: the usage endpoint (completions, images, ...) or 'other' when the line item names none.",
        ),
        sa.Column(
            "allocated_usd",
            sa.Numeric(),
            nullable=False,
            comment="This row's share of the billed amount, in whole 1e-6 USD (largest remainder); any sub-micro-dollar rest of the bill goes to the largest share.",
        ),
        sa.Column("currency", sa.Text(), server_default="usd", nullable=False),
        sa.Column(
            "estimated_usd",
            sa.Numeric(),
            nullable=True,
            comment="Estimated (list price) cost of the usage behind the share; NULL when unallocated or unpriced.",
        ),
        sa.Column(
            "quantity",
            sa.Numeric(),
            nullable=True,
            comment="The share of the line item's billed quantity, in quantity_unit.",
        ),
        sa.Column(
            "quantity_unit",
            sa.Text(),
            nullable=True,
            comment="The billed quantity's unit (tokens, images, ...).",
        ),
        sa.Column(
            "allocation_basis",
            sa.Text(),
            nullable=True,
            comment="What the shares are proportional to: 'estimated cost of the token kind', 'estimated cost of the model', 'estimated cost', 'usage quantity'; NULL: unallocated.",
        ),
        sa.Column(
            "unallocated_reason",
            sa.Text(),
            nullable=True,
            comment="Why no usage took this billed amount; NULL when allocated.",
        ),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_allocation_daily")),
        schema=S,
        comment="Billed cost allocated per UTC day, project, line item, API key, user, model and usage kind; sums to costs_daily exactly.",
    )
    unique_nulls_equal(TABLE, GRAIN, GRAIN_COLUMNS)
    op.execute(VIEW)


def downgrade() -> None:
    op.execute(f"DROP VIEW {S}.v_cost_allocation_daily")
    op.drop_table(TABLE, schema=S)
