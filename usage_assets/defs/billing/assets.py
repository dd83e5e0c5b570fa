"""The `costs_daily` asset: the bill, one UTC day per partition."""

import datetime as dt

import dagster as dg

from usage_assets.defs.billing.ingest import costs_metadata, fetch_cost_days, replace_cost_day
from usage_assets.defs.partitions import daily_utc_partitions
from usage_assets.defs.policies import (
    DAILY_FRESHNESS,
    RANGE_BACKFILL,
    admin_api_asset,
    permanent_errors_fail_fast,
    report_days,
    window_days,
)
from usage_assets.defs.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.warehouse.models import CostDaily
from usage_assets.warehouse.names import project_names


@admin_api_asset(
    CostDaily,
    "GET /v1/organization/costs (bucket_width=1d, group_by project_id, line_item, api_key_id, "
    "user_id, api_source, or the finest coarser grouping the organization accepts)",
    name="costs_daily",
    partitions_def=daily_utc_partitions,
    backfill_policy=RANGE_BACKFILL,
    freshness_policy=DAILY_FRESHNESS,
    description=(
        "What OpenAI bills, in USD, per UTC day, project and line item (a model and a token "
        "kind, e.g. 'gpt-4o-2024-08-06, cached input'), split by API key, user and API source "
        "where the organization allows that grouping (the grouping used is in `group_by`), "
        "with the billed quantity and its unit, exactly as the Admin Costs API reports it. "
        "Amounts are exact decimals. Use it to reconcile estimated costs with the invoice; "
        "billing can lag usage by a day or more, so re-run recent days. Each partition replaces "
        "its day in one transaction, so re-running is safe."
    ),
)
def costs_daily(
    context: dg.AssetExecutionContext,
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first_day, end_day = window_days(context)
    single_day = end_day - first_day == dt.timedelta(days=1)
    with permanent_errors_fail_fast(context):
        engine = usage_db.engine()  # schema checked before anything is fetched
        with openai_admin.connect(context.log) as api:
            days = fetch_cost_days(api.client, first_day, end_day)
            source = api.metadata(include_request_count=single_day)
    names = project_names(engine, usage_db.organization)
    reports = []
    with permanent_errors_fail_fast(context):
        for day in days:
            replace_cost_day(engine, day, usage_db.organization)
            reports.append((day.day, source | costs_metadata([day], names)))
    # One line per run: each day's figures are in its own materialization.
    context.log.info(
        f"{first_day}..{end_day - dt.timedelta(days=1)}: wrote "
        f"{sum(len(day.rows) for day in days):,} billed line items, "
        f"${sum(day.billed_usd for day in days):,.2f}"
    )
    if api.simulated:
        context.log.warning("Materialized SIMULATED costs; set OPENAI_ADMIN_KEY for real data.")
    return report_days(context, reports)


#: The billing assets, for `definitions.py`.
BILLING_ASSETS: list[dg.AssetsDefinition] = [costs_daily]
