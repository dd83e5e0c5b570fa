"""Budgets: the budget file loaded into `budgets`, and checks of the month's spend against it."""

from collections.abc import Sequence
from decimal import Decimal

import dagster as dg

from usage_assets.chargeback.budgets import BudgetStatus, latest_budget_status, load_budgets
from usage_assets.defs.policies import DAILY_FRESHNESS, OWNER
from usage_assets.defs.resources import BudgetsResource, UsageDatabase
from usage_assets.markdown import md_table
from usage_assets.warehouse.models import SCHEMA, Budget
from usage_assets.warehouse.replace import replace_table
from usage_assets.warehouse.table_schema import column_schema

GROUP = "chargeback"
ALLOCATION = dg.AssetKey("cost_allocation_daily")

FORECAST_RULE = (
    "forecast = month-to-date spend + the mean daily spend of the trailing 7 days up to as_of "
    "(the organization's last allocated day; days of the month only, days without spend count "
    "as zero, fewer days when the month is younger) x the days of the month after as_of"
)

#: Reload the budgets, and so re-run their checks on the new spend, whenever any day of the
#: allocation lands (a daily run, a backfill, a late-data refresh). Not `eager()`: an
#: unpartitioned asset depends on every day of a daily-partitioned one, and `eager()` waits
#: while any of them is missing, which a history with one unallocated day never outgrows.
#: `newly_missing` loads the budgets once when the asset first appears.
AFTER_ALLOCATION = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated())
    .since_last_handled()
    .with_label("after allocation lands")
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
)


