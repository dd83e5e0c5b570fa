"""Hourly usage tables: monthly range partitions, half the bytes a row

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 19:00:00

Every `<endpoint>_usage_hourly` table is rebuilt as a table partitioned by RANGE
(bucket_start), one partition per UTC month (`<table>_2025_10`) plus a DEFAULT partition
(`<table>_default`) for rows written outside the app; the app creates each month's partition
ahead of the days it writes (`usage_assets.warehouse.partitions`). The stored rows are copied
over, so the upgrade takes about as long as reading and writing the tables once.

What a row holds changes where the bytes were:

- `result` keeps only the fields of the API's result that have no column (tomorrow's fields),
  NULL when there are none: it was 55% of a row, a copy of the columns. `openai_usage.
  api_result(row)` rebuilds the API's whole object: the object name, every dimension and metric
  from its column (NULL as JSON null), then the kept fields.
- no `id` (a surrogate key nothing referenced, that changed on every reload) and no unique
  index over the whole group (40% of the bytes): the app refuses a group listed twice in one
  hour while it writes the day. Two B-tree indexes remain, small because their keys repeat:
  (organization, bucket_start) for a day or a month, (project_id, bucket_start) for a project.

The views over these tables keep their definitions (CREATE OR REPLACE after the swap), so
their grants and comments stay; the extended statistics of migration 0003 are recreated on the
new parent. Downgrade rebuilds plain tables with `id`, the unique group and the whole result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from alembic import op
from sqlalchemy import Connection, text

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"

#: Each hourly table and the `object` of its API results (frozen at this revision).
RESULT_OBJECTS = {
    "completions_usage_hourly": "organization.usage.completions.result",
    "embeddings_usage_hourly": "organization.usage.embeddings.result",
    "moderations_usage_hourly": "organization.usage.moderations.result",
    "images_usage_hourly": "organization.usage.images.result",
    "audio_speeches_usage_hourly": "organization.usage.audio_speeches.result",
    "audio_transcriptions_usage_hourly": "organization.usage.audio_transcriptions.result",
    "vector_stores_usage_hourly": "organization.usage.vector_stores.result",
    "code_interpreter_sessions_usage_hourly": (
        "organization.usage.code_interpreter_sessions.result"
    ),
    "file_search_calls_usage_hourly": "organization.usage.file_searches.result",
    "web_search_calls_usage_hourly": "organization.usage.web_searches.result",
}
#: Columns that are not a field of the API's result.
NOT_RESULT_FIELDS = ("id", "organization", "bucket_start", "bucket_end", "result", "ingested_at")
OLD = "_before_0018"

PARTITIONED_RESULT_COMMENT = (
    "The fields of the API's result object that have no column of their own (fields added after "
    "this release); NULL when there are none. openai_usage.api_result(row) rebuilds the whole "
    "object. A NUL character (which jsonb cannot store) in such a field or key is kept as the six "
    "characters \\u0000; NaN and Infinity as the strings 'NaN', 'Infinity'."
)
WHOLE_RESULT_COMMENT = (
    "The API's whole result object, including fields added after this release. A NUL character "
    "(which jsonb cannot store) in such a field or key is kept as the six characters \\u0000; "
    "NaN and Infinity as the strings 'NaN', 'Infinity'."
)
ID_COMMENT = "Surrogate key (changes when the day is reloaded)."


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Table:
    """What the swap keeps of one hourly table, read from the catalog before it is renamed."""

    def __init__(self, conn: Connection, name: str) -> None:
        self.name = name
        self.full = f"{S}.{name}"
        rows = conn.execute(
            text(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                "pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum) "
                "FROM pg_attribute a LEFT JOIN pg_attrdef d "
                "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY a.attnum"
            ),
            {"t": self.full},
        ).all()
        self.columns = [r for r in rows if r[0] not in ("id", "result", "ingested_at")]
        self.comments = {r[0]: r[4] for r in rows if r[4] is not None}
        self.fields = [r[0] for r in rows if r[0] not in NOT_RESULT_FIELDS]
        self.checks = conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:t AS regclass) AND contype = 'c' ORDER BY conname"
            ),
            {"t": self.full},
        ).all()
        self.statistics = conn.execute(
            text(
                "SELECT stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext "
                "WHERE stxrelid = CAST(:t AS regclass) ORDER BY stxname"
            ),
            {"t": self.full},
        ).all()
        self.comment = conn.execute(
            text("SELECT obj_description(CAST(:t AS regclass), 'pg_class')"), {"t": self.full}
        ).scalar()
        self.months = (
            conn.execute(
                text(
                    f"SELECT DISTINCT date_trunc('month', bucket_start AT TIME ZONE 'UTC')::date "
                    f"FROM {self.full}"
                )
            )
            .scalars()
            .all()
        )

    def column_sql(self) -> list[str]:
        out = []
        for name, type_, not_null, default, _ in self.columns:
            out.append(
                f"{name} {type_}"
                + (f" DEFAULT {default}" if default else "")
                + (" NOT NULL" if not_null else "")
            )
        return out


def _dependent_views(conn: Connection, tables: Sequence[str]) -> list[tuple[str, str]]:
    """(name, definition) of every view reading one of `tables` directly."""
    return [
        (name, definition)
        for name, definition in conn.execute(
            text(
                "SELECT DISTINCT v.oid::regclass::text, pg_get_viewdef(v.oid) "
                "FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
                "JOIN pg_class v ON v.oid = r.ev_class "
                "WHERE d.classid = 'pg_rewrite'::regclass "
                "AND d.refclassid = 'pg_class'::regclass AND v.oid <> d.refobjid "
                "AND d.refobjid = ANY(CAST(:tables AS regclass[])) ORDER BY 1"
            ),
            {"tables": [f"{S}.{t}" for t in tables]},
        ).all()
    ]


def _month_bounds(month: dt.date) -> tuple[str, str]:
    after = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return f"{month.isoformat()} 00:00+00", f"{after.isoformat()} 00:00+00"


def _months_to_create(table: _Table) -> list[dt.date]:
    this_month = dt.datetime.now(dt.UTC).date().replace(day=1)
    next_month = (this_month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return sorted({*table.months, this_month, next_month})


def _drop_keys_and_indexes(conn: Connection, full: str) -> None:
    """Free the old table's index names for the new table (they are schema-wide)."""
    for (name,) in conn.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
            "AND contype IN ('p', 'u')"
        ),
        {"t": full},
    ).all():
        op.execute(f'ALTER TABLE {full} DROP CONSTRAINT "{name}"')
    for (index,) in conn.execute(
        text(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = CAST(:t AS regclass)"
        ),
        {"t": full},
    ).all():
        op.execute(f"DROP INDEX {index}")


