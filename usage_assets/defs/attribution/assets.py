"""Cost attribution assets: priced usage per project and model (completions tokens, and every
other usage kind by its unit prices), and a per-project rollup of every kind.

Each code location owns one organization (`UsageDatabase.organization`): its cost assets price
that organization's usage only and replace that organization's cost rows only, so several code
locations can share one database."""

import datetime as dt
from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from usage_assets.admin_api.endpoints import COMPLETIONS, USAGE_ENDPOINTS
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
from usage_assets.markdown import md_table, named
from usage_assets.pricing.attribution import (
    CostTotals,
    KindTotals,
    PricingInputs,
    cost_totals,
    days_between,
    kind_mismatches,
    money,
    negative_values,
    price_unit_usage,
    price_usage,
    raw_totals,
    summarize_costs,
    summary_totals,
    unit_cost_totals,
    unit_negative_values,
    unit_quantity_mismatches,
    unpriced_unit_usage,
    unpriced_usage,
)
from usage_assets.warehouse.models import (
    SCHEMA,
    Base,
    ProjectDailyCost,
    ProjectDailyCostSummary,
    UsageDailyCost,
)
from usage_assets.warehouse.table_schema import column_schema

GROUP = "cost_attribution"
ONE_DAY = dt.timedelta(days=1)
#: Recompute a partition whenever its upstream partition is re-materialized (a backfill, a
#: late-data refresh), for any day: `eager()` alone only reacts in the latest time window.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager().without(
    dg.AutomationCondition.in_latest_time_window()
)

#: The rollup follows either cost table; a day whose non-token costs were never computed (no
#: usage asset of those endpoints materialized yet) does not hold back the completions rollup.
SUMMARY_FOLLOWS_UPSTREAM = FOLLOW_UPSTREAM.replace(
    "any_deps_missing",
    dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("usage_daily_costs")),
)


def _check(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description)


