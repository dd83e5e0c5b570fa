"""Fetch a range of UTC days from the Usage API and replace each day in PostgreSQL.

Pages are streamed (up to 168 hourly buckets each, the API's maximum); a day is written, in its
own transaction, as soon as its last bucket has arrived and been validated. A day the API
returns no buckets for is written as empty, so a re-run always converges on the API's answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from sqlalchemy import Engine, text

from usage_assets.admin_api import AdminAPIClient
from usage_assets.errors import AdminAPIError
from usage_assets.models import SCHEMA, CompletionsUsageHourly
from usage_assets.normalize import DayRows, split_by_day
from usage_assets.storage import LoadInfo, replace_day
from usage_assets.usage_query import BUCKET_LIMITS, CompletionsUsageQuery


def epoch_seconds(day: dt.date) -> int:
    """Unix seconds of a UTC day's midnight."""
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


def usage_query_for_days(
    first_day: dt.date, end_day: dt.date, group_by: Sequence[str]
) -> CompletionsUsageQuery:
    """Hourly buckets for [first_day, end_day), as few pages as the API allows."""
    hours = (end_day - first_day).days * 24
    return CompletionsUsageQuery(
        start_time=epoch_seconds(first_day),
        end_time=epoch_seconds(end_day),
        bucket_width="1h",
        group_by=tuple(group_by),
        limit=min(hours, BUCKET_LIMITS["1h"][1]),
    )


def fetch_days(
    client: AdminAPIClient, first_day: dt.date, end_day: dt.date, group_by: Sequence[str]
) -> Iterator[DayRows]:
    """Every day of [first_day, end_day) in order, each complete and validated."""
    query = usage_query_for_days(first_day, end_day, group_by)
    expected = first_day
    try:
        for day_rows in split_by_day(client.iter_completions_usage(query)):
            while expected < day_rows.day:
                yield DayRows(expected)
                expected += dt.timedelta(days=1)
            expected = day_rows.day + dt.timedelta(days=1)
            yield day_rows
            del day_rows  # not kept alive while the next day is fetched
    except AdminAPIError as exc:
        if exc.status == 400 and "group_by" in str(exc):
            raise AdminAPIError(
                f"{exc} The API rejected a group_by field; narrow `group_by` in the run config "
                f"(asked for {list(group_by)}).",
                status=exc.status,
                code=exc.code,
            ) from None
        raise
    while expected < end_day:
        yield DayRows(expected)
        expected += dt.timedelta(days=1)


def ingest_days(
    client: AdminAPIClient,
    engine: Engine,
    first_day: dt.date,
    end_day: dt.date,
    group_by: Sequence[str],
    info: LoadInfo,
) -> Iterator[DayRows]:
    """Fetch and write each day; yields each day (totals only, rows released) once committed."""
    for day_rows in fetch_days(client, first_day, end_day, group_by):
        replace_day(engine, day_rows, info)
        day_rows.release()
        yield day_rows
    # Fresh planner statistics for the cost SQL that usually follows in the same run (a bulk
    # load leaves them stale until autovacuum gets round to it).
    with engine.begin() as conn:
        conn.execute(text(f"ANALYZE {SCHEMA}.{CompletionsUsageHourly.__tablename__}"))
