"""Automation: the daily run (the day that just closed plus a trailing window, because the Usage
API keeps filling in recent hours after the fact), the names' daily refresh, and the hourly
`yesterday_landed` checks with their sensor."""

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg

from usage_assets import settings
from usage_assets.defs.attribution.assets import GROUP as COST_GROUP
from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.chargeback.allocation import GROUP as CHARGEBACK_GROUP
from usage_assets.defs.chargeback.allocation import cost_allocation_daily
from usage_assets.defs.names.assets import openai_api_keys, openai_projects, openai_users
from usage_assets.defs.usage.assets import USAGE_ASSETS

#: The daily schedule's name: its runs (tag `dagster/schedule_name`) are what lands yesterday.
DAILY_SCHEDULE_NAME = "usage_daily_schedule"


usage_daily_job = dg.define_asset_job(
    "usage_daily_job",
    selection=[
        *USAGE_ASSETS,
        project_daily_costs,
        usage_daily_costs,
        project_daily_cost_summary,
        costs_daily,
        cost_allocation_daily,
    ],
    description="Usage of every endpoint, estimated costs, billed costs and their allocation "
    "for a range of UTC days.",
)

#: Evaluates the cost and chargeback assets' automation conditions (they follow their upstream
#: partitions); running by default so nobody has to click.
follow_usage_sensor = dg.AutomationConditionSensorDefinition(
    "cost_attribution_follows_usage",
    target=dg.AssetSelection.groups(COST_GROUP, CHARGEBACK_GROUP)
    | dg.AssetSelection.assets(openai_projects, openai_users, openai_api_keys),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Recomputes cost and chargeback partitions after their upstream partitions "
    "change, and loads the names on a new instance.",
)

names_daily_job = dg.define_asset_job(
    "names_daily_job",
    selection=[openai_projects, openai_users, openai_api_keys],
    description="Project, user and API key names.",
)


def days_to_refresh(tick: dt.datetime, lookback_days: int) -> tuple[dt.date, dt.date]:
    """(first, last) UTC day a tick refreshes: the day that closed before `tick`, and the
    `lookback_days` before it, never before the first partition."""
    closed = tick.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    first = max(closed - dt.timedelta(days=lookback_days), settings.start_date())
    return first, closed


def build_schedules(cron: str, running: bool) -> list[dg.ScheduleDefinition]:
    """The daily schedules at `cron` (USAGE_SCHEDULE_CRON), running or stopped by default
    (USAGE_SCHEDULE_DEFAULT_STATUS): made when the code location loads, from its settings."""
    status = dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED

    @dg.schedule(
        name=DAILY_SCHEDULE_NAME,
        job=usage_daily_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=status,
        description=(
            "Every day (USAGE_SCHEDULE_CRON, default 02:00 UTC): the day that just closed and "
            "the USAGE_LOOKBACK_DAYS (default 3) before it, in one run."
        ),
    )
    def usage_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        first, last = days_to_refresh(context.scheduled_execution_time, settings.lookback_days())
        return dg.RunRequest(
            run_key=f"usage-{last.isoformat()}",
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
        )

    names_daily_schedule = dg.ScheduleDefinition(
        name="names_daily_job_schedule",
        job=names_daily_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=status,
        description="Refreshes project, user and API key names with the daily run.",
    )
    return [usage_daily_schedule, names_daily_schedule]


#: The schedules with the default settings, for tests and tools that evaluate a tick; the code
#: location builds its own from its settings (`build_schedules`).
usage_daily_schedule, names_daily_schedule = build_schedules(
    settings.DEFAULT_SCHEDULE_CRON, running=True
)

JOBS = [usage_daily_job, names_daily_job]


# --------------------------------------------------------------------------- freshness


@dataclass(frozen=True)
class Watch:
    """What this Dagster instance has seen: when it was first used (its oldest run) and whether
    the daily schedule has started a run since yesterday closed."""

    first_run_at: dt.datetime | None
    daily_run_since_close: bool

    @classmethod
    def of(cls, instance: dg.DagsterInstance, closed_at: dt.datetime) -> "Watch":
        oldest = instance.get_run_records(limit=1, ascending=True)
        daily = instance.get_run_records(
            filters=dg.RunsFilter(
                tags={"dagster/schedule_name": DAILY_SCHEDULE_NAME}, created_after=closed_at
            ),
            limit=1,
        )
        return cls(
            first_run_at=oldest[0].create_timestamp.astimezone(dt.UTC) if oldest else None,
            daily_run_since_close=bool(daily),
        )