def _grant(name: str) -> None:
    op.execute(
        f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.{name} TO usage_readonly;
    END IF;
END
$$
"""
    )


def _api_result_function(table: _Table) -> str:
    pairs = ", ".join(f"'{field}', r.{field}" for field in table.fields)
    return (
        f"CREATE FUNCTION {S}.api_result(r {table.full}) RETURNS jsonb LANGUAGE sql STABLE "
        f"AS $$ SELECT jsonb_build_object('object', {_quote(RESULT_OBJECTS[table.name])}, "
        f"{pairs}) || coalesce(r.result, '{{}}'::jsonb) $$"
    )


def _comment_columns(table: _Table, result_comment: str, with_id: bool) -> None:
    comments = {**table.comments, "result": result_comment}
    if with_id:
        comments["id"] = ID_COMMENT
    for column, comment in comments.items():
        if column == "id" and not with_id:
            continue
        op.execute(f"COMMENT ON COLUMN {table.full}.{column} IS {_quote(comment)}")
    if table.comment:
        op.execute(f"COMMENT ON TABLE {table.full} IS {_quote(table.comment)}")


def _swap(partitioned: bool) -> None:
    """Rebuild every hourly table, partitioned with the slim result (upgrade) or plain with `id`,
    the unique group and the whole result (downgrade), keeping the views that read them."""
    conn = op.get_bind()
    names = list(RESULT_OBJECTS)
    views = _dependent_views(conn, names)
    tables = [_Table(conn, name) for name in names]
    for table in tables:
        for stat, _ in table.statistics:
            op.execute(f'DROP STATISTICS {S}."{stat}"')
        op.execute(f"ALTER TABLE {table.full} RENAME TO {table.name}{OLD}")
        _drop_keys_and_indexes(conn, f"{table.full}{OLD}")
    for table in tables:
        old = f"{table.full}{OLD}"
        columns = table.column_sql()
        checks = [f'CONSTRAINT "{name}" {definition}' for name, definition in table.checks]
        copied = [c[0] for c in table.columns]
        if partitioned:
            body = ",\n    ".join([*columns, "result jsonb", _ingested_at(), *checks])
            op.execute(
                f"CREATE TABLE {table.full} (\n    {body}\n) PARTITION BY RANGE (bucket_start)"
            )
            op.execute(f"CREATE TABLE {table.full}_default PARTITION OF {table.full} DEFAULT")
            for month in _months_to_create(table):
                start, end = _month_bounds(month)
                op.execute(
                    f"CREATE TABLE {table.full}_{month:%Y_%m} PARTITION OF {table.full} "
                    f"FOR VALUES FROM ('{start}') TO ('{end}')"
                )
            known = "ARRAY[" + ", ".join(_quote(f) for f in ["object", *table.fields]) + "]"
            op.execute(
                f"INSERT INTO {table.full} ({', '.join(copied)}, result, ingested_at) "
                f"SELECT {', '.join(copied)}, NULLIF(result - {known}::text[], '{{}}'::jsonb), "
                f"ingested_at FROM {old}"
            )
            op.execute(
                f"CREATE INDEX ix_{table.name}_organization_bucket "
                f"ON {table.full} (organization, bucket_start)"
            )
            op.execute(
                f"CREATE INDEX ix_{table.name}_project_bucket ON {table.full} "
                "(project_id, bucket_start)"
            )
            _comment_columns(table, PARTITIONED_RESULT_COMMENT, with_id=False)
        else:
            body = ",\n    ".join(
                [
                    "id bigint GENERATED ALWAYS AS IDENTITY",
                    *columns,
                    "result jsonb NOT NULL",
                    _ingested_at(),
                    *checks,
                    f"CONSTRAINT pk_{table.name} PRIMARY KEY (id)",
                ]
            )
            op.execute(f"CREATE TABLE {table.full} (\n    {body}\n)")
            op.execute(
                f"INSERT INTO {table.full} ({', '.join(copied)}, result, ingested_at) "
                f"SELECT {', '.join(copied)}, {S}.api_result(o), ingested_at FROM {old} o"
            )
            dims = [c for c in table.fields if not _is_metric(table, c)]
            _unique_nulls_equal(table, dims)
            op.execute(
                f"CREATE INDEX ix_{table.name}_project_bucket ON {table.full} "
                "(project_id, bucket_start)"
            )
            _comment_columns(table, WHOLE_RESULT_COMMENT, with_id=True)
        for _, definition in table.statistics:
            op.execute(definition)
        _grant(table.name)
    for name, definition in views:
        op.execute(f"CREATE OR REPLACE VIEW {name} AS {definition}")
    for table in tables:
        if not partitioned:
            op.execute(f"DROP FUNCTION {S}.api_result({table.full}{OLD})")
        op.execute(f"DROP TABLE {table.full}{OLD}")
        if partitioned:
            op.execute(_api_result_function(table))
            op.execute(
                f"COMMENT ON FUNCTION {S}.api_result({table.full}) IS "
                + _quote(f"The API's whole result object of a row of {table.name}.")
            )
            op.execute(
                f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT EXECUTE ON FUNCTION {S}.api_result({table.full}) TO usage_readonly;
    END IF;
END
$$
"""
            )
        op.execute(f"ANALYZE {table.full}")


def _ingested_at() -> str:
    return "ingested_at timestamp with time zone DEFAULT now() NOT NULL"


def _is_metric(table: _Table, column: str) -> bool:
    types = {c[0]: c[1] for c in table.columns}
    return types[column] == "bigint"


def _unique_nulls_equal(table: _Table, dims: list[str]) -> None:
    """0007's unique group: NULLS NOT DISTINCT, or on PostgreSQL 14 an expression index."""
    name = f"uq_{table.name}_bucket_group"
    keys = ["organization", "bucket_start", *dims]
    if op.get_bind().dialect.server_version_info >= (15,):
        op.execute(
            f"ALTER TABLE {table.full} ADD CONSTRAINT {name} UNIQUE NULLS NOT DISTINCT "
            f"({', '.join(keys)})"
        )
        return
    nullable = {c[0]: not c[2] for c in table.columns}
    expressions = [f"coalesce({k}::text, '')" if nullable[k] else k for k in keys]
    op.execute(f"CREATE UNIQUE INDEX {name} ON {table.full} ({', '.join(expressions)})")


def upgrade() -> None:
    _swap(partitioned=True)


def downgrade() -> None:
    _swap(partitioned=False)
