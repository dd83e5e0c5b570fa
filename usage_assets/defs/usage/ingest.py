"""Fetch a range of UTC days from the Usage API and replace each day in PostgreSQL.

Pages are streamed (up to 168 hourly buckets each, the API's maximum) straight into each day's
COPY, inside that day's own transaction, which commits once the day's last bucket has arrived:
memory stays at about one page, whatever the size of the day or the range.

Complete days only: the Usage API returns one bucket per period of the window, empty ones
included, so a closed day must come with exactly its 24 hourly buckets, and today (still open)
with its hours from 00:00 on, contiguous, up to the current hour at most. A short answer (no
buckets, missing hours, a gap) never replaces a stored day: the check runs when the day's
buckets are exhausted, inside its transaction, which rolls back. The day is then asked for
again (from that day on; the days before it stay committed), up to `REASKS` times, before the
run fails with the day and its missing hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine

from usage_assets.admin_api.endpoints import BUCKET_LIMITS, COMPLETIONS, UsageEndpoint
from usage_assets.admin_api.rows import DaySummary, split_by_day
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.admin_api.usage import UsageQuery, iter_usage_buckets
from usage_assets.errors import AdminAPIError, IncompleteDayError
from usage_assets.warehouse.partitions import refresh_statistics
from usage_assets.warehouse.usage_days import LoadInfo, replace_day, usage_table


def epoch_seconds(day: dt.date) -> int:
    """Unix seconds of a UTC day's midnight."""
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


def usage_query_for_days(
    first_day: dt.date,
    end_day: dt.date,
    group_by: Sequence[str],
    endpoint: UsageEndpoint = COMPLETIONS,
) -> UsageQuery:
    """Hourly buckets of `endpoint` for [first_day, end_day), as few pages as the API allows."""
    hours = (end_day - first_day).days * 24
    return UsageQuery(
        start_time=epoch_seconds(first_day),
        end_time=epoch_seconds(end_day),
        bucket_width="1h",
        group_by=tuple(group_by),
        limit=min(hours, BUCKET_LIMITS["1h"][1]),
        endpoint=endpoint,
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


#: Extra requests for a day that came back incomplete (a transient glitch) before giving up.
REASKS = 2


def hours_begun(day: dt.date, now: dt.datetime) -> int:
    """How many hours of the UTC `day` have begun at `now`: 24 once the day has ended."""
    elapsed = (now - dt.datetime.combine(day, dt.time(), dt.UTC)).total_seconds()
    return max(0, min(24, int(elapsed // 3600) + 1))


def ingest_days(
    client: AdminAPIClient,
    engine: Engine,
    first_day: dt.date,
    end_day: dt.date,
    group_by: Sequence[str],
    info: LoadInfo,
    *,
    now: dt.datetime | None = None,
    endpoint: UsageEndpoint = COMPLETIONS,
) -> Iterator[DaySummary]:
    """Fetch and write every day of [first_day, end_day) of `endpoint` in order; yields each
    day's summary once its transaction has committed. `now` (default: the clock) decides which
    days are closed and how many hours of today have begun."""
    now = now or dt.datetime.now(dt.UTC)
    day, failed_day, failures = first_day, None, 0
    with _explain_group_by_rejection(group_by):
        while day < end_day:
            try:
                days = _ingest_from(client, engine, endpoint, day, end_day, group_by, info, now)
                for summary in days:
                    day = summary.day + dt.timedelta(days=1)
                    yield summary
            except IncompleteDayError as exc:
                failures = failures + 1 if exc.day == failed_day else 1
                failed_day = day = exc.day
                if failures > REASKS:
                    raise
                client.log.warning(
                    f"{exc}; the stored day is kept. Asking again from {day} "
                    f"(attempt {failures + 1} of {REASKS + 1})."
                )
    refresh_statistics(engine, usage_table(endpoint), first_day, end_day)


def _ingest_from(
    client: AdminAPIClient,
    engine: Engine,
    endpoint: UsageEndpoint,
    first_day: dt.date,
    end_day: dt.date,
    group_by: Sequence[str],
    info: LoadInfo,
    now: dt.datetime,
) -> Iterator[DaySummary]:
    """One query for [first_day, end_day); raises IncompleteDayError at the first short day."""
    query = usage_query_for_days(first_day, end_day, group_by, endpoint)
    expected = first_day
    buckets = iter_usage_buckets(client, query)
    for summary, rows in split_by_day(buckets, endpoint, info.organization):
        yield from _days_without_buckets(engine, endpoint, expected, summary.day, info, now)
        summary.hours_begun = hours_begun(summary.day, now)
        replace_day(engine, summary, rows.then_check_complete(), info)
        expected = summary.day + dt.timedelta(days=1)
        yield summary
    yield from _days_without_buckets(engine, endpoint, expected, end_day, info, now)


def _days_without_buckets(
    engine: Engine,
    endpoint: UsageEndpoint,
    first: dt.date,
    end: dt.date,
    info: LoadInfo,
    now: dt.datetime,
) -> Iterator[DaySummary]:
    """Days of [first, end) the API returned no bucket for: refused when closed (their stored
    rows stay); today (or a later day) with no hour reported yet is written as empty."""
    day = first
    while day < end:
        summary = DaySummary(
            day,
            hours_begun=hours_begun(day, now),
            endpoint=endpoint,
            organization=info.organization,
        )
        replace_day(engine, summary, summary.rows(()).then_check_complete(), info)
        yield summary
        day += dt.timedelta(days=1)
