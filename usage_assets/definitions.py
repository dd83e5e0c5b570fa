"""The usage_assets code location."""

from __future__ import annotations

import dagster as dg

from usage_assets import settings
from usage_assets.assets import completions_usage_hourly
from usage_assets.checks import CHECKS, yesterday_landed_sensor
from usage_assets.cost_assets import COST_ASSETS, follow_usage_sensor
from usage_assets.organization_assets import ORGANIZATION_ASSETS
from usage_assets.resources import (
    openai_admin_from_env,
    pricing_from_env,
    usage_database_from_env,
)
from usage_assets.schedules import JOBS, SCHEDULES

settings.revision_tolerance()  # read by the usage asset at run time; a bad value fails the load

defs = dg.Definitions(
    assets=[completions_usage_hourly, *COST_ASSETS, *ORGANIZATION_ASSETS],
    asset_checks=CHECKS,
    sensors=[follow_usage_sensor, yesterday_landed_sensor],
    schedules=SCHEDULES,
    jobs=JOBS,
    resources={
        "openai_admin": openai_admin_from_env(),
        "usage_db": usage_database_from_env(),
        "pricing": pricing_from_env(),
    },
)
