"""Checks that span assets: estimated cost against what OpenAI billed."""

import datetime as dt

import dagster as dg

from usage_assets.cost_assets import project_daily_costs
from usage_assets.cost_attribution import gaps_markdown, reconcile
from usage_assets.organization_assets import costs_daily
from usage_assets.resources import PricingResource, UsageDatabase

#: Without a partition (the check run on its own from the UI), look at this many recent days.
UNPARTITIONED_LOOKBACK_DAYS = 7


@dg.asset_check(
    asset=costs_daily,
    additional_deps=[project_daily_costs],
    description=(
        "Estimated cost (project_daily_costs) is within USAGE_COST_TOLERANCE of the billed cost "
        "(costs_daily) for every project of the day; the worst gaps per project and per model "
        "and line-item kind are listed. Billing lags usage: a recent day may not match yet."
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
    result = reconcile(usage_db.engine(), first, end, pricing.reconciliation_tolerance)
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
            "worst_line_items": dg.MetadataValue.md(gaps_markdown(result.worst(result.line_items))),
        },
    )


CHECKS = [estimated_matches_billed]
