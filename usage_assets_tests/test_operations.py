"""Operating it: the daily schedule, freshness of yesterday, range backfills, step retries."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.automation import (
    FRESHNESS_CHECKS,
    Watch,
    days_to_refresh,
    follow_usage_sensor,
    usage_daily_job,
    usage_daily_schedule,
    yesterday_status,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.chargeback.allocation import cost_allocation_daily
from usage_assets.defs.names.assets import NAMES_ASSETS
from usage_assets.defs.policies import MAX_DAYS_PER_RUN, permanent_errors_fail_fast
from usage_assets.defs.resources import OpenAIAdminResource, PricingResource, UsageDatabase
from usage_assets.defs.usage.assets import USAGE_ASSETS, completions_usage_hourly
from usage_assets.errors import AdminAPIError, PayloadError
from usage_assets.simulator.server import SimulatedAdminAPI

from .conftest import day_reports

PARTITIONED = [
    *USAGE_ASSETS,
    project_daily_costs,
    usage_daily_costs,
    project_daily_cost_summary,
    costs_daily,
    cost_allocation_daily,
]
USAGE = dg.AssetKey("completions_usage_hourly")


def resources(sim: SimulatedAdminAPI, database_url: str) -> dict[str, Any]:
    return {
        "openai_admin": OpenAIAdminResource(base_url=sim.base_url, admin_key="sk-admin-ops-test"),
        "usage_db": UsageDatabase(url=database_url),
        "pricing": PricingResource(),
    }


def range_tags(first: str, last: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


# --------------------------------------------------------------------------- the schedule


def test_schedule_tick_requests_the_closed_day_and_the_lookback_window() -> None:
    tick = dt.datetime(2025, 11, 21, 2, 0, tzinfo=dt.UTC)
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    request = usage_daily_schedule(context)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_start"] == "2025-11-17"
    assert request.tags["dagster/asset_partition_range_end"] == "2025-11-20"
    assert request.run_key == "usage-2025-11-20"
    assert usage_daily_schedule.cron_schedule == "0 2 * * *"
    assert usage_daily_schedule.execution_timezone == "UTC"
    assert usage_daily_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert {key.to_user_string() for key in usage_daily_job.selection.resolve(PARTITIONED)} == {
        a.key.to_user_string() for a in PARTITIONED
    }


def test_lookback_is_configurable_and_never_before_the_first_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tick = dt.datetime(2025, 11, 21, 2, 0, tzinfo=dt.UTC)
    assert days_to_refresh(tick, 0) == (dt.date(2025, 11, 20), dt.date(2025, 11, 20))
    assert days_to_refresh(tick, 7) == (dt.date(2025, 11, 13), dt.date(2025, 11, 20))
    monkeypatch.setenv("USAGE_START_DATE", "2025-11-19")
    assert days_to_refresh(tick, 7) == (dt.date(2025, 11, 19), dt.date(2025, 11, 20))
    monkeypatch.setenv("USAGE_LOOKBACK_DAYS", "1")
    request = usage_daily_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_start"] == "2025-11-19"


def test_the_scheduled_run_lands_every_day_of_its_window(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    tick = dt.datetime(2025, 11, 21, 2, 0, tzinfo=dt.UTC)
    request = usage_daily_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(request, dg.RunRequest)
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(
        assets=PARTITIONED, jobs=[usage_daily_job], resources=resources(simulator, database_url)
    )
    result = defs.resolve_job_def("usage_daily_job").execute_in_process(
        instance=instance, tags=request.tags
    )
    assert result.success
    days = {f"2025-11-{d}" for d in range(17, 21)}
    for asset in PARTITIONED:
        assert instance.get_materialized_partitions(asset.key) >= days, asset.key
    assert simulator.usage_requests() == 1  # 4 days x 24 buckets fit one 168-bucket page
    for endpoint in ("embeddings", "vector_stores", "web_search_calls"):
        assert simulator.endpoint_requests(endpoint) == 1, endpoint


# --------------------------------------------------------------------------- freshness


def test_yesterday_check_fails_then_passes(database_url: str, simulator: SimulatedAdminAPI) -> None:
    instance = dg.DagsterInstance.ephemeral()
    after_deadline = dt.datetime(2025, 11, 21, 7, 0, tzinfo=dt.UTC)
    before_deadline = dt.datetime(2025, 11, 21, 5, 0, tzinfo=dt.UTC)
    # An old day landed (a backfill): Dagster's FreshnessPolicy would be satisfied by it.
    dg.materialize(
        [completions_usage_hourly],
        partition_key="2025-11-01",
        instance=instance,
        resources=resources(simulator, database_url),
    )
    # An instance in use since before yesterday closed.
    watched = Watch(
        first_run_at=dt.datetime(2025, 11, 1, tzinfo=dt.UTC), daily_run_since_close=False
    )
    passed, metadata = yesterday_status(instance, USAGE, before_deadline, 6, watched)
    assert passed and metadata["state"].value == "not due yet"
    passed, metadata = yesterday_status(instance, USAGE, after_deadline, 6, watched)
    assert not passed and metadata["state"].value == "missing"
    assert metadata["partition"].value == "2025-11-20"
    assert "usage_daily_schedule" in metadata["why"].value

    dg.materialize(
        [completions_usage_hourly],
        partition_key="2025-11-20",
        instance=instance,
        resources=resources(simulator, database_url),
    )
    passed, metadata = yesterday_status(instance, USAGE, after_deadline, 6, watched)
    assert passed and "landed_at" in metadata and metadata["state"].value == "landed"


def test_a_new_instance_is_not_due_until_its_daily_run(
    database_url: str, simulator: SimulatedAdminAPI
) -> None:
    """A fresh install after yesterday closed: nothing could have landed yesterday, so the check
    passes and says why; once the daily schedule has run since the close, a missing day fails."""
    instance = dg.DagsterInstance.ephemeral()
    after_deadline = dt.datetime(2025, 11, 21, 7, 0, tzinfo=dt.UTC)
    installed = dt.datetime(2025, 11, 21, 6, 30, tzinfo=dt.UTC)
    fresh = Watch(first_run_at=installed, daily_run_since_close=False)
    passed, metadata = yesterday_status(instance, USAGE, after_deadline, 6, fresh)
    assert passed and metadata["state"].value == "not due: new instance"
    assert "2025-11-21 06:30 UTC" in metadata["why"].value
    assert "backfill" in metadata["why"].value
    ran = Watch(first_run_at=installed, daily_run_since_close=True)
    passed, metadata = yesterday_status(instance, USAGE, after_deadline, 6, ran)
    assert not passed and metadata["state"].value == "missing"
    # Installed exactly when yesterday closed counts as new; a minute before does not.
    at_close = dt.datetime(2025, 11, 21, tzinfo=dt.UTC)
    assert yesterday_status(instance, USAGE, after_deadline, 6, Watch(at_close, False))[0]
    before = at_close - dt.timedelta(minutes=1)
    assert not yesterday_status(instance, USAGE, after_deadline, 6, Watch(before, False))[0]


def test_the_watch_reads_the_instance(database_url: str, simulator: SimulatedAdminAPI) -> None:
    instance = dg.DagsterInstance.ephemeral()
    closed = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert Watch.of(instance, closed) == Watch(None, False)
    dg.materialize(
        [completions_usage_hourly],
        partition_key="2025-11-01",
        instance=instance,
        resources=resources(simulator, database_url),
    )
    watch = Watch.of(instance, closed)
    assert watch.first_run_at is not None and watch.first_run_at > closed
    assert not watch.daily_run_since_close
    dg.materialize(
        [completions_usage_hourly],
        partition_key="2025-11-02",
        instance=instance,
        resources=resources(simulator, database_url),
        tags={"dagster/schedule_name": "usage_daily_schedule"},
    )
    assert Watch.of(instance, closed).daily_run_since_close
    # A daily run before the close does not count.
    assert not Watch.of(
        instance, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    ).daily_run_since_close


def test_yesterday_check_runs_as_a_dagster_check(
    monkeypatch: pytest.MonkeyPatch, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    """The real check on the real clock, with a 00:00 deadline: on a new instance yesterday is
    not due until the daily schedule has run; then it is due until it lands."""
    monkeypatch.setenv("USAGE_FRESHNESS_DEADLINE_HOUR", "0")
    instance = dg.DagsterInstance.ephemeral()
    usage_check = next(c for c in FRESHNESS_CHECKS if USAGE in {k.asset_key for k in c.check_keys})
    selection = dg.AssetSelection.checks(usage_check)

    def evaluate() -> bool:
        result = dg.materialize(
            [completions_usage_hourly, usage_check],
            selection=selection,
            instance=instance,
            resources=resources(simulator, database_url),
        )
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation.passed

    assert evaluate() is True  # a new instance: nothing could have landed yesterday
    dg.materialize(  # the daily schedule's run, landing an older day only
        [completions_usage_hourly],
        partition_key="2025-11-01",
        instance=instance,
        resources=resources(simulator, database_url),
        tags={"dagster/schedule_name": "usage_daily_schedule"},
    )
    assert evaluate() is False
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    dg.materialize(
        [completions_usage_hourly],
        partition_key=yesterday,
        instance=instance,
        resources=resources(simulator, database_url),
    )
    assert evaluate() is True


def test_every_asset_has_a_freshness_policy() -> None:
    from usage_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).is_materializable, key  # every dependency is in the location
        assert graph.get(key).freshness_policy is not None, key


# --------------------------------------------------------------------------- range backfills


def test_thirty_day_range_is_one_run_of_few_requests_with_true_per_day_metadata(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    for asset in PARTITIONED:
        policy = asset.backfill_policy
        assert policy is not None and policy.max_partitions_per_run == MAX_DAYS_PER_RUN
    assert math.ceil(30 / MAX_DAYS_PER_RUN) == 1  # a 30-day backfill is a single run
    assert math.ceil(365 / MAX_DAYS_PER_RUN) == 12  # a year is 12 runs, not 365

    result = dg.materialize(
        [completions_usage_hourly],
        tags=range_tags("2025-10-01", "2025-10-30"),
        resources=resources(simulator, database_url),
    )
    assert result.success
    assert simulator.usage_requests() <= math.ceil(30 * 24 / 168)
    start = int(dt.datetime(2025, 10, 1, tzinfo=dt.UTC).timestamp())
    truth = simulator.org.totals_by_project(start, start + 30 * 86400)
    with engine.connect() as conn:
        landed = dict(
            conn.execute(
                text(
                    "SELECT project_id, sum(input_tokens) "
                    "FROM openai_usage.completions_usage_hourly GROUP BY 1"
                )
            ).all()
        )
        per_day = dict(
            conn.execute(
                text(
                    "SELECT (bucket_start AT TIME ZONE 'UTC')::date::text, sum(input_tokens) "
                    "FROM openai_usage.completions_usage_hourly GROUP BY 1"
                )
            ).all()
        )
    assert landed == {p: t["input_tokens"] for p, t in truth.items()}
    reports = day_reports(result, "completions_usage_hourly")
    assert len(reports) == 30
    for report in reports:
        assert report.metadata["input_tokens"].value == per_day[report.partition]
        assert "api_requests" not in report.metadata  # a run total would not be true per day


# --------------------------------------------------------------------------- step retries


def test_a_transient_failure_the_client_gave_up_on_reruns_the_step(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    """USAGE_STEP_RETRIES, read when the step runs: an outage longer than the client's own
    retries (here: 3 answers of 503 to a client allowed 3 attempts) re-runs the step, which
    then lands the day."""
    monkeypatch.setenv("USAGE_STEP_RETRIES", "1")
    monkeypatch.setattr("usage_assets.defs.policies.STEP_RETRY_DELAY_SECONDS", 0.0)
    simulator.faults.add("status", status=503, times=3)
    admin = OpenAIAdminResource(
        base_url=simulator.base_url, admin_key="sk-admin-x", max_attempts=3, max_backoff_seconds=0
    )
    result = dg.materialize(
        [completions_usage_hourly],
        partition_key="2025-11-20",
        resources={"openai_admin": admin, "usage_db": UsageDatabase(url=database_url)},
        raise_on_error=False,
    )
    events = [event.event_type_value for event in result.all_events]
    assert result.success, events
    assert events.count("STEP_UP_FOR_RETRY") == 1
    assert simulator.usage_requests() == 4  # 3 refused, then the re-run's one page
    # With none allowed, the same outage fails the step.
    monkeypatch.setenv("USAGE_STEP_RETRIES", "0")
    simulator.faults.add("status", status=503, times=3)
    again = dg.materialize(
        [completions_usage_hourly],
        partition_key="2025-11-20",
        resources={"openai_admin": admin, "usage_db": UsageDatabase(url=database_url)},
        raise_on_error=False,
    )
    assert not again.success


def test_only_transient_errors_are_left_to_the_step_retry_policy() -> None:
    for permanent in (
        AdminAPIError("401", status=401),
        AdminAPIError("404", status=404),
        PayloadError("drift"),
    ):
        with pytest.raises(dg.Failure) as failure, permanent_errors_fail_fast():
            raise permanent
        assert failure.value.allow_retries is False
    for transient in (AdminAPIError("gave up", status=503), AdminAPIError("gave up", status=429)):
        with pytest.raises(AdminAPIError), permanent_errors_fail_fast():
            raise transient


def test_a_new_instance_loads_the_names_once(
    database_url: str, simulator: SimulatedAdminAPI
) -> None:
    """The automation sensor lands the names on a new instance (so the first backfill already
    shows names), and not again once they are there (the daily names job refreshes them)."""
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=NAMES_ASSETS, resources=resources(simulator, database_url))
    keys = {asset.key for asset in NAMES_ASSETS}
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert {key for key in keys if first.get_num_requested(key)} == keys
    assert dg.materialize(
        NAMES_ASSETS, instance=instance, resources=resources(simulator, database_url)
    ).success
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.total_requested == 0
    # The code location's sensor evaluates them.
    assert keys <= set(follow_usage_sensor.asset_selection.resolve(NAMES_ASSETS))
