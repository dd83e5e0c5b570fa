"""End to end: the Dagster asset, the simulator over loopback HTTP, and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from usage_assets.admin_api.rows import DaySummary, UsageRow, split_by_day
from usage_assets.admin_api.usage import iter_usage_buckets
from usage_assets.defs.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.defs.usage.assets import completions_usage_hourly
from usage_assets.errors import ConfigurationError
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.usage_days import LoadInfo, replace_day

from .conftest import day_reports

DAY = "2025-11-20"
DAY_START = int(dt.datetime(2025, 11, 20, tzinfo=dt.UTC).timestamp())
ADMIN_KEY = "sk-admin-TESTKEY0123456789abcdefSECRET"
BUSINESS_COLUMNS = (
    "bucket_start, bucket_end, project_id, user_id, api_key_id, model, batch, service_tier, "
    "api_source, input_tokens, output_tokens, num_model_requests, input_cached_tokens, "
    "input_cache_write_tokens, input_cache_write_30m_tokens, input_cache_write_12h_tokens, "
    "input_uncached_tokens, input_text_tokens, input_audio_tokens, input_image_tokens, "
    "input_cached_text_tokens, input_cached_audio_tokens, input_cached_image_tokens, "
    "output_text_tokens, output_audio_tokens, output_image_tokens, result"
)


def admin_for(sim: SimulatedAdminAPI, **overrides: Any) -> OpenAIAdminResource:
    options: dict[str, Any] = {"base_url": sim.base_url, "admin_key": ADMIN_KEY}
    options.update(max_backoff_seconds=0.05)
    options.update(overrides)
    return OpenAIAdminResource(**options)


def materialize(
    admin: OpenAIAdminResource,
    database_url: str,
    partition: str = DAY,
    run_config: dict[str, Any] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [completions_usage_hourly],
        partition_key=partition,
        resources={"openai_admin": admin, "usage_db": UsageDatabase(url=database_url)},
        run_config=run_config,
        raise_on_error=False,
        instance=instance,
    )


def table_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    f"SELECT {BUSINESS_COLUMNS} FROM openai_usage.completions_usage_hourly "
                    f"ORDER BY {BUSINESS_COLUMNS.replace(', result', '')}"
                )
            )
        ]


def project_sums(engine: Engine) -> dict[str | None, dict[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT project_id, sum(input_tokens), sum(output_tokens), "
                "sum(num_model_requests) FROM openai_usage.completions_usage_hourly "
                "GROUP BY project_id"
            )
        )
        return {
            project: {
                "input_tokens": int(inp),
                "output_tokens": int(out),
                "num_model_requests": int(req),
            }
            for project, inp, out, req in rows
        }


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a step failure"
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


def test_partition_lands_the_simulators_rows(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    result = materialize(admin_for(simulator), database_url)
    assert result.success
    truth = simulator.org.totals_by_project(DAY_START, DAY_START + 86400)
    assert project_sums(engine) == truth
    assert len(truth) >= 3

    rows = table_rows(engine)
    expected_rows = sum(len(simulator.org.hour_results(DAY_START + h * 3600)) for h in range(24))
    assert len(rows) == expected_rows
    assert all(r[0].date() == dt.date(2025, 11, 20) for r in rows)

    [materialization] = day_reports(result, "completions_usage_hourly")
    metadata = materialization.metadata
    assert metadata["dagster/row_count"].value == expected_rows
    assert metadata["dagster/table_name"].value == "openai_usage.completions_usage_hourly"
    assert metadata["input_tokens"].value == sum(t["input_tokens"] for t in truth.values())
    assert metadata["num_model_requests"].value == sum(
        t["num_model_requests"] for t in truth.values()
    )
    assert metadata["simulated"].value is False
    assert metadata["api_requests"].value == simulator.usage_requests() == 1

    with engine.connect() as conn:
        load = conn.execute(
            text(
                "SELECT row_count, bucket_count, group_by, simulated FROM openai_usage.usage_loads"
            )
        ).one()
    assert load.row_count == expected_rows
    assert load.bucket_count == 24
    assert list(load.group_by) == [
        "project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source",
    ]  # fmt: skip
    assert load.simulated is False

    sent = simulator.requests[0][1]
    assert sent["bucket_width"] == ["1h"]
    assert sent["start_time"] == [str(DAY_START)] and sent["end_time"] == [str(DAY_START + 86400)]
    assert set(sent["group_by"]) == {
        "project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source",
    }  # fmt: skip


def test_rerun_gives_identical_table_content(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    assert materialize(admin_for(simulator), database_url).success
    first = table_rows(engine)
    assert materialize(admin_for(simulator), database_url).success
    assert table_rows(engine) == first
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM openai_usage.usage_loads")).scalar() == 1


def test_bucket_split_across_pages_is_merged(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI(max_results_per_page=7) as sim:
        assert materialize(admin_for(sim), database_url).success
        assert sim.usage_requests() > 24  # each hour is spread over several pages
        truth = sim.org.totals_by_project(DAY_START, DAY_START + 86400)
    assert project_sums(engine) == truth


def test_neighbouring_days_are_untouched(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    assert materialize(admin_for(simulator), database_url, "2025-11-19").success
    before = project_sums(engine)
    assert materialize(admin_for(simulator), database_url, "2025-11-20").success
    assert materialize(admin_for(simulator), database_url, "2025-11-20").success
    with engine.connect() as conn:
        days = conn.execute(
            text(
                "SELECT (bucket_start AT TIME ZONE 'UTC')::date AS d, count(*) "
                "FROM openai_usage.completions_usage_hourly GROUP BY d ORDER BY d"
            )
        ).all()
    assert [d for d, _ in days] == [dt.date(2025, 11, 19), dt.date(2025, 11, 20)]
    assert project_sums(engine) != before


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"kind": "drift"}, "input_tokens"),
        ({"kind": "outside_window"}, "outside the requested window"),
        ({"kind": "repeat_cursor", "times": 2}, "paging loop"),
        ({"kind": "status", "status": 500, "times": 50}, "Gave up after 3 attempts"),
        ({"kind": "not_json", "times": 50}, "not JSON"),
        ({"kind": "truncated", "times": 50}, "Gave up after 3 attempts"),
    ],
)
def test_bad_pages_fail_and_keep_previous_rows(
    engine: Engine, database_url: str, fault: dict[str, Any], expected: str
) -> None:
    with SimulatedAdminAPI(max_results_per_page=60) as sim:
        assert materialize(admin_for(sim), database_url).success
        good = table_rows(engine)
        # The failure strikes a later page, after earlier pages of the day were fetched.
        sim.faults.add("slow", delay=0.0, times=2)
        sim.faults.add(**fault)
        result = materialize(admin_for(sim, max_attempts=3), database_url)
    assert not result.success
    assert expected in failure_message(result)
    assert table_rows(engine) == good


def test_429_storm_and_5xx_burst_recover(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        sim.faults.add("status", status=429, retry_after=0, times=3)
        sim.faults.add("status", status=503, times=2)
        result = materialize(admin_for(sim), database_url)
        assert result.success
        assert sim.usage_requests() == 6
        truth = sim.org.totals_by_project(DAY_START, DAY_START + 86400)
    assert project_sums(engine) == truth


def test_401_fails_fast_with_openai_message_and_no_key(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI(required_key="sk-admin-the-right-one-123456") as sim:
        result = materialize(admin_for(sim), database_url)
        assert sim.usage_requests() == 1
    assert not result.success
    message = failure_message(result)
    assert "401" in message and "Incorrect API key provided" in message
    assert "OPENAI_ADMIN_KEY" in message
    assert ADMIN_KEY not in message
    assert table_rows(engine) == []


def test_admin_key_appears_nowhere(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        sim.faults.add("status", status=429, retry_after=0, times=1)
        admin = admin_for(sim)
        instance = dg.DagsterInstance.ephemeral()
        result = materialize(admin, database_url, instance=instance)
    assert result.success
    logs = instance.all_logs(result.run_id)
    assert any("429" in entry.user_message for entry in logs)  # the retry was logged
    for entry in logs:
        assert ADMIN_KEY not in str(entry)
    assert ADMIN_KEY not in str(instance.get_run_by_id(result.run_id))
    assert ADMIN_KEY not in repr(admin)
    with engine.connect() as conn:
        dump = conn.execute(
            text(
                "SELECT string_agg(t::text, '') FROM ("
                " SELECT u::text AS t FROM openai_usage.completions_usage_hourly u"
                " UNION ALL SELECT l::text FROM openai_usage.usage_loads l) s"
            )
        ).scalar()
    assert dump and ADMIN_KEY not in dump


def test_unknown_result_fields_are_kept_in_json(engine: Engine, database_url: str) -> None:
    org = SyntheticOrganization(extra_result_fields={"input_video_tokens": 7, "region": "eu"})
    with SimulatedAdminAPI(org=org) as sim:
        assert materialize(admin_for(sim), database_url).success
    with engine.connect() as conn:
        kept = conn.execute(
            text(
                "SELECT DISTINCT result->>'input_video_tokens', result->>'region' "
                "FROM openai_usage.completions_usage_hourly"
            )
        ).all()
    assert kept == [("7", "eu")]


def test_group_by_is_configurable(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        run_config = {"ops": {"completions_usage_hourly": {"config": {"group_by": ["project_id"]}}}}
        assert materialize(admin_for(sim), database_url, run_config=run_config).success
        assert sim.requests[0][1]["group_by"] == ["project_id"]
        truth = sim.org.totals_by_project(DAY_START, DAY_START + 86400)
    assert project_sums(engine) == truth
    with engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM openai_usage.completions_usage_hourly "
                    "WHERE model IS NOT NULL"
                )
            ).scalar()
            == 0
        )


def test_missing_key_with_real_base_url_is_a_configuration_error(
    engine: Engine, database_url: str
) -> None:
    admin = OpenAIAdminResource(base_url="https://api.openai.com/v1")
    result = materialize(admin, database_url)
    assert not result.success
    message = failure_message(result)
    assert "OPENAI_ADMIN_KEY is not set" in message and "OPENAI_BASE_URL" in message
    assert ConfigurationError.__name__ in message
    assert table_rows(engine) == []


def test_no_key_runs_on_the_built_in_simulator_and_says_so(
    engine: Engine, database_url: str
) -> None:
    result = materialize(OpenAIAdminResource(), database_url)
    assert result.success
    [materialization] = day_reports(result, "completions_usage_hourly")
    assert materialization.metadata["simulated"].value is True
    assert "SIMULATED" in str(materialization.metadata["data_source"].value)
    warnings = [
        e
        for e in result.all_events
        if e.event_type_value == "ENGINE_EVENT" or "SIMULATED" in str(e)
    ]
    assert any("SIMULATED" in str(e) for e in warnings)
    truth = SyntheticOrganization().totals_by_project(DAY_START, DAY_START + 86400)
    assert project_sums(engine) == truth
    with engine.connect() as conn:
        assert conn.execute(text("SELECT simulated FROM openai_usage.usage_loads")).scalar() is True


def _day_rows(day: dt.date) -> list[UsageRow]:
    """Rows of `day` from the simulator, built through the real client."""
    from usage_assets.admin_api.transport import AdminAPIClient
    from usage_assets.defs.usage.ingest import usage_query_for_days

    query = usage_query_for_days(day, day + dt.timedelta(days=1), ["project_id", "model"])
    with SimulatedAdminAPI() as sim:
        client = AdminAPIClient(sim.base_url, None)
        [(_, rows)] = [(s, list(r)) for s, r in split_by_day(iter_usage_buckets(client, query))]
    return rows


def test_failure_mid_write_rolls_back_to_previous_rows(engine: Engine) -> None:
    day = dt.date(2025, 11, 20)
    rows = _day_rows(day)
    info = LoadInfo(
        group_by=["project_id", "model"], simulated=True, source_url="test", dagster_run_id=None
    )
    replace_day(engine, DaySummary(day), rows, info)
    good = table_rows(engine)
    assert len(good) == len(rows) > 10

    # A trigger that fails the COPY part-way through: half the day is already inserted.
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION openai_usage.fail_mid_copy() RETURNS trigger AS $$ BEGIN "
                "IF NEW.bucket_start >= '2025-11-20 12:00+00' THEN "
                "RAISE EXCEPTION 'injected failure mid-write'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER fail_mid_copy BEFORE INSERT ON "
                "openai_usage.completions_usage_hourly FOR EACH ROW "
                "EXECUTE FUNCTION openai_usage.fail_mid_copy()"
            )
        )
    try:
        with pytest.raises(Exception, match="injected failure mid-write"):
            replace_day(engine, DaySummary(day), rows, info)
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("DROP TRIGGER fail_mid_copy ON openai_usage.completions_usage_hourly")
            )
            conn.execute(text("DROP FUNCTION openai_usage.fail_mid_copy()"))
    assert table_rows(engine) == good


def test_concurrent_writes_of_one_day_do_not_collide(engine: Engine) -> None:
    day = dt.date(2025, 11, 20)
    rows = _day_rows(day)
    info = LoadInfo(
        group_by=["project_id", "model"], simulated=True, source_url="test", dagster_run_id=None
    )
    errors: list[BaseException] = []

    def write() -> None:
        try:
            replace_day(engine, DaySummary(day), rows, info)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(table_rows(engine)) == len(rows)