def cost_table_asset(
    table: type[Base],
    automation_condition: dg.AutomationCondition[dg.AssetKey] = FOLLOW_UPSTREAM,
    group_name: str = GROUP,
    **options: Any,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for a daily-partitioned table computed in PostgreSQL from other tables."""
    return policies.asset(
        partitions_def=daily_utc_partitions,
        backfill_policy=RANGE_BACKFILL,
        freshness_policy=DAILY_FRESHNESS,
        group_name=group_name,
        kinds={"postgres", "sql"},
        owners=[OWNER],
        automation_condition=automation_condition,
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
    organization = usage_db.organization
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
        report = price_usage(
            engine,
            first,
            end,
            PricingInputs(pricing.overrides_path(), config.reprice),
            organization=organization,
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
            cost_metadata(cost_totals(engine, day, day + ONE_DAY, organization=organization))
            | {"new_price_rows": report.inserted, "organization": organization},
        )
        for day in days_between(first, end)
    ]
    return report_days(context, reports, cost_checks(engine, first, end, organization))


def cost_metadata(totals: CostTotals) -> dict[str, Any]:
    """One day's cost figures; `cost_usd` is what the Plots tab charts."""
    top = [(named(p, name), money(c)) for p, name, c in totals.top_projects]
    return {
        "dagster/row_count": dg.MetadataValue.int(totals.rows),
        "cost_usd": dg.MetadataValue.float(float(totals.cost_usd)),
        "unpriced_tokens": dg.MetadataValue.int(totals.unpriced_tokens),
        "input_tokens": dg.MetadataValue.int(totals.input_tokens),
        "output_tokens": dg.MetadataValue.int(totals.output_tokens),
        "num_model_requests": dg.MetadataValue.int(totals.num_model_requests),
        "top_projects_by_cost": dg.MetadataValue.md(
            md_table(["project", "cost"], top, right=[1]) if top else "_no usage_"
        ),
    }


def cost_checks(
    engine: Engine, first: dt.date, end: dt.date, organization: str
) -> list[dg.AssetCheckResult]:
    """The cost table's checks over the run's days, of `organization`'s rows."""
    totals = cost_totals(engine, first, end, organization=organization)
    raw_in, raw_out, raw_req = raw_totals(engine, first, end, organization=organization)
    mismatched_kinds = kind_mismatches(engine, first, end, organization=organization)
    unpriced = unpriced_usage(engine, first, end, organization=organization)
    negatives = negative_values(engine, first, end, organization=organization)
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


#: The usage assets of every endpoint but completions, by key (`<name>_usage_hourly`, defined
#: with the endpoint descriptions in usage_assets.assets).
UNIT_USAGE_ASSET_KEYS = [
    dg.AssetKey(endpoint.asset_name) for endpoint in USAGE_ENDPOINTS if endpoint is not COMPLETIONS
]


@cost_table_asset(
    UsageDailyCost,
    name="usage_daily_costs",
    deps=UNIT_USAGE_ASSET_KEYS,
    check_specs=[
        _check(
            "quantities_match_usage",
            "usage_daily_costs",
            "Each usage kind's quantity equals its usage table's for the day (vector stores: "
            "the GiB-days of v_vector_store_storage_daily).",
        ),
        _check(
            "all_usage_priced",
            "usage_daily_costs",
            "Every kind, model and priced dimension has a unit price; unpriced usage is listed "
            "with its reason.",
        ),
        _check(
            "no_negative_values",
            "usage_daily_costs",
            "No negative quantities or costs; a free allowance share never exceeds the usage.",
        ),
    ],
    description=(
        "Estimated cost in USD per UTC day, project, usage kind (embeddings, moderations, "
        "images, audio_speeches, audio_transcriptions, vector_stores, "
        "code_interpreter_sessions, file_search_calls, web_search_calls), model and priced "
        "dimensions (image size and source, web search context level): the quantity in its "
        "unit times its unit price (genai-prices, the bundled list prices, or your "
        "USAGE_PRICE_OVERRIDES' unit_prices), with the price row used. Moderations are free; "
        "vector store storage has the organization's free GiB-day shared pro rata. Usage that "
        "cannot be priced keeps its quantity and has a NULL cost and a reason."
    ),
)
def usage_daily_costs(
    context: dg.AssetExecutionContext,
    config: CostAttributionConfig,
    usage_db: UsageDatabase,
    pricing: PricingResource,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first, end = window_days(context)
    organization = usage_db.organization
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
        report = price_unit_usage(
            engine,
            first,
            end,
            PricingInputs(pricing.overrides_path(), config.reprice),
            organization=organization,
        )
    if report.stale:
        context.log.warning(
            "genai-prices or the bundled list has different unit prices than the stored "
            f"snapshot for {', '.join(report.stale[:10])}; kept the stored ones. Run with "
            "reprice: true to re-price explicitly."
        )
    reports = [
        (
            day,
            unit_cost_metadata(
                unit_cost_totals(engine, day, day + ONE_DAY, organization=organization)
            )
            | {"new_price_rows": report.inserted, "organization": organization},
        )
        for day in days_between(first, end)
    ]
    return report_days(context, reports, unit_cost_checks(engine, first, end, organization))


def unit_cost_metadata(totals: dict[str, KindTotals]) -> dict[str, Any]:
    """One day's unit costs: `cost_usd` (charted), and per kind quantity, cost, unpriced."""
    rows = [
        (kind, f"{t.quantity:,.4f} {t.unit}", money(t.cost_usd),
         f"{t.unpriced_rows} ({t.unpriced_quantity:,.4f} {t.unit})" if t.unpriced_rows else "")
        for kind, t in totals.items()
    ]  # fmt: skip
    return {
        "dagster/row_count": dg.MetadataValue.int(sum(t.rows for t in totals.values())),
        "cost_usd": dg.MetadataValue.float(float(sum(t.cost_usd for t in totals.values()))),
        "unpriced_rows": dg.MetadataValue.int(sum(t.unpriced_rows for t in totals.values())),
        "by_kind": dg.MetadataValue.md(
            md_table(["kind", "quantity", "cost", "unpriced rows"], rows, right=[1, 2])
            if rows
            else "_no usage_"
        ),
    }


def unit_cost_checks(
    engine: Engine, first: dt.date, end: dt.date, organization: str
) -> list[dg.AssetCheckResult]:
    """The unit cost table's checks over the run's days, of `organization`'s rows."""
    mismatches = unit_quantity_mismatches(engine, first, end, organization=organization)
    unpriced = unpriced_unit_usage(engine, first, end, organization=organization)
    negatives = unit_negative_values(engine, first, end, organization=organization)
    days = dg.MetadataValue.text(f"{first} .. {end - ONE_DAY}")
    return [
        dg.AssetCheckResult(
            check_name="quantities_match_usage",
            passed=not mismatches,
            metadata={
                "days": days,
                "mismatches": dg.MetadataValue.md(
                    md_table(
                        ["kind", "costed", "usage"],
                        [(k, f"{got:,}", f"{raw:,}") for k, got, raw in mismatches],
                        right=[1, 2],
                    )
                    if mismatches
                    else "_every kind adds up_"
                ),
            },
        ),
        dg.AssetCheckResult(
            check_name="all_usage_priced",
            passed=not unpriced,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "days": days,
                "unpriced": dg.MetadataValue.md(
                    md_table(
                        ["kind", "reason", "quantity"],
                        [(k, reason, f"{q:,} {unit}") for k, reason, q, unit in unpriced],
                        right=[2],
                    )
                    if unpriced
                    else "_everything priced_"
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
    SUMMARY_FOLLOWS_UPSTREAM,
    name="project_daily_cost_summary",
    deps=[project_daily_costs, usage_daily_costs],
    description=(
        "Estimated cost per UTC day and project: the sum of every usage kind's priced usage "
        "(cost_by_kind per kind), with the tokens and the non-token cost rows that could not "
        "be priced counted separately. Joined with project names in "
        "openai_usage.v_project_daily_cost."
    ),
)
def project_daily_cost_summary(
    context: dg.AssetExecutionContext, usage_db: UsageDatabase
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first, end = window_days(context)
    organization = usage_db.organization
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
    summarize_costs(engine, first, end, organization=organization)
    reports = []
    for day in days_between(first, end):
        projects, cost, unpriced_tokens, unpriced_rows = summary_totals(
            engine, day, day + ONE_DAY, organization=organization
        )
        reports.append(
            (
                day,
                {
                    "dagster/row_count": dg.MetadataValue.int(projects),
                    "cost_usd": dg.MetadataValue.float(float(cost)),
                    "unpriced_tokens": dg.MetadataValue.int(unpriced_tokens),
                    "unpriced_usage_rows": dg.MetadataValue.int(unpriced_rows),
                    "organization": dg.MetadataValue.text(organization),
                },
            )
        )
    return report_days(context, reports)


COST_ASSETS = [project_daily_costs, usage_daily_costs, project_daily_cost_summary]
