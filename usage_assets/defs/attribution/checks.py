"""Estimated vs billed: the check that the estimate adds up to the bill."""

import datetime as dt
from decimal import Decimal

import dagster as dg
from sqlalchemy import Engine

from usage_assets.defs.attribution.assets import project_daily_costs, usage_daily_costs
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.resources import PricingResource, UsageDatabase
from usage_assets.pricing.attribution import families_markdown, gaps_markdown, reconcile
from usage_assets.warehouse.models import DEFAULT_ORGANIZATION

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
        "per project and family, and per completions model and token kind. Only this code "
        "location's organization is compared (its bill against its estimates). Billing lags "
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
    return reconciliation_result(
        usage_db.engine(),
        first,
        end,
        pricing.reconciliation_tolerance,
        organization=usage_db.organization,
    )


def reconciliation_result(
    engine: Engine,
    first: dt.date,
    end: dt.date,
    tolerance: float,
    *,
    organization: str = DEFAULT_ORGANIZATION,
) -> dg.AssetCheckResult:
    """`estimated_matches_billed` over [first, end) of `organization` (the code location's):
    fails when a project's estimate of every usage kind is off its bill by more than
    `tolerance`; reports every family. Another organization's bill never counts."""
    result = reconcile(engine, first, end, tolerance, organization=organization)
    failing = result.failing_projects
    return dg.AssetCheckResult(
        passed=not failing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "organization": dg.MetadataValue.text(result.organization),
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


CHECKS = [estimated_matches_billed]
