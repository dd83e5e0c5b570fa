"""How the assets run: backfills in ranges, step retries for transient trouble only, freshness."""

import datetime as dt
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import dagster as dg
from sqlalchemy import FromClause

from usage_assets import settings
from usage_assets.errors import (
    AdminAPIError,
    ConfigurationError,
    DatabaseUnavailableError,
    PayloadError,
    QueryValidationError,
    SchemaNotReadyError,
)
from usage_assets.warehouse.models import SCHEMA, Base
from usage_assets.warehouse.table_schema import column_schema

#: Days per backfill run: a year is 12 runs, each fetching 168 hourly buckets per request.
MAX_DAYS_PER_RUN = 31

RANGE_BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DAYS_PER_RUN)


def asset(**options: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`dg.asset`, minus the warning that `backfill_policy` is beta in Dagster 1.13: range
    backfills are the point here, and a warning on every code location load helps nobody."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
        decorator = dg.asset(**options)

    def apply(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*backfill_policy.*", category=dg.BetaWarning
            )
            return cast(dg.AssetsDefinition, decorator(fn))

    return apply


#: Seconds before the first step re-run; each further one waits twice as long (±50%).
STEP_RETRY_DELAY_SECONDS = 60.0


def step_retry(context: dg.AssetExecutionContext, error: Exception) -> dg.RetryRequested:
    """A second line of defence behind the client's own retries (an outage of several
    minutes): re-run the step up to USAGE_STEP_RETRIES times, read when the step runs (not when
    the code location was imported), after 60 s, then 120 s, ... with ±50% jitter."""
    delay = STEP_RETRY_DELAY_SECONDS * 2**context.retry_number * random.uniform(0.5, 1.5)
    context.log.warning(f"{type(error).__name__}: {error}; the step will be re-run")
    return dg.RetryRequested(max_retries=settings.step_retries(), seconds_to_wait=delay)


#: Daily assets should have materialized some partition within a day and a bit.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=30), warn_window=dt.timedelta(hours=27)
)
#: Names change rarely; a week-old copy is still useful.
NAMES_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(days=8), warn_window=dt.timedelta(days=2)
)

PERMANENT_ERRORS = (
    ConfigurationError,
    QueryValidationError,
    PayloadError,
    SchemaNotReadyError,
    DatabaseUnavailableError,
)


@contextmanager
def permanent_errors_fail_fast(context: dg.AssetExecutionContext | None = None) -> Iterator[None]:
    """Turn errors that a retry cannot fix into a Failure that is never retried.

    Bad configuration, a drifting payload and 4xx answers (other than 429) fail at once with
    their message. Anything else (transient trouble the client gave up on, a lost database
    connection) is re-raised, or, given the step's `context` (the assets that call the Admin
    API), turned into a step re-run (`step_retry`).
    """
    try:
        yield
    except PERMANENT_ERRORS as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
    except (dg.Failure, dg.RetryRequested):
        raise
    except AdminAPIError as exc:
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
            raise dg.Failure(
                description=f"{type(exc).__name__}: {exc}", allow_retries=False
            ) from exc
        if context is None:
            raise
        raise step_retry(context, exc) from exc
    except Exception as exc:
        if context is None:
            raise
        raise step_retry(context, exc) from exc


def window_days(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """[first, end) UTC days of the run: one partition, or a backfill range."""
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def report_days(
    context: dg.AssetExecutionContext,
    days: Sequence[tuple[dt.date, Mapping[str, Any]]],
    check_results: Sequence[dg.AssetCheckResult] = (),
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """The step's result for a run's days: one materialization per partition of the run, each
    carrying its own day's figures (partition-scoped metadata), so a 31-day backfill run reads
    in the UI like 31 daily runs, with one event per day."""
    for day, metadata in days:
        context.add_asset_metadata(metadata, partition_key=day.isoformat())
    return dg.MaterializeResult(check_results=list(check_results))


#: Every asset that calls the Admin API shares this pool (deploy/dagster.yaml sets its limit).
ADMIN_API_POOL = "openai_admin_api"
OWNER = "team:finops"


def admin_api_asset(
    table: type[Base] | FromClause, endpoint: str, **options: Any
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for an asset that copies an Admin API endpoint into a table of ours."""
    table = table if isinstance(table, FromClause) else table.__table__
    assert isinstance(table, FromClause)
    return asset(
        group_name="openai_usage",
        kinds={"openai", "postgres"},
        owners=[OWNER],
        pool=ADMIN_API_POOL,
        metadata={
            "dagster/table_name": f"{SCHEMA}.{table.name}",  # type: ignore[attr-defined]
            "dagster/column_schema": column_schema(table),
            "endpoint": endpoint,
        },
        **options,
    )
