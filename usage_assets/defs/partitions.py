"""Daily UTC partitions: one partition is one UTC day of usage."""

from __future__ import annotations

import dagster as dg

from usage_assets import settings

daily_utc_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.start_date().isoformat(),
    timezone="UTC",
)
