"""The daily run: the day that just closed plus a trailing window, because the Usage API keeps
filling in recent hours after the fact. Names are refreshed daily too."""

import datetime as dt

import dagster as dg

from usage_assets import settings
from usage_assets.cost_assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.names.assets import openai_api_keys, openai_projects, openai_users
from usage_assets.defs.usage.assets import USAGE_ASSETS

usage_daily_job = dg.define_asset_job(
    "usage_daily_job",
    selection=[
        *USAGE_ASSETS,
        project_daily_costs,
        usage_daily_costs,
        project_daily_cost_summary,
        costs_daily,
    ],
    description="Usage of every endpoint, estimated costs and billed costs for a range of UTC "
    "days.",
)

names_daily_job = dg.define_asset_job(
    "names_daily_job",
    selection=[openai_projects, openai_users, openai_api_keys],
    description="Project, user and API key names.",
)


def _status() -> dg.DefaultScheduleStatus:
    return (
        dg.DefaultScheduleStatus.RUNNING
        if settings.schedule_running()
        else dg.DefaultScheduleStatus.STOPPED
    )


def days_to_refresh(tick: dt.datetime, lookback_days: int) -> tuple[dt.date, dt.date]:
    """(first, last) UTC day a tick refreshes: the day that closed before `tick`, and the
    `lookback_days` before it, never before the first partition."""
    closed = tick.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    first = max(closed - dt.timedelta(days=lookback_days), settings.start_date())
    return first, closed


@dg.schedule(
    job=usage_daily_job,
    cron_schedule=settings.schedule_cron(),
    execution_timezone="UTC",
    default_status=_status(),
    description=(
        "Every day (USAGE_SCHEDULE_CRON, default 02:00 UTC): the day that just closed and the "
        "USAGE_LOOKBACK_DAYS (default 3) before it, in one run."
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
    job=names_daily_job,
    cron_schedule=settings.schedule_cron(),
    execution_timezone="UTC",
    default_status=_status(),
    description="Refreshes project, user and API key names with the daily run.",
)

SCHEDULES = [usage_daily_schedule, names_daily_schedule]
JOBS = [usage_daily_job, names_daily_job]
