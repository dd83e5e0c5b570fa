"""Spend anomalies: the check that warns when a project's day departs from its own baseline."""

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import dagster as dg
from sqlalchemy import Engine

from usage_assets.chargeback.anomalies import (
    AnomalyRule,
    Driver,
    SpendAnomaly,
    find_anomalies,
    latest_allocated_day,
)
from usage_assets.defs.resources import AnomalyResource, UsageDatabase
from usage_assets.markdown import md_table
from usage_assets.pricing.attribution import money
from usage_assets.warehouse.models import DEFAULT_ORGANIZATION

#: Without a partition (the check run on its own from the UI), score this many days, ending
#: with the last day allocated.
UNPARTITIONED_LOOKBACK_DAYS = 7
COST_ALLOCATION_DAILY = dg.AssetKey("cost_allocation_daily")


@dg.asset_check(
    asset=COST_ALLOCATION_DAILY,
    name="spend_anomalies",
    description=(
        "Warns when a project's billed spend of a day (cost_allocation_daily) departs from its "
        "own baseline: the median of its spend over the USAGE_ANOMALY_BASELINE_DAYS days before "
        "(days the organization has allocation rows; a project without rows spent 0, so a "
        "sudden stop is a drop). Robust score = (spend - median) / max(1.4826 x MAD, 10% of the "
        "median, USAGE_ANOMALY_MIN_USD); flagged when |score| > USAGE_ANOMALY_SENSITIVITY, the "
        "change is at least USAGE_ANOMALY_MIN_USD and the baseline has at least 7 days. Spikes "
        "and drops, each with the API keys and models that moved most. Only this code "
        "location's organization counts."
    ),
)
def spend_anomalies(
    context: dg.AssetCheckExecutionContext, usage_db: UsageDatabase, anomalies: AnomalyResource
) -> dg.AssetCheckResult:
    engine = usage_db.engine()
    if context.has_partition_key:
        first = dt.date.fromisoformat(context.partition_key)
        end = first + dt.timedelta(days=1)
    elif context.has_partition_key_range:
        keys = context.partition_key_range
        first = dt.date.fromisoformat(keys.start)
        end = dt.date.fromisoformat(keys.end) + dt.timedelta(days=1)
    else:
        last = latest_allocated_day(engine, usage_db.organization)
        end = (last or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=1)
        first = end - dt.timedelta(days=UNPARTITIONED_LOOKBACK_DAYS)
    return anomalies_result(
        engine, first, end, anomalies.rule(), organization=usage_db.organization
    )


def anomalies_result(
    engine: Engine,
    first: dt.date,
    end: dt.date,
    rule: AnomalyRule,
    *,
    organization: str = DEFAULT_ORGANIZATION,
) -> dg.AssetCheckResult:
    """`spend_anomalies` over the days [first, end) of `organization`: passes when no
    project-day is flagged; otherwise warns with every flagged one and its drivers."""
    scan = find_anomalies(engine, first, end, rule, organization=organization)
    return dg.AssetCheckResult(
        passed=not scan.anomalies,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "organization": dg.MetadataValue.text(organization),
            "days": dg.MetadataValue.text(f"{first} .. {end - dt.timedelta(days=1)}"),
            "rule": dg.MetadataValue.text(rule.describe()),
            "sensitivity": dg.MetadataValue.float(rule.sensitivity),
            "baseline_days": dg.MetadataValue.int(rule.baseline_days),
            "min_usd": dg.MetadataValue.float(float(rule.min_usd)),
            "min_baseline_days": dg.MetadataValue.int(rule.required_days),
            "days_loaded": dg.MetadataValue.int(scan.loaded_days),
            "days_with_short_baseline": dg.MetadataValue.int(scan.short_baseline_days),
            "project_days_scored": dg.MetadataValue.int(scan.scored),
            "anomalies": dg.MetadataValue.int(len(scan.anomalies)),
            "spikes": dg.MetadataValue.int(len(scan.spikes)),
            "drops": dg.MetadataValue.int(len(scan.drops)),
            "flagged": dg.MetadataValue.md(anomalies_markdown(scan.anomalies)),
        },
    )


def _drivers(drivers: Sequence[Driver]) -> str:
    if not drivers:
        return "-"
    return "; ".join(f"{d.label} {signed_money(d.change_usd)}" for d in drivers)


def signed_money(value: Decimal) -> str:
    return f"{'+' if value >= 0 else '-'}{money(abs(value))}"


def anomalies_markdown(anomalies: Sequence[SpendAnomaly]) -> str:
    """Every flagged project-day: who, when, how far from its baseline, and what drove it."""
    if not anomalies:
        return "_no anomalies_"
    return md_table(
        [
            "day",
            "project",
            "project id",
            "direction",
            "spend",
            "baseline median",
            "change",
            "score",
            "baseline days",
            "API keys (change)",
            "models (change)",
        ],
        [
            (
                a.usage_date,
                a.project_label,
                a.project_id or "(null)",
                a.direction,
                money(a.spend_usd),
                money(a.median_usd),
                signed_money(a.change_usd),
                f"{a.score:.1f}",
                a.baseline_days,
                _drivers(a.api_keys),
                _drivers(a.models),
            )
            for a in anomalies
        ],
        right=[4, 5, 6, 7, 8],
    )


ANOMALY_CHECKS = [spend_anomalies]