@dg.asset(
    name="budgets",
    group_name=GROUP,
    kinds={"postgres", "yaml"},
    owners=[OWNER],
    deps=[ALLOCATION],
    automation_condition=AFTER_ALLOCATION,
    freshness_policy=DAILY_FRESHNESS,  # it follows a daily asset
    metadata={
        "dagster/table_name": f"{SCHEMA}.{Budget.__tablename__}",
        "dagster/column_schema": column_schema(Budget.__table__),
    },
    description=(
        "The monthly budgets of USAGE_BUDGETS (per project, API key and/or user), replacing "
        "this organization's rows of `budgets` in one transaction; the view v_budget_status "
        "compares them with the allocated spend. Re-materializes after cost_allocation_daily "
        "lands, so its checks see the new spend. No file configured: zero budgets."
    ),
)
def budgets(
    context: dg.AssetExecutionContext, usage_db: UsageDatabase, budget_file: BudgetsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    path = budget_file.path()
    entries = load_budgets(path)
    rows = [
        {
            "project_id": entry.project_id,
            "api_key_id": entry.api_key_id,
            "user_id": entry.user_id,
            "monthly_usd": entry.monthly_usd,
            "thresholds": list(entry.thresholds),
            "source": entry.where,
        }
        for entry in entries
    ]
    written = replace_table(usage_db.engine(), Budget, rows, usage_db.organization)
    source = str(path) if path else "none: USAGE_BUDGETS is unset, so there are no budgets"
    context.log.info(f"wrote {written} budgets from {source}")
    return dg.MaterializeResult(
        metadata={
            "organization": dg.MetadataValue.text(usage_db.organization),
            "budgets": dg.MetadataValue.int(written),
            "budget_file": dg.MetadataValue.text(source),
            "total_monthly_usd": dg.MetadataValue.float(
                float(sum((entry.monthly_usd for entry in entries), Decimal(0)))
            ),
        }
    )


def _scope(identifier: str | None, *names: str | None) -> str:
    if identifier is None:
        return "(any)"
    name = " / ".join(n for n in names if n)
    return f"{name} ({identifier})" if name else identifier


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "—"
    if value == value.to_integral_value():
        return f"{int(value)}%"
    return f"{value:.2f}".rstrip("0") + "%"


def status_markdown(statuses: Sequence[BudgetStatus]) -> str:
    """The budgets as a table, names first (ids in parentheses), most used first."""
    return md_table(
        [
            "Project", "API key", "User", "Budget USD", "Spend USD", "Used", "Forecast USD",
            "Forecast", "Threshold reached", "Forecast reaches", "Status",
        ],
        [
            [
                _scope(s.project_id, s.project_name),
                _scope(s.api_key_id, s.api_key_name),
                _scope(s.user_id, s.user_name, s.user_email),
                f"{s.monthly_usd:,.2f}",
                f"{s.spend_to_date_usd:,.2f}",
                _percent(s.percent_used),
                f"{s.forecast_usd:,.2f}",
                _percent(s.forecast_percent),
                _percent(s.threshold_reached),
                _percent(s.forecast_threshold_reached),
                s.status,
            ]
            for s in statuses
        ],
        right=range(3, 10),
    )  # fmt: skip


def _projects(statuses: Sequence[BudgetStatus]) -> str:
    names = dict.fromkeys(s.project_name or s.project_id or "(any project)" for s in statuses)
    return ", ".join(names) or "none"


def _common_metadata(
    statuses: Sequence[BudgetStatus], at_risk: Sequence[BudgetStatus], organization: str
) -> dict[str, dg.MetadataValue]:
    first = statuses[0] if statuses else None
    return {
        "organization": dg.MetadataValue.text(organization),
        "month": dg.MetadataValue.text(first.month.strftime("%Y-%m") if first else "none"),
        "as_of": dg.MetadataValue.text(
            str(first.as_of) if first and first.as_of else "no allocated spend yet"
        ),
        "budgets": dg.MetadataValue.int(len(statuses)),
        "budgets_at_risk": dg.MetadataValue.int(len(at_risk)),
        "projects_at_risk": dg.MetadataValue.text(_projects(at_risk)),
        "at_risk": dg.MetadataValue.md(status_markdown(at_risk)),
    }


@dg.asset_check(
    asset=budgets,
    name="budget_month_to_date",
    additional_deps=[ALLOCATION],
    description=(
        "Month-to-date allocated spend of every budget (v_budget_status, the month of the last "
        "allocated day) against its thresholds: reaching the last threshold (default 100%) "
        "fails with severity ERROR, reaching a lower one (default 50% or 80%) with WARN. "
        "Metadata lists the budgets at risk by project, key and user name."
    ),
)
def budget_month_to_date(usage_db: UsageDatabase) -> dg.AssetCheckResult:
    statuses = latest_budget_status(usage_db.engine(), usage_db.organization)
    return month_to_date_result(statuses, usage_db.organization)


def month_to_date_result(
    statuses: Sequence[BudgetStatus], organization: str
) -> dg.AssetCheckResult:
    at_risk = [s for s in statuses if s.threshold_reached is not None]
    over = [s for s in at_risk if s.status == "over"]
    metadata = _common_metadata(statuses, at_risk, organization)
    metadata["budgets_over"] = dg.MetadataValue.int(len(over))
    metadata["budgets_warned"] = dg.MetadataValue.int(len(at_risk) - len(over))
    return dg.AssetCheckResult(
        passed=not at_risk,
        severity=dg.AssetCheckSeverity.ERROR if over else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


@dg.asset_check(
    asset=budgets,
    name="budget_forecast",
    additional_deps=[ALLOCATION],
    description=(
        "Forecast spend to month end of every budget (v_budget_status) against its thresholds: "
        "warns (never errors: it is a prediction) when the forecast reaches a threshold the "
        f"month-to-date spend has not reached yet. Rule: {FORECAST_RULE}."
    ),
)
def budget_forecast(usage_db: UsageDatabase) -> dg.AssetCheckResult:
    statuses = latest_budget_status(usage_db.engine(), usage_db.organization)
    return forecast_result(statuses, usage_db.organization)


def forecast_result(statuses: Sequence[BudgetStatus], organization: str) -> dg.AssetCheckResult:
    at_risk = [s for s in statuses if s.forecast_at_risk]
    metadata = _common_metadata(statuses, at_risk, organization)
    metadata["forecast_rule"] = dg.MetadataValue.text(FORECAST_RULE)
    metadata["budgets_forecast_over"] = dg.MetadataValue.int(
        sum(1 for s in at_risk if s.forecast_threshold_reached == s.last_threshold)
    )
    return dg.AssetCheckResult(
        passed=not at_risk, severity=dg.AssetCheckSeverity.WARN, metadata=metadata
    )


#: For `definitions.py`.
BUDGET_ASSETS: list[dg.AssetsDefinition] = [budgets]
BUDGET_CHECKS: list[dg.AssetChecksDefinition] = [budget_month_to_date, budget_forecast]
