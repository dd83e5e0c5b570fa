"""Cost attribution assets: priced usage per project and model, and a per-project rollup."""

import datetime as dt
from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from usage_assets.cost_attribution import (
    CostTotals,
    PricingInputs,
    cost_totals,
    days_between,
    kind_mismatches,
    money,
    negative_values,
    price_usage,
    raw_totals,
    summarize_costs,
    unpriced_usage,
)
from usage_assets.defs import policies
from usage_assets.defs.partitions import daily_utc_partitions
from usage_assets.defs.policies import (
    DAILY_FRESHNESS,
    OWNER,
    RANGE_BACKFILL,
    permanent_errors_fail_fast,
    report_days,
    window_days,
)
from usage_assets.defs.resources import PricingResource, UsageDatabase
from usage_assets.defs.usage.assets import completions_usage_hourly
from usage_assets.markdown import md_table
from usage_assets.models import SCHEMA, Base, ProjectDailyCost, ProjectDailyCostSummary
from usage_assets.warehouse.table_schema import column_schema

GROUP = "cost_attribution"
ONE_DAY = dt.timedelta(days=1)
#: Recompute a partition whenever its upstream partition is re-materialized (a backfill, a
#: late-data refresh), for any day: `eager()` alone only reacts in the latest time window.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager().without(
    dg.AutomationCondition.in_latest_time_window()
)

#: Evaluates FOLLOW_UPSTREAM; running by default so nobody has to click.
follow_usage_sensor = dg.AutomationConditionSensorDefinition(
    "cost_attribution_follows_usage",
    target=dg.AssetSelection.groups(GROUP),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Recomputes cost partitions after their usage partitions change.",
)


def _check(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description)


