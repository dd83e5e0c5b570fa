"""Write one UTC day of usage atomically: delete the day, COPY its rows, record the load.

All of it happens in one transaction, under a per-day advisory lock so two runs of the same day
cannot interleave; if anything fails, PostgreSQL rolls back and the previous rows stay.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, text
from sqlalchemy.dialects.postgresql import insert

from usage_assets.models import (
    SCHEMA,
    USAGE_COPY_COLUMNS,
    CompletionsUsageHourly,
    UsageLoad,
)
from usage_assets.normalize import DayRows

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


def replace_day(engine: Engine, day_rows: DayRows, info: LoadInfo) -> int:
    """Replace the day's rows in one transaction; returns the number of rows written."""
    day = day_rows.day
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _day_lock_key(day)})
        conn.execute(
            delete(CompletionsUsageHourly).where(
                CompletionsUsageHourly.bucket_start >= start,
                CompletionsUsageHourly.bucket_start < end,
            )
        )
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
            for row in day_rows.rows:
                copy.write_row(row)
        values = {
            "usage_date": day,
            "row_count": len(day_rows.rows),
            "bucket_count": day_rows.bucket_count,
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
    return len(day_rows.rows)
