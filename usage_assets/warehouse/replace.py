"""One way to replace a partition of a table: lock it, delete it, stream its new rows in.

Every writer of usage_assets (hourly usage per endpoint and day, billed costs per day, the
names tables whole) replaces what it owns in one transaction through `replace_partition`, under
one advisory-lock scheme (`lock_partition`), so two runs of the same partition queue instead of
interleaving, and a failure at any point rolls back to the previous rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg.errors
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    delete,
    func,
    insert,
    select,
    text,
)

from usage_assets.errors import PayloadError
from usage_assets.warehouse.database import refused_values_fail_as_payload


def lock_partition(conn: Connection, table: Table | str, partition: str = "") -> None:
    """Hold the transaction-scoped advisory lock of `table`'s `partition` ("" for all of it):
    the two keys are PostgreSQL's own hashes of the table's full name and of the partition.
    Every writer of the app takes its locks here, so the keys cannot collide by accident."""
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:table), hashtext(:partition))"),
        {"table": table if isinstance(table, str) else table.fullname, "partition": partition},
    )


@contextmanager
def partition_transaction(
    engine: Engine, table: Table, partition: str, what: str | None = None
) -> Iterator[Connection]:
    """A transaction holding `partition`'s lock, with no statement timeout (a COPY lasts as
    long as the pages take to arrive, retries and Retry-After included); values PostgreSQL
    refuses fail as a PayloadError naming `what` (default: the partition and table)."""
    what = what or f"{partition or 'all rows'} of {table.fullname}"
    with refused_values_fail_as_payload(what), engine.begin() as conn:
        lock_partition(conn, table, partition)
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        yield conn


def copy_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    duplicate: str,
) -> int:
    """Stream `rows` into `table` with one COPY; returns how many were written. A row that
    breaks the table's unique key fails as PayloadError(`duplicate` + PostgreSQL's detail)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    written = 0
    sql = f"COPY {table.fullname} ({', '.join(columns)}) FROM STDIN"
    try:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
    except psycopg.errors.UniqueViolation as exc:
        detail = exc.diag.message_detail or str(exc)
        raise PayloadError(f"{duplicate} {detail}") from None
    return written


def first_repeated_key(
    conn: Connection, table: Table, key: Sequence[str], where: Sequence[ColumnElement[bool]]
) -> tuple[Any, ...] | None:
    """The first value of the `key` columns that more than one row of `table` matching `where`
    holds (NULLs equal, as GROUP BY has them), with its row count last; None when every key is
    unique. For the tables whose key is checked as they are written, not by a unique index."""
    columns = [table.c[name] for name in key]
    repeated = conn.execute(
        select(*columns, func.count())
        .where(*where)
        .group_by(*columns)
        .having(func.count() > 1)
        .limit(1)
    ).first()
    return None if repeated is None else tuple(repeated)


def replace_partition(
    conn: Connection,
    table: Table,
    where: Sequence[ColumnElement[bool]],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    duplicate: str,
) -> int:
    """Delete the partition's rows (`where`) and COPY `rows` in its place, inside `conn`'s
    transaction (opened by `partition_transaction`)."""
    conn.execute(delete(table).where(*where))
    return copy_rows(conn, table, columns, rows, duplicate)


def replace_table(
    engine: Engine, model: type[Any], rows: list[dict[str, Any]], organization: str
) -> int:
    """Replace `organization`'s rows of a names table in one transaction (readers see the old
    rows until commit; the other organizations' rows are left alone)."""
    table = model.__table__
    assert isinstance(table, Table)
    what = f"the names table {table.fullname}"
    with partition_transaction(engine, table, organization, what) as conn:
        conn.execute(delete(model).where(table.c.organization == organization))
        if rows:  # one executemany, not row-by-row ORM adds
            conn.execute(insert(model), [{**row, "organization": organization} for row in rows])
    return len(rows)
