"""cost_allocation_daily: the grain checked when a day is written, not by a unique index

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 14:30:00

The allocation replaces a day by deleting its rows and inserting the new ones in one
transaction. Under the eight-column unique index every new row's uniqueness check met the
deleted row of the same grain and visited the heap for it: inserting a large organization's day
(39,000 rows) took 830 ms with the index and 260 ms without it, most of the allocation's time.
The allocation now refuses a day whose rows repeat a grain inside the same transaction (a
GROUP BY of the day's rows, 50 ms), and a plain index on (organization, usage_date) serves the
day's delete and the BI tools' date ranges as the unique index's leading columns did.
Downgrade restores the unique key (NULLs equal, as migration 0012 made it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
TABLE = "cost_allocation_daily"
GRAIN = "uq_cost_allocation_daily_grain"
GRAIN_COLUMNS = [
    "organization", "usage_date", "project_id", "line_item", "api_key_id", "user_id", "model",
    "usage_kind",
]  # fmt: skip
DAY_INDEX = "ix_cost_allocation_daily_organization_usage_date"


def upgrade() -> None:
    op.create_index(DAY_INDEX, TABLE, ["organization", "usage_date"], unique=False, schema=S)
    if op.get_bind().dialect.server_version_info >= (15,):
        op.drop_constraint(GRAIN, TABLE, schema=S, type_="unique")
    else:  # migration 0012's fallback: a unique index over coalesced columns
        op.execute(f"DROP INDEX {S}.{GRAIN}")


def downgrade() -> None:
    if op.get_bind().dialect.server_version_info >= (15,):
        op.create_unique_constraint(
            GRAIN, TABLE, GRAIN_COLUMNS, schema=S, postgresql_nulls_not_distinct=True
        )
    else:
        nullable = {
            c["name"]: c["nullable"] for c in sa.inspect(op.get_bind()).get_columns(TABLE, schema=S)
        }
        keys = ", ".join(
            f"coalesce({column}::text, '')" if nullable[column] else column
            for column in GRAIN_COLUMNS
        )
        op.execute(f"CREATE UNIQUE INDEX {GRAIN} ON {S}.{TABLE} ({keys})")
    op.drop_index(DAY_INDEX, table_name=TABLE, schema=S)
