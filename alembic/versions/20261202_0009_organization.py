"""Several organizations in one database: an organization column on every table

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:10:00

Every table of the schema but the price tables (`model_prices`, `model_aliases`,
`unit_prices`: list prices and overrides are shared) gains `organization` (text, NOT NULL,
default 'default': OPENAI_ORGANIZATION, else USAGE_ORGANIZATION_LABEL, of the code location
that wrote the row). Existing rows get the default label. It comes first in every unique key
and primary key, so each organization's days (and names) are replaced on their own.

Downgrade refuses to run while two organizations' rows exist (the narrower keys could not hold);
otherwise it drops the column and restores the keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
COMMENT = (
    "The OpenAI organization the row belongs to: OPENAI_ORGANIZATION, else "
    "USAGE_ORGANIZATION_LABEL (default 'default')."
)
USAGE_TABLES = {
    "completions": [
        "project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source",
    ],
    "embeddings": ["project_id", "user_id", "api_key_id", "model"],
    "moderations": ["project_id", "user_id", "api_key_id", "model"],
    "images": ["project_id", "user_id", "api_key_id", "model", "size", "source"],
    "audio_speeches": ["project_id", "user_id", "api_key_id", "model"],
    "audio_transcriptions": ["project_id", "user_id", "api_key_id", "model"],
    "vector_stores": ["project_id"],
    "code_interpreter_sessions": ["project_id"],
    "file_search_calls": ["project_id", "user_id", "api_key_id", "vector_store_id"],
    "web_search_calls": [
        "project_id", "user_id", "api_key_id", "model", "context_level", "api_source",
    ],
}  # fmt: skip
#: (table, unique key, its columns before this revision); `organization` goes first.
UNIQUE_KEYS: list[tuple[str, str, list[str]]] = [
    *(
        (f"{name}_usage_hourly", f"uq_{name}_usage_hourly_bucket_group", ["bucket_start", *dims])
        for name, dims in USAGE_TABLES.items()
    ),
    (
        "costs_daily",
        "uq_costs_daily_day_grouping_key",
        ["usage_date", "project_id", "line_item", "api_key_id", "user_id", "api_source"],
    ),
    (
        "project_daily_costs",
        "uq_project_daily_costs_grain",
        ["usage_date", "project_id", "model", "batch", "service_tier"],
    ),
    (
        "project_daily_cost_summary",
        "uq_project_daily_cost_summary_day_project",
        ["usage_date", "project_id"],
    ),
    (
        "usage_daily_costs",
        "uq_usage_daily_costs_grain",
        ["usage_date", "project_id", "usage_kind", "model", "detail"],
    ),
]
#: (table, primary key columns before this revision).
PRIMARY_KEYS: list[tuple[str, list[str]]] = [
    ("usage_loads", ["endpoint", "usage_date"]),
    ("usage_day_revisions", ["endpoint", "usage_date", "revision"]),
    ("projects", ["id"]),
    ("users", ["id"]),
    ("api_keys", ["id"]),
]
TABLES = [table for table, _, _ in UNIQUE_KEYS] + [table for table, _ in PRIMARY_KEYS]


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


def drop_unique(table: str, name: str) -> None:
    """Drop a key made by `unique_nulls_equal`: a constraint, or PostgreSQL 14's unique index."""
    op.execute(f"ALTER TABLE {S}.{table} DROP CONSTRAINT IF EXISTS {name}")
    op.execute(f"DROP INDEX IF EXISTS {S}.{name}")


def set_primary_key(table: str, columns: list[str]) -> None:
    op.drop_constraint(f"pk_{table}", table, schema=S, type_="primary")
    op.create_primary_key(f"pk_{table}", table, columns, schema=S)


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column(
                "organization",
                sa.Text(),
                server_default="default",
                nullable=False,
                comment=COMMENT,
            ),
            schema=S,
        )
    for table, name, columns in UNIQUE_KEYS:
        drop_unique(table, name)
        unique_nulls_equal(table, name, ["organization", *columns])
    for table, columns in PRIMARY_KEYS:
        set_primary_key(table, ["organization", *columns])


def downgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        labels = bind.execute(
            sa.text(f"SELECT DISTINCT organization FROM {S}.{table} LIMIT 2")
        ).scalars()
        if len(list(labels)) > 1:
            raise RuntimeError(
                f"{S}.{table} holds rows of several organizations; delete all but one "
                "organization's rows before downgrading below revision 0009"
            )
    for table, columns in PRIMARY_KEYS:
        set_primary_key(table, columns)
    for table, name, columns in UNIQUE_KEYS:
        drop_unique(table, name)
        unique_nulls_equal(table, name, columns)
    for table in TABLES:
        op.drop_column(table, "organization", schema=S)
