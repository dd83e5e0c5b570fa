"""The Dagster objects, grouped by domain: `usage` (the *_usage_hourly assets), `billing` (the
bill), `names`, `attribution` (estimated cost), and `automation` (schedules and sensors)."""
