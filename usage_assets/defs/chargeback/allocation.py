"""`cost_allocation_daily`: the bill split over the usage behind it, summing to it exactly."""

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from usage_assets.chargeback.allocation import (
    allocate_costs,
    allocation_gaps,
    allocation_totals,
)
from usage_assets.defs.attribution.assets import (
    FOLLOW_UPSTREAM,
    cost_table_asset,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.policies import permanent_errors_fail_fast, report_days, window_days
from usage_assets.defs.resources import UsageDatabase
from usage_assets.markdown import DEFAULT_PROJECT, md_table, named
from usage_assets.pricing.attribution import days_between, money
from usage_assets.warehouse.models import CostAllocationDaily

GROUP = "chargeback"
ONE_DAY = dt.timedelta(days=1)

#: Allocate once the bill and the completions estimate are there; a day whose non-token costs
#: were never computed (no other usage endpoint materialized) does not hold it back.
ALLOCATION_FOLLOWS_UPSTREAM = FOLLOW_UPSTREAM.replace(
    "any_deps_missing",
    dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("usage_daily_costs")),
)


@cost_table_asset(
    CostAllocationDaily,
    ALLOCATION_FOLLOWS_UPSTREAM,
    group_name=GROUP,
    name="cost_allocation_daily",
    deps=[costs_daily, project_daily_costs, usage_daily_costs],
    check_specs=[
        dg.AssetCheckSpec(
            "allocation_matches_bill",
            asset="cost_allocation_daily",
            description=(
                "Per day, project and line item the allocated rows sum to costs_daily's billed "
                "amount exactly (numeric equality, no tolerance)."
            ),
        )
    ],
    description=(
        "The bill (costs_daily) split over the usage behind it: each day's billed amount per "
        "project and line item (and per API key or user where the Costs grouping has them) is "
        "shared out over that project's usage of the line item's family per API key, user, "
        "model and usage kind, in proportion to its estimated cost (of the same token kind "
        "and model where the line item names them; usage quantity when nothing is priced). "
        "Shares are whole micro-dollars by the largest-remainder rule, so they sum to the "
        "bill exactly; billed cost with no usage behind it is a row with its "
        "unallocated_reason. Spend per project, key, user and model that matches the invoice: "
        "openai_usage.v_cost_allocation_daily."
    ),
)
def cost_allocation_daily(
    context: dg.AssetExecutionContext, usage_db: UsageDatabase
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first, end = window_days(context)
    organization = usage_db.organization
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
    allocate_costs(engine, first, end, organization=organization)
    reports = [
        (day, allocation_metadata(engine, day, organization)) for day in days_between(first, end)
    ]
    return report_days(context, reports, [allocation_check(engine, first, end, organization)])


def _usd_table(header: str, rows: Sequence[tuple[str | None, Decimal]], empty: str) -> str:
    if not rows:
        return empty
    return md_table([header, "USD"], [(k or "(none)", money(v)) for k, v in rows], right=[1])


def _named_usd_table(
    header: str, rows: Sequence[tuple[str | None, str | None, Decimal]], none: str
) -> str:
    """Top spenders by name, the id beside it ("Support Copilot (proj_abc)")."""
    if not rows:
        return "_no bill_"
    return md_table(
        [header, "USD"], [(named(i, name, none=none), money(v)) for i, name, v in rows], right=[1]
    )


def allocation_metadata(engine: Engine, day: dt.date, organization: str) -> dict[str, Any]:
    """One day's allocation: billed = allocated, what is unallocated and why, the top spenders."""
    t = allocation_totals(engine, day, day + ONE_DAY, organization=organization)
    return {
        "dagster/row_count": dg.MetadataValue.int(t.rows),
        "billed_usd": dg.MetadataValue.float(float(t.billed_usd)),
        "allocated_usd": dg.MetadataValue.float(float(t.allocated_usd)),
        "unallocated_usd": dg.MetadataValue.float(float(t.unallocated_usd)),
        "unallocated_rows": dg.MetadataValue.int(t.unallocated_rows),
        "unallocated_by_reason": dg.MetadataValue.md(
            _usd_table("reason", t.unallocated_by_reason, "_everything allocated_")
        ),
        "allocated_by_basis": dg.MetadataValue.md(
            _usd_table("proportional to", t.by_basis, "_no bill_")
        ),
        "top_projects": dg.MetadataValue.md(
            _named_usd_table("project", t.top_projects, DEFAULT_PROJECT)
        ),
        "top_api_keys": dg.MetadataValue.md(
            _named_usd_table("API key", t.top_api_keys, "(no key, or unallocated)")
        ),
        "organization": dg.MetadataValue.text(organization),
    }


def allocation_check(
    engine: Engine, first: dt.date, end: dt.date, organization: str
) -> dg.AssetCheckResult:
    """`allocation_matches_bill` over [first, end): fails on any inexact day, project and line
    item, listing them."""
    gaps = allocation_gaps(engine, first, end, organization=organization)
    totals = allocation_totals(engine, first, end, organization=organization)
    return dg.AssetCheckResult(
        check_name="allocation_matches_bill",
        passed=not gaps,
        metadata={
            "days": dg.MetadataValue.text(f"{first} .. {end - ONE_DAY}"),
            "billed_usd": dg.MetadataValue.text(str(totals.billed_usd)),
            "allocated_usd": dg.MetadataValue.text(str(totals.allocated_usd)),
            "line_items_not_matching": dg.MetadataValue.int(len(gaps)),
            "mismatches": dg.MetadataValue.md(
                md_table(
                    ["day", "project", "line_item", "billed", "allocated"],
                    [
                        (
                            g.usage_date,
                            named(g.project_id, g.project_name),
                            g.line_item or "",
                            g.billed_usd,
                            g.allocated_usd,
                        )
                        for g in gaps[:20]
                    ],
                    right=[3, 4],
                )
                if gaps
                else "_every line item adds up exactly_"
            ),
        },
    )


CHARGEBACK_ASSETS = [cost_allocation_daily]
