"""Checks that span assets or time: estimated vs billed cost, and yesterday's data landing."""

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from usage_assets import settings
from usage_assets.cost_assets import project_daily_costs, usage_daily_costs
from usage_assets.cost_attribution import families_markdown, gaps_markdown, reconcile
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.resources import PricingResource, UsageDatabase
from usage_assets.defs.usage.assets import USAGE_ASSETS

#: Without a partition (the check run on its own from the UI), look at this many recent days.
UNPARTITIONED_LOOKBACK_DAYS = 7


@dg.asset_check(
    asset=costs_daily,
    additional_deps=[project_daily_costs, usage_daily_costs],
    description=(
        "Estimated cost of every usage kind (project_daily_costs and usage_daily_costs) is "
        "within USAGE_COST_TOLERANCE of the billed cost (costs_daily, every line item) for "
        "every project of the day; estimated vs billed per line-item family (the usage kind "
        "of each line item, 'other' when unknown) is listed, with the worst gaps per project, "
        "per project and family, and per completions model and token kind. Billing lags "
        "usage: a recent day may not match yet."
    ),
)
def estimated_matches_billed(
    context: dg.AssetCheckExecutionContext, usage_db: UsageDatabase, pricing: PricingResource
) -> dg.AssetCheckResult:
    if context.has_partition_key:
        first = dt.date.fromisoformat(context.partition_key)
        end = first + dt.timedelta(days=1)
    else:
        end = dt.datetime.now(dt.UTC).date()
        first = end - dt.timedelta(days=UNPARTITIONED_LOOKBACK_DAYS)
    return reconciliation_result(usage_db.engine(), first, end, pricing.reconciliation_tolerance)


def reconciliation_result(
    engine: Engine, first: dt.date, end: dt.date, tolerance: float
) -> dg.AssetCheckResult:
    """`estimated_matches_billed` over [first, end): fails when a project's estimate of every
    usage kind is off its bill by more than `tolerance`; reports every family."""
    result = reconcile(engine, first, end, tolerance)
    failing = result.failing_projects
    return dg.AssetCheckResult(
        passed=not failing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "days": dg.MetadataValue.text(f"{first} .. {end - dt.timedelta(days=1)}"),
            "tolerance": dg.MetadataValue.float(float(result.tolerance)),
            "projects_compared": dg.MetadataValue.int(len(result.projects)),
            "projects_outside_tolerance": dg.MetadataValue.int(len(failing)),
            "worst_projects": dg.MetadataValue.md(gaps_markdown(result.worst(result.projects))),
            "families": dg.MetadataValue.md(families_markdown(result.family_totals())),
            "worst_project_families": dg.MetadataValue.md(
                gaps_markdown(result.worst(result.families), "family")
            ),
            "billed_other_usd": dg.MetadataValue.float(
                float(sum((g.billed_usd for g in result.families if g.what == "other"), Decimal(0)))
            ),
            "worst_line_items": dg.MetadataValue.md(gaps_markdown(result.worst(result.line_items))),
        },
    )


def yesterday_status(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, now: dt.datetime, deadline_hour: int
) -> tuple[bool, dict[str, Any]]:
    """Has yesterday's partition of `asset_key` landed, or is it not due yet?

    Dagster's FreshnessPolicy looks at the latest materialization of any partition, so a
    backfill of old days would hide a missing yesterday; this looks at yesterday itself.
    """
    now = now.astimezone(dt.UTC)
    yesterday = now.date() - dt.timedelta(days=1)
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
        return True, metadata
    metadata["state"] = dg.MetadataValue.text("missing" if now >= deadline else "not due yet")
    return now < deadline, metadata


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


@dg.sensor(
    name="yesterday_landed_sensor",
    target=dg.AssetSelection.checks(*FRESHNESS_CHECKS),
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the yesterday_landed checks every hour.",
)
def yesterday_landed_sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest]:
    now = dt.datetime.now(dt.UTC)
    yield dg.RunRequest(run_key=f"yesterday-landed-{now:%Y-%m-%dT%H}")


CHECKS = [estimated_matches_billed, *FRESHNESS_CHECKS]
