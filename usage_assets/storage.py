"""Write one UTC day of usage atomically: delete the day, COPY its rows, record the load.

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
from sqlalchemy import Engine, delete, text
from sqlalchemy.dialects.postgresql import insert

from usage_assets.database import refused_values_fail_as_payload
from usage_assets.errors import PayloadError
from usage_assets.models import (
    SCHEMA,
    USAGE_COPY_COLUMNS,
    CompletionsUsageHourly,
    UsageLoad,
)
from usage_assets.normalize import DaySummary, UsageRow

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
    """
    day = summary.day
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    written = 0
    with refused_values_fail_as_payload(f"usage day {day} ({_TABLE})"), engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _day_lock_key(day)})
        # The COPY lasts as long as the day's pages take to arrive (retries and Retry-After
        # included), so a server-wide statement_timeout must not cut it short.
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        conn.execute(
            delete(CompletionsUsageHourly).where(
                CompletionsUsageHourly.bucket_start >= start,
                CompletionsUsageHourly.bucket_start < end,
            )
        )
        raw = conn.connection.driver_connection
        assert raw is not None
        try:
            with raw.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
                    written += 1
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise PayloadError(
                f"The Usage API listed one group twice in the same bucket of {day}; refusing "
                f"the day rather than guessing which to keep. {detail}"
            ) from None
        values = {
            "usage_date": day,
            "row_count": written,
            "bucket_count": summary.bucket_count,
            "group_by": list(info.group_by),
            "simulated": info.simulated,
            "source_url": info.source_url,
            "dagster_run_id": info.dagster_run_id,
        }
        upsert = insert(UsageLoad).values(**values)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[UsageLoad.usage_date],
                set_={**values, "loaded_at": text("now()")},
            )
        )
    return written
