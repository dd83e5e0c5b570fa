"""Monthly range partitions of the hourly usage tables, created ahead of the days written.

Every `<endpoint>_usage_hourly` table is partitioned by `bucket_start`, one partition per UTC
month (`completions_usage_hourly_2025_10`), plus a DEFAULT partition that stays empty in normal
use and only catches rows written outside the app (a psql INSERT, a test). A day's replace and a
month's query then touch one partition, and an old month can be detached (README "Archiving old
months") without rewriting anything.

`ensure_month_partitions` runs before a day's transaction, so the partition exists before the
first row arrives: it creates each missing month of the days written and the month after the
last of them (so tomorrow's first run of a new month finds its partition waiting). A new
partition is created as a plain table and then attached (SHARE UPDATE EXCLUSIVE on the parent:
readers and the writers of other days go on); rows of that month found in the DEFAULT partition
are moved into it first, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, Table, bindparam, text

from usage_assets.warehouse.replace import lock_partition

#: The advisory-lock partition key of a table's partition creation (see `lock_partition`).
CREATING = "month partitions"


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def months_of(first_day: dt.date, end_day: dt.date) -> Iterator[dt.date]:
    """The first day of each month that holds a day of [first_day, end_day), then one more:
    the month ahead."""
    month = month_start(first_day)
    last = month_start(max(first_day, end_day - dt.timedelta(days=1)))
    while month <= next_month(last):
        yield month
        month = next_month(month)


def partition_name(table: str, month: dt.date) -> str:
    """`completions_usage_hourly_2025_10`: the partition of `table` holding that UTC month."""
    return f"{table}_{month:%Y_%m}"


def default_partition_name(table: str) -> str:
    return f"{table}_default"


_PARTITION_NAME = re.compile(r"_usage_hourly_(default|\d{4}_\d{2})$")


def is_partition_name(name: str) -> bool:
    """Whether a table name is one of the partitions this module makes."""
    return _PARTITION_NAME.search(name) is not None


def _existing(conn: Connection, table: Table) -> set[str]:
    return set(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:parent AS regclass)"
            ),
            {"parent": table.fullname},
        ).scalars()
    )


def _create_month(conn: Connection, table: Table, month: dt.date) -> None:
    name = table.name
    partition = _listed(table, [partition_name(name, month)])
    start = dt.datetime.combine(month, dt.time(), dt.UTC)
    end = dt.datetime.combine(next_month(month), dt.time(), dt.UTC)
    bounds = {"start": start, "end": end}
    conn.execute(
        text(f"CREATE TABLE {partition} (LIKE {table.fullname} INCLUDING DEFAULTS INCLUDING "
             "CONSTRAINTS INCLUDING COMMENTS)")
    )  # fmt: skip
    # The parent's per-column statistics targets (migration 0020: none for the metrics); a
    # partition made with LIKE would sample every column.
    targets = conn.execute(
        text(
            "SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = "
            "CAST(:parent AS regclass) AND attnum > 0 AND NOT attisdropped AND attstattarget >= 0"
        ),
        {"parent": table.fullname},
    ).all()
    if targets:
        alter = ", ".join(f'ALTER COLUMN "{column}" SET STATISTICS {n}' for column, n in targets)
        conn.execute(text(f"ALTER TABLE {partition} {alter}"))
    default = _listed(table, [default_partition_name(name)])
    if default_partition_name(name) in _existing(conn, table):
        conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {default} WHERE bucket_start >= :start "
                f"AND bucket_start < :end RETURNING *) INSERT INTO {partition} SELECT * FROM moved"
            ),
            bounds,
        )
    literal = {k: v.isoformat() for k, v in bounds.items()}  # DDL takes no bind parameters
    conn.execute(
        text(
            f"ALTER TABLE {table.fullname} ATTACH PARTITION {partition} "
            f"FOR VALUES FROM ('{literal['start']}') TO ('{literal['end']}')"
        )
    )


def ensure_month_partitions(
    engine: Engine, table: Table, first_day: dt.date, end_day: dt.date
) -> list[str]:
    """Create the missing month partitions of [first_day, end_day) and the month after it, in
    one short transaction of their own; returns the partitions created (usually none)."""
    wanted = {partition_name(table.name, m): m for m in months_of(first_day, end_day)}
    with engine.connect() as conn:
        missing = sorted(set(wanted) - _existing(conn, table))
    if not missing:
        return []
    created = []
    with engine.begin() as conn:
        lock_partition(conn, table, CREATING)
        for name in sorted(set(wanted) - _existing(conn, table)):  # again, under the lock
            _create_month(conn, table, wanted[name])
            created.append(name)
    return created


#: autovacuum's defaults (autovacuum_analyze_threshold, autovacuum_analyze_scale_factor): a
#: partition's statistics are sampled again once this many of its rows changed since.
ANALYZE_THRESHOLD = 50
ANALYZE_SCALE_FACTOR = 0.1

#: Each partition written: whether its statistics are stale (autovacuum's rule) and whether it
#: holds dead rows (a day replaced: the rows it had before).
_WRITTEN_PARTITIONS = """
SELECT s.relname,
       coalesce(s.last_analyze, s.last_autoanalyze) IS NULL
           OR s.n_mod_since_analyze > :threshold + :scale * greatest(c.reltuples, 0) AS stale,
       s.n_dead_tup > 0 AS replaced
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = :schema AND s.relname IN :names
ORDER BY s.relname
"""


def refresh_statistics(
    engine: Engine, table: Table, first_day: dt.date, end_day: dt.date
) -> list[str]:
    """After a bulk load, as PostgreSQL's docs advise: VACUUM the partitions written, so the
    cost SQL that follows does not set every new row's hint bits (and write the pages back) on
    its first read; a pass over the new pages. Not a partition holding dead rows (a day
    replaced): they need a pass over every index of the month (0.6 s of a completions month's
    replace, growing with the month), which autovacuum makes in the background once they are
    worth it. Statistics are sampled again by autovacuum's rule, applied at once rather than a
    minute later: a partition never analyzed, or one where more than 10% of its rows changed
    since (`flush_table_counters` makes a load's changes count at once). A day replaced in a
    month of 30 keeps its statistics (sampling 30,000 rows again was 70% of the replace's extra
    time); the first days of a month are analyzed. The parent is analyzed alone whenever one
    of its partitions is (autovacuum never analyzes a partitioned table, and queries over
    several months plan with its statistics). SKIP_LOCKED leaves a partition to a running
    autovacuum. Before PostgreSQL 17 (no ANALYZE ONLY) the parent's ANALYZE also samples every
    partition again. Returns the partitions analyzed."""
    names = [partition_name(table.name, m) for m in months_of(first_day, end_day) if m < end_day]
    if not names:
        return []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        written = conn.execute(
            text(_WRITTEN_PARTITIONS).bindparams(bindparam("names", expanding=True)),
            {"schema": table.schema, "names": names,
             "threshold": ANALYZE_THRESHOLD, "scale": ANALYZE_SCALE_FACTOR},
        ).all()  # fmt: skip
        stale = [name for name, is_stale, _ in written if is_stale]
        for statement, these in (
            ("VACUUM (SKIP_LOCKED)", [n for n, st, rep in written if not st and not rep]),
            ("VACUUM (ANALYZE, SKIP_LOCKED)", [n for n, st, rep in written if st and not rep]),
            ("ANALYZE (SKIP_LOCKED)", [n for n, st, rep in written if st and rep]),
        ):
            if these:
                conn.execute(text(f"{statement} {_listed(table, these)}"))
        if stale:
            only = "ONLY " if (conn.dialect.server_version_info or (0,)) >= (17,) else ""
            conn.execute(text(f"ANALYZE (SKIP_LOCKED) {only}{table.fullname}"))
    return stale


def _listed(table: Table, names: list[str]) -> str:
    """`names` (partitions of `table`) as quoted, schema-qualified SQL, comma-separated."""
    return ", ".join(f'"{table.schema}"."{name}"' for name in names)


def flush_table_counters(conn: Connection) -> None:
    """Make the server count this transaction's inserts and deletes as soon as it ends (a
    backend otherwise reports them up to ten seconds later), so `refresh_statistics` right
    after the load sees them. PostgreSQL 15+; before, its statistics collector lags by half a
    second and a load may count for the next refresh instead."""
    if (conn.dialect.server_version_info or (0,)) >= (15,):
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
