"""The usage_assets code location: built when Dagster loads it, from the settings read then."""

from __future__ import annotations

import dagster as dg

from usage_assets import settings
from usage_assets.defs.attribution.assets import COST_ASSETS
from usage_assets.defs.attribution.checks import CHECKS
from usage_assets.defs.automation import (
    FRESHNESS_CHECKS,
    FRESHNESS_SENSORS,
    JOBS,
    build_schedules,
    follow_usage_sensor,
)
from usage_assets.defs.billing.assets import BILLING_ASSETS
from usage_assets.defs.chargeback.allocation import CHARGEBACK_ASSETS
from usage_assets.defs.chargeback.anomalies import ANOMALY_CHECKS
from usage_assets.defs.chargeback.budgets import BUDGET_ASSETS, BUDGET_CHECKS
from usage_assets.defs.names.assets import NAMES_ASSETS
from usage_assets.defs.partitions import daily_utc_partitions_from
from usage_assets.defs.resources import (
    anomalies_from_env,
    budgets_from_env,
    openai_admin_from_env,
    pricing_from_env,
    usage_database_from_env,
)
from usage_assets.defs.usage.assets import USAGE_ASSETS


def _repartitioned(
    assets: list[dg.AssetsDefinition], partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """`assets` with their daily partitions replaced by `partitions` (USAGE_START_DATE)."""
    return [
        asset.map_asset_specs(
            lambda spec: (
                spec.replace_attributes(partitions_def=partitions)
                if spec.partitions_def is not None
                else spec
            )
        )
        for asset in assets
    ]


def build_definitions(config: settings.Settings) -> dg.Definitions:
    """Every asset, check, job, schedule, sensor and resource, for the settings `config`."""
    partitions = daily_utc_partitions_from(config.start_date)
    assets = [
        *USAGE_ASSETS,
        *COST_ASSETS,
        *BILLING_ASSETS,
        *NAMES_ASSETS,
        *CHARGEBACK_ASSETS,
        *BUDGET_ASSETS,
    ]
    return dg.Definitions(
        assets=_repartitioned(assets, partitions),
        asset_checks=[*CHECKS, *FRESHNESS_CHECKS, *ANOMALY_CHECKS, *BUDGET_CHECKS],
        sensors=[follow_usage_sensor, *FRESHNESS_SENSORS],
        schedules=build_schedules(config.schedule_cron, config.schedule_running),
        jobs=JOBS,
        resources={
            "openai_admin": openai_admin_from_env(),
            "usage_db": usage_database_from_env(),
            "pricing": pricing_from_env(),
            "anomalies": anomalies_from_env(),
            "budget_file": budgets_from_env(),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Every variable of the README's configuration table is read and validated here, when the
    code location loads (not when a module is imported): a bad value fails the load with the
    variable's name (every bad one at once), rather than the schedule tick or the run that
    would read it later."""
    return build_definitions(settings.load())
