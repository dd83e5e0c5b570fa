"""Write one UTC day of usage atomically: delete the day, COPY its rows, record the load and
what it changed (`usage_day_revisions`).

All of it happens in one transaction, under a per-day advisory lock so two runs of the same day
cannot interleave. Rows are streamed into the COPY as the pages arrive, so memory stays at about
one page whatever the day's size; if anything fails (a drifted row on the last page, a lost
connection, a killed process), PostgreSQL rolls back and the previous rows stay.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg.errors
from sqlalchemy import ColumnElement, Connection, Engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from usage_assets.database import refused_values_fail_as_payload
from usage_assets.errors import PayloadError
from usage_assets.models import (
    SCHEMA,
    USAGE_COPY_COLUMNS,
    CompletionsUsageHourly,
    UsageDayRevision,
    UsageLoad,
)
from usage_assets.normalize import DayRevision, DaySummary, DayTotals, UsageRow

_TABLE = f"{SCHEMA}.{CompletionsUsageHourly.__tablename__}"
_COPY_SQL = f"COPY {_TABLE} ({', '.join(USAGE_COPY_COLUMNS)}) FROM STDIN"


@dataclass(frozen=True)
class LoadInfo:
    """Where a day's rows came from, recorded beside them in `usage_loads`."""

    group_by: Sequence[str]
    simulated: bool
    source_url: str
    dagster_run_id: str | None


def _day_lock_key(day: dt.date) -> int:
    return zlib.crc32(f"{_TABLE}:{day.isoformat()}".encode())


def replace_day(
    engine: Engine, summary: DaySummary, rows: Iterable[UsageRow], info: LoadInfo
) -> int:
    """Replace `summary.day`'s rows with `rows` in one transaction; returns the rows written.

    `rows` may be a lazy stream that fills `summary` as it is consumed (`DaySummary.rows`).
    The same transaction records the load in `usage_loads` (with the day's totals) and the
    change from the previous load in `usage_day_revisions`; `summary.revision` reports it.
    """
    day = summary.day
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    in_day = (
        CompletionsUsageHourly.bucket_start >= start,
        CompletionsUsageHourly.bucket_start < end,
    )
    written = input_tokens = output_tokens = requests = 0
    with refused_values_fail_as_payload(f"usage day {day} ({_TABLE})"), engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _day_lock_key(day)})
        # The COPY lasts as long as the day's pages take to arrive (retries and Retry-After
        # included), so a server-wide statement_timeout must not cut it short.
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        previous = _previous_totals(conn, day, in_day)
        conn.execute(delete(CompletionsUsageHourly).where(*in_day))
        raw = conn.connection.driver_connection
        assert raw is not None
        try:
            with raw.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
                    written += 1
                    input_tokens += row[_INPUT_AT]
                    output_tokens += row[_INPUT_AT + 1]
                    requests += row[_INPUT_AT + 2]
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise PayloadError(
                f"The Usage API listed one group twice in the same bucket of {day}; refusing "
                f"the day rather than guessing which to keep. {detail}"
            ) from None
        new = DayTotals(written, input_tokens, output_tokens, requests)
        values = {
            "endpoint": "completions",
            "usage_date": day,
            "row_count": written,
            "bucket_count": summary.bucket_count,
            "group_by": list(info.group_by),
            "simulated": info.simulated,
            "source_url": info.source_url,
            "dagster_run_id": info.dagster_run_id,
            "input_tokens": new.input_tokens,
            "output_tokens": new.output_tokens,
            "num_model_requests": new.num_model_requests,
        }
        upsert = insert(UsageLoad).values(**values)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[UsageLoad.endpoint, UsageLoad.usage_date],
                set_={**values, "loaded_at": text("now()")},
            )
        )
        summary.revision = _record_revision(conn, summary, info, previous, new)
    return written


#: Where input_tokens, output_tokens and num_model_requests sit in a COPY row.
_INPUT_AT = USAGE_COPY_COLUMNS.index("input_tokens")
assert USAGE_COPY_COLUMNS[_INPUT_AT : _INPUT_AT + 3] == (
    "input_tokens",
    "output_tokens",
    "num_model_requests",
)


def _previous_totals(
    conn: Connection, day: dt.date, in_day: tuple[ColumnElement[bool], ...]
) -> DayTotals | None:
    """The stored day's totals, read before its rows are deleted: from `usage_loads`, or, for
    a day landed before migration 0005 recorded them there, summed from its rows (once)."""
    load = conn.execute(
        select(
            UsageLoad.row_count,
            UsageLoad.input_tokens,
            UsageLoad.output_tokens,
            UsageLoad.num_model_requests,
        ).where(UsageLoad.usage_date == day)
    ).one_or_none()
    if load is None:
        return None
    if load.input_tokens is not None and load.output_tokens is not None:
        return DayTotals(
            load.row_count, load.input_tokens, load.output_tokens, load.num_model_requests or 0
        )
    table = CompletionsUsageHourly
    count, inp, out, req = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(table.input_tokens), 0),
            func.coalesce(func.sum(table.output_tokens), 0),
            func.coalesce(func.sum(table.num_model_requests), 0),
        ).where(*in_day)
    ).one()
    return DayTotals(int(count), int(inp), int(out), int(req))


def _record_revision(
    conn: Connection,
    summary: DaySummary,
    info: LoadInfo,
    previous: DayTotals | None,
    new: DayTotals,
) -> DayRevision:
    """Append the day's next row to `usage_day_revisions`; returns what it records."""
    day = summary.day
    revisions = UsageDayRevision
    last, first_row = conn.execute(
        select(func.max(revisions.revision), func.min(revisions.revision)).where(
            revisions.usage_date == day
        )
    ).one()
    number = (last or 0) + 1
    if first_row is None:
        first = previous or new
    else:
        row = conn.execute(
            select(
                func.coalesce(revisions.previous_row_count, revisions.new_row_count),
                func.coalesce(revisions.previous_input_tokens, revisions.new_input_tokens),
                func.coalesce(revisions.previous_output_tokens, revisions.new_output_tokens),
                func.coalesce(
                    revisions.previous_num_model_requests, revisions.new_num_model_requests
                ),
            ).where(revisions.usage_date == day, revisions.revision == first_row)
        ).one()
        first = DayTotals(*(int(value) for value in row))
    conn.execute(
        insert(UsageDayRevision).values(
            usage_date=day,
            revision=number,
            dagster_run_id=info.dagster_run_id,
            day_closed=summary.closed,
            bucket_count=summary.bucket_count,
            previous_row_count=previous.row_count if previous else None,
            previous_input_tokens=previous.input_tokens if previous else None,
            previous_output_tokens=previous.output_tokens if previous else None,
            previous_num_model_requests=previous.num_model_requests if previous else None,
            new_row_count=new.row_count,
            new_input_tokens=new.input_tokens,
            new_output_tokens=new.output_tokens,
            new_num_model_requests=new.num_model_requests,
        )
    )
    return DayRevision(number, summary.closed, new, previous, first)
