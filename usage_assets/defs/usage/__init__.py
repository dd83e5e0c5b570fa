"""Usage: one daily-partitioned `<endpoint>_usage_hourly` asset per Admin API usage endpoint."""
