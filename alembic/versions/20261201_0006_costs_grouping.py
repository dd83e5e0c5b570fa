"""costs_daily by API key, user and API source, with quantity and the grouping used

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:00:00

`GET /v1/organization/costs` is now asked with group_by project_id, line_item, api_key_id,
user_id, api_source (or a coarser grouping where the organization refuses that one). The table
gains those three dimensions, the billed `quantity` and its `quantity_unit`, and `group_by`, the
grouping each row was fetched with. Rows stored before have NULL in all of them (they were
fetched by project_id and line_item). The unique key widens to the full grouping key, NULLs
equal as before.

Downgrade folds rows that only differ in the dropped dimensions into one per day, project and
line item (amounts summed exactly; the `result` JSON becomes a summary of the sum), so the
narrower key holds again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
TABLE = "costs_daily"
OLD_KEY = "uq_costs_daily_day_project_line_item"
OLD_COLUMNS = ["usage_date", "project_id", "line_item"]
NEW_KEY = "uq_costs_daily_day_grouping_key"
NEW_COLUMNS = [*OLD_COLUMNS, "api_key_id", "user_id", "api_source"]

#: Rows that share (day, project, line item) folded into one, before the narrower key returns.
FOLD_FINER_ROWS = f"""
CREATE TEMPORARY TABLE costs_daily_folded ON COMMIT DROP AS
SELECT usage_date, project_id, line_item,
       min(line_item_model) AS line_item_model, min(line_item_kind) AS line_item_kind,
       sum(amount_usd) AS amount_usd, min(currency) AS currency
FROM {S}.{TABLE}
GROUP BY usage_date, project_id, line_item
HAVING count(*) > 1;

DELETE FROM {S}.{TABLE} c
USING costs_daily_folded f
WHERE c.usage_date = f.usage_date
  AND c.project_id IS NOT DISTINCT FROM f.project_id
  AND c.line_item IS NOT DISTINCT FROM f.line_item;

INSERT INTO {S}.{TABLE} (usage_date, project_id, line_item, line_item_model, line_item_kind,
                         amount_usd, currency, result)
SELECT usage_date, project_id, line_item, line_item_model, line_item_kind, amount_usd, currency,
       jsonb_build_object(
           'object', 'organization.costs.result',
           'amount', jsonb_build_object('value', amount_usd::text, 'currency', currency),
           'line_item', line_item,
           'project_id', project_id)
FROM costs_daily_folded;
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


def drop_unique(table: str, name: str) -> None:
    """Drop a key made by `unique_nulls_equal`: a constraint, or PostgreSQL 14's unique index."""
    op.execute(f"ALTER TABLE {S}.{table} DROP CONSTRAINT IF EXISTS {name}")
    op.execute(f"DROP INDEX IF EXISTS {S}.{name}")


def upgrade() -> None:
    op.add_column(
        TABLE,
        sa.Column(
            "api_key_id",
            sa.Text(),
            nullable=True,
            comment="NULL: not grouped by API key (see group_by), or no key.",
        ),
        schema=S,
    )
    op.add_column(
        TABLE,
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="NULL: not grouped by user (see group_by), or no user.",
        ),
        schema=S,
    )
    op.add_column(
        TABLE,
        sa.Column(
            "api_source",
            sa.Text(),
            nullable=True,
            comment="NULL: not grouped by API source (see group_by), or none reported.",
        ),
        schema=S,
    )
    op.add_column(
        TABLE,
        sa.Column(
            "quantity",
            sa.Numeric(),
            nullable=True,
            comment="Billed quantity of the line item, in quantity_unit.",
        ),
        schema=S,
    )
    op.add_column(
        TABLE,
        sa.Column(
            "quantity_unit",
            sa.Text(),
            nullable=True,
            comment="tokens, 1000_tokens, images, gibibyte_hours, duration_seconds, ...",
        ),
        schema=S,
    )
    op.add_column(
        TABLE,
        sa.Column(
            "group_by",
            postgresql.ARRAY(sa.Text()),
            nullable=True,
            comment="The API grouping the day was fetched with; NULL: loaded before migration "
            "0006 (project_id, line_item).",
        ),
        schema=S,
    )
    drop_unique(TABLE, OLD_KEY)
    unique_nulls_equal(TABLE, NEW_KEY, NEW_COLUMNS)
    op.execute(
        f"COMMENT ON TABLE {S}.{TABLE} IS 'Billed OpenAI costs per UTC day, project, line item, "
        "API key, user and API source.'"
    )


def downgrade() -> None:
    op.execute(FOLD_FINER_ROWS)
    drop_unique(TABLE, NEW_KEY)
    unique_nulls_equal(TABLE, OLD_KEY, OLD_COLUMNS)
    for column in ("group_by", "quantity_unit", "quantity", "api_source", "user_id", "api_key_id"):
        op.drop_column(TABLE, column, schema=S)
    op.execute(
        f"COMMENT ON TABLE {S}.{TABLE} IS 'Billed OpenAI costs per UTC day, project and line item.'"
    )
