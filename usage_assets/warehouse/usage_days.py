"""Write one UTC day of an endpoint's usage atomically: delete the day, COPY its rows, record
the load and what it changed (`usage_day_revisions`). The day's month partition is created
first, if it is missing (`warehouse.partitions`).

All of it happens in one transaction, under the day's advisory lock (`warehouse.replace`), so
two runs of the same day cannot interleave. Rows are streamed into the COPY as the pages
arrive, so memory stays at about one page whatever the day's size; if anything fails (a drifted
row on the last page, a lost connection, a killed process), PostgreSQL rolls back and the
previous rows stay.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, func, null, select
from sqlalchemy.dialects.postgresql import insert

from usage_assets.admin_api.endpoints import UsageEndpoint
from usage_assets.admin_api.rows import DayRevision, DayRows, DaySummary, DayTotals, UsageRow
from usage_assets.errors import PayloadError
from usage_assets.warehouse.models import (
    DEFAULT_ORGANIZATION,
    USAGE_TABLES,
    UsageDayRevision,
    UsageLoad,
)
from usage_assets.warehouse.partitions import ensure_month_partitions, flush_table_counters
from usage_assets.warehouse.replace import (
    first_repeated_key,
    partition_transaction,
    replace_partition,
)


@dataclass(frozen=True)
class LoadInfo:
    """Where a day's rows came from, recorded beside them in `usage_loads`; `organization` is
    whose they are (every row, load and revision carries it; a day's replace is scoped to it)."""

    group_by: Sequence[str]
    simulated: bool
    source_url: str
    dagster_run_id: str | None
    organization: str = DEFAULT_ORGANIZATION


def usage_table(endpoint: UsageEndpoint) -> Table:
    return USAGE_TABLES[endpoint.name]


def replace_day(
    engine: Engine, summary: DaySummary, rows: Iterable[UsageRow], info: LoadInfo
) -> int:
    """Replace `summary.day`'s rows of `summary.endpoint` with `rows` in one transaction;
    returns the rows written.

    `rows` may be `summary`'s own lazy stream (`DaySummary.rows`), which fills it as the COPY
    consumes it, or rows already built. The same transaction records the load in `usage_loads`
    (with the totals of the rows written, counted as they pass: `DaySummary.watch`) and the
    change from the previous load in `usage_day_revisions`; `summary.revision` reports it.
    """
    endpoint, day, organization = summary.endpoint, summary.day, summary.organization
    if organization != info.organization:  # the rows carry the summary's: one of them is wrong
        raise ValueError(
            f"day {day} of organization {organization!r} written with the load info of "
            f"{info.organization!r}"
        )
    table = usage_table(endpoint)
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    in_day = (
        table.c.organization == organization,
        table.c.bucket_start >= start,
        table.c.bucket_start < start + dt.timedelta(days=1),
    )
    # The day's figures are counted as the COPY consumes the rows: the summary's own stream
    # counts into it; other rows (already built) into a summary of their own.
    stream: Iterable[UsageRow]
    if isinstance(rows, DayRows) and rows.summary is summary:
        counted, stream = summary, rows
    else:
        counted = DaySummary(day, endpoint=endpoint, organization=organization)
        stream = counted.watch(rows)
    what = f"{endpoint.name} usage day {day} ({table.fullname})"
    partition = f"{organization}/{day.isoformat()}"
    ensure_month_partitions(engine, table, day, day + dt.timedelta(days=1))
    with partition_transaction(engine, table, partition, what) as conn:
        previous = _previous_totals(conn, summary, in_day)
        duplicate = (
            f"The {endpoint.name} Usage API listed one group twice in the same bucket of {day}; "
            "refusing the day rather than guessing which to keep."
        )
        written = replace_partition(conn, table, in_day, endpoint.copy_columns, stream, duplicate)
        _refuse_duplicate_groups(
            conn, table, endpoint, organization, counted.suspect_hours, duplicate
        )
        new = DayTotals.of(endpoint, written, counted.totals)
        values: dict[str, Any] = {
            "organization": organization,
            "endpoint": endpoint.name,
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
            "totals": dict(new.totals),
            "volume": new.volume,
        }
        conn.execute(
            insert(UsageLoad)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[UsageLoad.organization, UsageLoad.endpoint, UsageLoad.usage_date],
                set_={**values, "loaded_at": func.now()},
            )
        )
        summary.revision = _record_revision(conn, summary, info, previous, new)
        flush_table_counters(conn)
    return written