def cost_table_asset(
    table: type[Base], **options: Any
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for a daily-partitioned table computed in PostgreSQL from other tables."""
    return policies.asset(
        partitions_def=daily_utc_partitions,
        backfill_policy=RANGE_BACKFILL,
        freshness_policy=DAILY_FRESHNESS,
        group_name=GROUP,
        kinds={"postgres", "sql"},
        owners=[OWNER],
        automation_condition=FOLLOW_UPSTREAM,
        metadata={
            "dagster/table_name": f"{SCHEMA}.{table.__tablename__}",
            "dagster/column_schema": column_schema(table.__table__),
        },
        **options,
    )


class CostAttributionConfig(dg.Config):
    reprice: bool = Field(
        default=False,
        description=(
            "Replace stored genai-prices rows whose prices changed in a newer genai-prices "
            "release. Off by default, so a past day keeps the prices it was priced with."
        ),
    )


@cost_table_asset(
    ProjectDailyCost,
    name="project_daily_costs",
    deps=[completions_usage_hourly],
    check_specs=[
        _check(
            "tokens_match_usage",
            "project_daily_costs",
            "Token and request totals equal completions_usage_hourly's for the day, exactly.",
        ),
        _check(
            "all_usage_priced",
            "project_daily_costs",
            "Every model, tier and batch flag has a price; unpriced usage is listed.",
        ),
        _check("no_negative_values", "project_daily_costs", "No negative tokens or costs."),
    ],
    description=(
        "Estimated cost in USD per UTC day, project, model, batch flag and service tier: every "
        "token kind priced by its own rate (genai-prices, or your USAGE_PRICE_OVERRIDES), with "
        "the price row used. Usage that cannot be priced keeps its tokens and has a NULL cost."
    ),
)
def project_daily_costs(
    context: dg.AssetExecutionContext,
    config: CostAttributionConfig,
    usage_db: UsageDatabase,
    pricing: PricingResource,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first, end = window_days(context)
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
        report = price_usage(
            engine, first, end, PricingInputs(pricing.overrides_path(), config.reprice)
        )
    if report.stale:
        context.log.warning(
            "genai-prices has different prices than the stored snapshot for "
            f"{', '.join(report.stale[:10])}; kept the stored ones. Run with reprice: true to "
            "re-price explicitly."
        )
    reports = [
        (
            day,
            cost_metadata(cost_totals(engine, day, day + ONE_DAY))
            | {"new_price_rows": report.inserted},
        )
        for day in days_between(first, end)
    ]
    return report_days(context, reports, cost_checks(engine, first, end))


def cost_metadata(totals: CostTotals) -> dict[str, Any]:
    """One day's cost figures; `cost_usd` is what the Plots tab charts."""
    top = [(p or "(default project)", money(c)) for p, c in totals.top_projects]
    return {
        "dagster/row_count": dg.MetadataValue.int(totals.rows),
        "cost_usd": dg.MetadataValue.float(float(totals.cost_usd)),
        "unpriced_tokens": dg.MetadataValue.int(totals.unpriced_tokens),
        "input_tokens": dg.MetadataValue.int(totals.input_tokens),
        "output_tokens": dg.MetadataValue.int(totals.output_tokens),
        "num_model_requests": dg.MetadataValue.int(totals.num_model_requests),
        "top_projects_by_cost": dg.MetadataValue.md(
            md_table(["project_id", "cost"], top, right=[1]) if top else "_no usage_"
        ),
    }


def cost_checks(engine: Engine, first: dt.date, end: dt.date) -> list[dg.AssetCheckResult]:
    """The cost table's checks over the run's days."""
    totals = cost_totals(engine, first, end)
    raw_in, raw_out, raw_req = raw_totals(engine, first, end)
    mismatched_kinds = kind_mismatches(engine, first, end)
    unpriced = unpriced_usage(engine, first, end)
    negatives = negative_values(engine, first, end)
    unpriced_md = md_table(
        ["model", "tier", "batch", "reason", "tokens"],
        [
            (model, tier, batch, reason, f"{tokens:,}")
            for model, tier, batch, reason, tokens in unpriced
        ],
        right=[4],
    )
    days = dg.MetadataValue.text(f"{first} .. {end - ONE_DAY}")
    return [
        dg.AssetCheckResult(
            check_name="tokens_match_usage",
            passed=(totals.input_tokens, totals.output_tokens, totals.num_model_requests)
            == (raw_in, raw_out, raw_req)
            and mismatched_kinds == 0,
            metadata={
                "days": days,
                "cost_input_tokens": totals.input_tokens,
                "usage_input_tokens": raw_in,
                "cost_output_tokens": totals.output_tokens,
                "usage_output_tokens": raw_out,
                "cost_requests": totals.num_model_requests,
                "usage_requests": raw_req,
                "rows_whose_token_kinds_do_not_add_up": mismatched_kinds,
            },
        ),
        dg.AssetCheckResult(
            check_name="all_usage_priced",
            passed=not unpriced,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "days": days,
                "unpriced_tokens": totals.unpriced_tokens,
                "unpriced_models": dg.MetadataValue.md(
                    unpriced_md if unpriced else "_everything priced_"
                ),
            },
        ),
        dg.AssetCheckResult(
            check_name="no_negative_values",
            passed=negatives == 0,
            metadata={"days": days, "rows_with_negative_values": negatives},
        ),
    ]


@cost_table_asset(
    ProjectDailyCostSummary,
    name="project_daily_cost_summary",
    deps=[project_daily_costs],
    description=(
        "Estimated cost per UTC day and project (sum of priced usage), with the tokens that "
        "could not be priced counted separately. Joined with project names in "
        "openai_usage.v_project_daily_cost."
    ),
)
def project_daily_cost_summary(
    context: dg.AssetExecutionContext, usage_db: UsageDatabase
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first, end = window_days(context)
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
    summarize_costs(engine, first, end)
    reports = []
    for day in days_between(first, end):
        totals = cost_totals(engine, day, day + ONE_DAY)
        reports.append(
            (
                day,
                {
                    "dagster/row_count": dg.MetadataValue.int(totals.projects),
                    "cost_usd": dg.MetadataValue.float(float(totals.cost_usd)),
                    "unpriced_tokens": dg.MetadataValue.int(totals.unpriced_tokens),
                },
            )
        )
    return report_days(context, reports)


COST_ASSETS = [project_daily_costs, project_daily_cost_summary]
