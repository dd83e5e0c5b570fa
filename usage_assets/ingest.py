"""Fetch a range of UTC days from the Usage API and replace each day in PostgreSQL.

Pages are streamed (up to 168 hourly buckets each, the API's maximum) straight into each day's
COPY, inside that day's own transaction, which commits once the day's last bucket has arrived:
memory stays at about one page, whatever the size of the day or the range. A day the API
returns no buckets for is written as empty, so a re-run always converges on the API's answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, text

from usage_assets.admin_api import AdminAPIClient
from usage_assets.errors import AdminAPIError
from usage_assets.models import SCHEMA, CompletionsUsageHourly
from usage_assets.normalize import DaySummary, split_by_day
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


@contextmanager
def _explain_group_by_rejection(group_by: Sequence[str]) -> Iterator[None]:
    try:
        yield
    except AdminAPIError as exc:
        if exc.status == 400 and "group_by" in str(exc):
            raise AdminAPIError(
                f"{exc} The API rejected a group_by field; narrow `group_by` in the run config "
                f"(asked for {list(group_by)}).",
                status=exc.status,
                code=exc.code,
            ) from None
        raise


def ingest_days(
    client: AdminAPIClient,
    engine: Engine,
    first_day: dt.date,
    end_day: dt.date,
    group_by: Sequence[str],
    info: LoadInfo,
) -> Iterator[DaySummary]:
    """Fetch and write every day of [first_day, end_day) in order; yields each day's summary
    once its transaction has committed."""
    query = usage_query_for_days(first_day, end_day, group_by)
    expected = first_day
    with _explain_group_by_rejection(group_by):
        for summary, rows in split_by_day(client.iter_usage_buckets(query)):
            yield from _write_empty_days(engine, expected, summary.day, info)
            replace_day(engine, summary, rows, info)
            expected = summary.day + dt.timedelta(days=1)
            yield summary
    yield from _write_empty_days(engine, expected, end_day, info)
    # After a bulk load, as PostgreSQL's docs advise: VACUUM sets the new rows' hint bits and
    # visibility once, here, instead of the cost SQL that follows in the same run dirtying (and
    # writing back) every page it first reads; ANALYZE refreshes the planner's statistics. Only
    # pages changed since the last vacuum are visited; SKIP_LOCKED leaves it to a running
    # autovacuum.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(
            text(f"VACUUM (ANALYZE, SKIP_LOCKED) {SCHEMA}.{CompletionsUsageHourly.__tablename__}")
        )


def _write_empty_days(
    engine: Engine, first: dt.date, end: dt.date, info: LoadInfo
) -> Iterator[DaySummary]:
    """Days of [first, end) the API has no buckets for are written as empty, so a re-run
    converges on them."""
    day = first
    while day < end:
        summary = DaySummary(day)
        replace_day(engine, summary, (), info)
        yield summary
        day += dt.timedelta(days=1)