def _refuse_duplicate_groups(
    conn: Connection,
    table: Table,
    endpoint: UsageEndpoint,
    organization: str,
    hours: Sequence[dt.datetime],
    message: str,
) -> None:
    """Raise PayloadError(`message` + the group) if a suspect hour holds a group twice."""
    if not hours:
        return
    key = ["bucket_start", *endpoint.dimension_names]
    repeated = first_repeated_key(
        conn, table, key, [table.c.organization == organization, table.c.bucket_start.in_(hours)]
    )
    if repeated is not None:
        names = ", ".join(key)
        values = ", ".join("NULL" if v is None else str(v) for v in repeated[:-1])
        raise PayloadError(f"{message} Key ({names})=({values}) is listed twice.")


def _previous_totals(
    conn: Connection, summary: DaySummary, in_day: tuple[ColumnElement[bool], ...]
) -> DayTotals | None:
    """The stored day's totals, read before its rows are deleted: from `usage_loads`, or, for
    a day landed before migration 0005 recorded them there, summed from its rows (once)."""
    endpoint = summary.endpoint
    load = conn.execute(
        select(UsageLoad.row_count, UsageLoad.totals).where(
            UsageLoad.organization == summary.organization,
            UsageLoad.endpoint == endpoint.name,
            UsageLoad.usage_date == summary.day,
        )
    ).one_or_none()
    if load is None:
        return None
    if load.totals is not None:
        return DayTotals.of(endpoint, load.row_count, load.totals)
    table = usage_table(endpoint)
    names = endpoint.summed_metrics
    count, *sums = conn.execute(
        select(func.count(), *(func.coalesce(func.sum(table.c[name]), 0) for name in names)).where(
            *in_day
        )
    ).one()
    return DayTotals.of(
        endpoint, int(count), {name: int(s) for name, s in zip(names, sums, strict=True)}
    )


def _token_columns(prefix: str, totals: DayTotals | None) -> dict[str, Any]:
    return {
        f"{prefix}_row_count": totals.row_count if totals else None,
        f"{prefix}_input_tokens": totals.input_tokens if totals else None,
        f"{prefix}_output_tokens": totals.output_tokens if totals else None,
        f"{prefix}_num_model_requests": totals.num_model_requests if totals else None,
        f"{prefix}_volume": totals.volume if totals else None,
        # SQL NULL, not JSON null (what None becomes in a JSONB column).
        f"{prefix}_totals": dict(totals.totals) if totals else null(),
    }


def _record_revision(
    conn: Connection,
    summary: DaySummary,
    info: LoadInfo,
    previous: DayTotals | None,
    new: DayTotals,
) -> DayRevision:
    """Append the day's next row to `usage_day_revisions`; returns what it records."""
    endpoint, day = summary.endpoint, summary.day
    revisions = UsageDayRevision
    of_day = (
        revisions.organization == summary.organization,
        revisions.endpoint == endpoint.name,
        revisions.usage_date == day,
    )
    last, first_row = conn.execute(
        select(func.max(revisions.revision), func.min(revisions.revision)).where(*of_day)
    ).one()
    number = (last or 0) + 1
    if first_row is None:
        first = previous or new
    else:
        row = conn.execute(
            select(
                func.coalesce(revisions.previous_row_count, revisions.new_row_count),
                func.coalesce(revisions.previous_totals, revisions.new_totals),
            ).where(*of_day, revisions.revision == first_row)
        ).one()
        first = DayTotals.of(endpoint, int(row[0]), _totals_of(row[1]))
    conn.execute(
        insert(UsageDayRevision).values(
            organization=summary.organization,
            endpoint=endpoint.name,
            usage_date=day,
            revision=number,
            dagster_run_id=info.dagster_run_id,
            day_closed=summary.closed,
            bucket_count=summary.bucket_count,
            **_token_columns("previous", previous),
            **_token_columns("new", new),
        )
    )
    return DayRevision(number, summary.closed, new, previous, first)


def _totals_of(value: Mapping[str, Any] | None) -> dict[str, int]:
    return {name: int(v) for name, v in (value or {}).items() if v is not None}
