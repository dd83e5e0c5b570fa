"""Daily UTC partitions: one partition is one UTC day of usage."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from usage_assets import settings


def daily_utc_partitions_from(start_date: dt.date) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from `start_date` (USAGE_START_DATE) on."""
    return dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), timezone="UTC")


#: The partitions the assets are declared with; the code location replaces them with those of
#: its USAGE_START_DATE when it loads (`definitions.build_definitions`).
daily_utc_partitions = daily_utc_partitions_from(dt.date.fromisoformat(settings.DEFAULT_START_DATE))