def yesterday_status(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    now: dt.datetime,
    deadline_hour: int,
    watch: Watch | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Has yesterday's partition of `asset_key` landed, or is it not due yet?

    Dagster's FreshnessPolicy looks at the latest materialization of any partition, so a
    backfill of old days would hide a missing yesterday; this looks at yesterday itself. It is
    due after the deadline, unless nothing could have landed it yet: an instance first used
    after yesterday closed (a fresh install) whose daily schedule has not run since.
    """
    now = now.astimezone(dt.UTC)
    yesterday = now.date() - dt.timedelta(days=1)
    closed_at = dt.datetime.combine(now.date(), dt.time(), dt.UTC)
    deadline = dt.datetime.combine(now.date(), dt.time(deadline_hour), dt.UTC)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[yesterday.isoformat()]),
        limit=1,
    ).records
    metadata: dict[str, Any] = {
        "partition": dg.MetadataValue.text(yesterday.isoformat()),
        "deadline": dg.MetadataValue.text(deadline.isoformat()),
    }
    if records:
        landed = dt.datetime.fromtimestamp(records[0].timestamp, dt.UTC)
        metadata["landed_at"] = dg.MetadataValue.text(landed.isoformat())
        metadata["state"] = dg.MetadataValue.text("landed")
        return True, metadata
    if now < deadline:
        metadata["state"] = dg.MetadataValue.text("not due yet")
        return True, metadata
    watch = watch or Watch.of(instance, closed_at)
    fresh = watch.first_run_at is not None and watch.first_run_at >= closed_at
    if fresh and not watch.daily_run_since_close:
        metadata["state"] = dg.MetadataValue.text("not due: new instance")
        metadata["why"] = dg.MetadataValue.text(
            f"This Dagster instance was first used at {watch.first_run_at:%Y-%m-%d %H:%M} UTC, "
            f"after {yesterday} closed, and {DAILY_SCHEDULE_NAME} has not run since: nothing "
            "could have landed it yet. The next daily run loads the day that closes before it; "
            f"to load {yesterday} now, backfill it from the asset's Partitions tab."
        )
        return True, metadata
    metadata["state"] = dg.MetadataValue.text("missing")
    metadata["why"] = dg.MetadataValue.text(
        f"{yesterday} has not landed by {deadline:%H:%M} UTC (USAGE_FRESHNESS_DEADLINE_HOUR). "
        f"{DAILY_SCHEDULE_NAME} loads it (USAGE_SCHEDULE_CRON): check that the schedule is "
        "running and its last run succeeded, or backfill the day from the Partitions tab."
    )
    return False, metadata


def _freshness_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="yesterday_landed",
        description=(
            "Yesterday's partition has been materialized by USAGE_FRESHNESS_DEADLINE_HOUR "
            "(default 06:00 UTC). Evaluated hourly by the yesterday_landed_sensor."
        ),
    )
    def yesterday_landed(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        passed, metadata = yesterday_status(
            context.instance,
            asset.key,
            dt.datetime.now(dt.UTC),
            settings.freshness_deadline_hour(),
        )
        return dg.AssetCheckResult(passed=passed, metadata=metadata)

    return yesterday_landed


FRESHNESS_CHECKS = [
    *(_freshness_check(asset) for asset in USAGE_ASSETS),
    _freshness_check(project_daily_costs),
]


#: The hourly freshness checks, in one process: each is a query of Dagster's own storage, and a
#: process per check (the default executor) spent a minute of a busy machine starting them.
yesterday_landed_job = dg.define_asset_job(
    "yesterday_landed_job",
    selection=dg.AssetSelection.checks(*FRESHNESS_CHECKS),
    executor_def=dg.in_process_executor,
    description="The yesterday_landed checks (the yesterday_landed_sensor runs it hourly).",
)


@dg.sensor(
    name="yesterday_landed_sensor",
    job=yesterday_landed_job,
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the yesterday_landed checks every hour.",
)
def yesterday_landed_sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest]:
    now = dt.datetime.now(dt.UTC)
    yield dg.RunRequest(run_key=f"yesterday-landed-{now:%Y-%m-%dT%H}")


FRESHNESS_SENSORS = [yesterday_landed_sensor]
