"""The usage_assets code location."""

from __future__ import annotations

import dagster as dg

from usage_assets import settings

#: Every variable of the README's configuration table, read and validated before anything is
#: built from them: a bad value fails the code location load with the variable's name (every
#: bad one at once), rather than the schedule tick or the run that would read it later.
SETTINGS = settings.load()

from usage_assets.defs.attribution.assets import COST_ASSETS, follow_usage_sensor  # noqa: E402
from usage_assets.defs.attribution.checks import CHECKS  # noqa: E402
from usage_assets.defs.automation import (  # noqa: E402
    FRESHNESS_CHECKS,
    FRESHNESS_SENSORS,
    JOBS,
    SCHEDULES,
)
from usage_assets.defs.billing.assets import BILLING_ASSETS  # noqa: E402
from usage_assets.defs.names.assets import NAMES_ASSETS  # noqa: E402
from usage_assets.defs.resources import (  # noqa: E402
    openai_admin_from_env,
    pricing_from_env,
    usage_database_from_env,
)
from usage_assets.defs.usage.assets import USAGE_ASSETS  # noqa: E402

defs = dg.Definitions(
    assets=[*USAGE_ASSETS, *COST_ASSETS, *BILLING_ASSETS, *NAMES_ASSETS],
    asset_checks=[*CHECKS, *FRESHNESS_CHECKS],
    sensors=[follow_usage_sensor, *FRESHNESS_SENSORS],
    schedules=SCHEDULES,
    jobs=JOBS,
    resources={
        "openai_admin": openai_admin_from_env(),
        "usage_db": usage_database_from_env(),
        "pricing": pricing_from_env(),
    },
)
