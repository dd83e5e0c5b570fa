"""A short answer never replaces a good day; every reload of a day is recorded.

Closed days must come with all 24 hourly buckets (the Usage API returns one per period, empty
ones included); anything less fails the day inside its transaction, after a re-ask or two.
Each load appends to `usage_day_revisions`, and a reload that loses usage fails a WARN check.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from typing import Any

import dagster as dg
import pytest
import responses
from sqlalchemy import Engine, text

from usage_assets.admin_api.rows import DaySummary
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.admin_api.usage import COMPLETIONS_USAGE_PATH
from usage_assets.defs.billing.ingest import COSTS_REASKS, fetch_cost_days
from usage_assets.defs.resources import UsageDatabase
from usage_assets.defs.usage.assets import RELOAD_CHECK, completions_usage_hourly
from usage_assets.defs.usage.ingest import REASKS, hours_begun, ingest_days
from usage_assets.errors import ConfigurationError, IncompleteDayError, PayloadError
from usage_assets.settings import revision_tolerance
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.usage_days import LoadInfo

from .conftest import day_reports
from .test_billing import cost_rows
from .test_billing import materialize as materialize_costs
from .test_ingest import (
    DAY,
    DAY_START,
    admin_for,
    failure_message,
    materialize,
    project_sums,
    table_rows,
)

HOUR = 3600
BASE_URL = "https://api.example.test/v1"
DATE = dt.date.fromisoformat(DAY)
GROUP_BY = ("project_id", "model")
INFO = LoadInfo(group_by=GROUP_BY, simulated=True, source_url="test", dagster_run_id=None)
#: A later clock for runs that must see DATE as closed.
LATER = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)


def hour_starts(*hours: int, day_start: int = DAY_START) -> list[int]:
    return [day_start + hour * HOUR for hour in hours]


def stored_state(engine: Engine) -> tuple[Any, ...]:
    """Everything a failed reload must leave exactly as it was."""
    with engine.connect() as conn:
        loads = conn.execute(text("SELECT * FROM openai_usage.usage_loads ORDER BY 1")).all()
        revisions = conn.execute(
            text("SELECT * FROM openai_usage.usage_day_revisions ORDER BY 1, 2")
        ).all()
    return table_rows(engine), [tuple(r) for r in loads], [tuple(r) for r in revisions]


def revisions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(row._mapping)
            for row in conn.execute(
                text("SELECT * FROM openai_usage.usage_day_revisions ORDER BY usage_date, revision")
            )
        ]


def org_tokens(org: SyntheticOrganization, start: int = DAY_START) -> dict[str, int]:
    truth = org.totals_by_project(start, start + 86400)
    inp = sum(t["input_tokens"] for t in truth.values())
    out = sum(t["output_tokens"] for t in truth.values())
    return {"input": inp, "output": out, "tokens": inp + out}


def client_for(sim: SimulatedAdminAPI) -> AdminAPIClient:
    return AdminAPIClient(sim.base_url, None)


def ingest(
    sim: SimulatedAdminAPI,
    engine: Engine,
    first: dt.date = DATE,
    days: int = 1,
    now: dt.datetime = LATER,
) -> list[DaySummary]:
    return list(
        ingest_days(
            client_for(sim),
            engine,
            first,
            first + dt.timedelta(days=days),
            GROUP_BY,
            INFO,
            now=now,
        )
    )


# --------------------------------------------------------------------------- complete days only


@pytest.mark.parametrize(
    ("starts", "message"),
    [
        (None, f"{DAY}: missing hourly buckets 00:00-23:00 (got 0 of 24)"),
        (hour_starts(*range(12, 24)), f"{DAY}: missing hourly buckets 12:00-23:00 (got 12 of 24)"),
        (hour_starts(5, 6, 9), f"{DAY}: missing hourly buckets 05:00-06:00, 09:00 (got 21 of 24)"),
        (hour_starts(0), f"{DAY}: missing hourly buckets 00:00 (got 23 of 24)"),
    ],
    ids=["no-buckets", "half-the-day", "gaps", "first-hour"],
)
def test_a_short_answer_fails_and_keeps_the_landed_day(
    engine: Engine,
    database_url: str,
    simulator: SimulatedAdminAPI,
    starts: list[int] | None,
    message: str,
) -> None:
    assert materialize(admin_for(simulator), database_url).success
    landed = stored_state(engine)
    assert len(landed[0]) > 100

    simulator.faults.add("drop_buckets", starts=starts, times=REASKS + 1)
    before = simulator.usage_requests()
    result = materialize(admin_for(simulator), database_url)

    assert not result.success
    failure = failure_message(result)
    assert message in failure and "IncompleteDayError" in failure
    assert simulator.usage_requests() - before == REASKS + 1  # asked, then asked twice again
    assert simulator.faults.pending() == []
    assert stored_state(engine) == landed  # rows, usage_loads and revisions all untouched


def test_an_incomplete_day_is_not_left_to_the_step_retry_policy(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, database_url: str
) -> None:
    """With step retries on, a short answer still fails once: Failure(allow_retries=False)."""
    monkeypatch.setenv("USAGE_STEP_RETRIES", "1")  # read when the step runs
    monkeypatch.setattr("usage_assets.defs.policies.STEP_RETRY_DELAY_SECONDS", 0.0)
    assets = importlib.import_module("usage_assets.defs.usage.assets")
    resources = importlib.import_module("usage_assets.defs.resources")
    asset = assets.completions_usage_hourly

    with SimulatedAdminAPI() as sim:
        sim.faults.add("drop_buckets", starts=hour_starts(*range(12, 24)), times=REASKS + 1)
        result = dg.materialize(
            [asset],
            partition_key=DAY,
            resources={
                "openai_admin": resources.OpenAIAdminResource(
                    base_url=sim.base_url, admin_key="sk-admin-retry-test"
                ),
                "usage_db": resources.UsageDatabase(url=database_url),
            },
            raise_on_error=False,
        )
        assert sim.usage_requests() == REASKS + 1
    assert not result.success
    events = {event.event_type_value for event in result.all_events}
    assert "STEP_UP_FOR_RETRY" not in events and "STEP_RESTARTED" not in events
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_failure_data.user_failure_data is not None
    assert "missing hourly buckets 12:00-23:00" in str(
        failure.step_failure_data.user_failure_data.description
    )
    assert table_rows(engine) == []


def test_a_transient_short_answer_is_asked_again_and_lands(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    simulator.faults.add("drop_buckets", starts=hour_starts(*range(12, 24)), times=1)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(admin_for(simulator), database_url, instance=instance)
    assert result.success
    assert simulator.usage_requests() == 2
    assert project_sums(engine) == simulator.org.totals_by_project(DAY_START, DAY_START + 86400)
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING
    ]
    assert any(
        "missing hourly buckets 12:00-23:00 (got 12 of 24)" in m and "Asking again from" in m
        for m in warnings
    ), warnings
    [report] = day_reports(result, "completions_usage_hourly")
    assert report.metadata["hourly_buckets"].value == 24


def test_a_reask_starts_at_the_short_day_and_keeps_the_days_before(
    engine: Engine, simulator: SimulatedAdminAPI, caplog: pytest.LogCaptureFixture
) -> None:
    first = DATE - dt.timedelta(days=1)
    simulator.faults.add("drop_buckets", starts=hour_starts(5), times=1)
    with caplog.at_level(logging.WARNING, logger="usage_assets.admin_api"):
        summaries = ingest(simulator, engine, first, days=3)
    assert [s.day for s in summaries] == [first, DATE, DATE + dt.timedelta(days=1)]
    assert all(s.bucket_count == 24 for s in summaries)
    starts = [query["start_time"] for _, query in simulator.requests]
    assert starts == [[str(DAY_START - 86400)], [str(DAY_START)]]  # the re-ask skips day one
    assert [(r["usage_date"], r["revision"]) for r in revisions(engine)] == [
        (first, 1),
        (DATE, 1),
        (DATE + dt.timedelta(days=1), 1),
    ]
    assert [r.getMessage() for r in caplog.records if "Asking again" in r.getMessage()] == [
        f"{DAY}: missing hourly buckets 05:00 (got 23 of 24); the stored day is kept. "
        f"Asking again from {DAY} (attempt 2 of 3)."
    ]


def test_a_closed_day_with_no_bucket_between_full_days_is_refused(
    engine: Engine, simulator: SimulatedAdminAPI
) -> None:
    """The day the page skipped entirely never opens a write: the days around it do."""
    first = DATE - dt.timedelta(days=1)
    simulator.faults.add("drop_buckets", starts=hour_starts(*range(24)), times=REASKS + 1)
    with pytest.raises(IncompleteDayError, match=f"{DAY}: missing hourly buckets 00:00-23:00"):
        ingest(simulator, engine, first, days=3)
    assert [(r["usage_date"], r["revision"]) for r in revisions(engine)] == [(first, 1)]


# --------------------------------------------------------------------------- the open day


def test_hours_begun() -> None:
    midnight = dt.datetime(2025, 11, 20, tzinfo=dt.UTC)
    assert hours_begun(DATE, midnight - dt.timedelta(seconds=1)) == 0
    assert hours_begun(DATE, midnight) == 1
    assert hours_begun(DATE, midnight + dt.timedelta(hours=6, minutes=30)) == 7
    assert hours_begun(DATE, midnight + dt.timedelta(hours=23, minutes=59)) == 24
    assert hours_begun(DATE, midnight + dt.timedelta(days=3)) == 24


OPEN_AT = dt.datetime(2025, 11, 20, 6, 30, tzinfo=dt.UTC)  # hours 00:00..06:00 have begun


@pytest.mark.parametrize("last_hour", [6, 4, -1], ids=["to-now", "trailing-missing", "nothing"])
def test_the_open_day_may_be_partial(
    engine: Engine, simulator: SimulatedAdminAPI, last_hour: int
) -> None:
    # The simulator answers every hour of the window; keep those the open day has reported.
    simulator.faults.add("drop_buckets", starts=hour_starts(*range(last_hour + 1, 24)))
    [summary] = ingest(simulator, engine, now=OPEN_AT)
    assert summary.hours == list(range(last_hour + 1))
    assert not summary.closed
    with engine.connect() as conn:
        hours = conn.execute(
            text(
                "SELECT DISTINCT extract(hour FROM bucket_start AT TIME ZONE 'UTC')::int "
                "FROM openai_usage.completions_usage_hourly ORDER BY 1"
            )
        ).scalars()
        assert set(hours) <= set(range(last_hour + 1))
    [revision] = revisions(engine)
    assert revision["day_closed"] is False and revision["bucket_count"] == last_hour + 1


def test_the_open_day_must_be_contiguous_from_midnight(
    engine: Engine, simulator: SimulatedAdminAPI
) -> None:
    simulator.faults.add("drop_buckets", starts=hour_starts(3, *range(7, 24)), times=REASKS + 1)
    with pytest.raises(
        IncompleteDayError,
        match=r"2025-11-20: missing hourly buckets 03:00 \(got 6 of the 7 hours up to 06:00; "
        "the day is still open\\)",
    ):
        ingest(simulator, engine, now=OPEN_AT)
    assert table_rows(engine) == []


def _open_day_page(hours_with_usage: range) -> dict[str, Any]:
    """All 24 hourly buckets of DATE, as the API answers a window that runs past now: usage in
    `hours_with_usage`, the other buckets empty."""
    result = {
        "object": "organization.usage.completions.result",
        "project_id": "proj_a",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 10,
        "num_model_requests": 1,
    }
    return {
        "object": "page",
        "has_more": False,
        "next_page": None,
        "data": [
            {
                "object": "bucket",
                "start_time": start,
                "end_time": start + HOUR,
                "results": [result] if hour in hours_with_usage else [],
            }
            for hour, start in enumerate(hour_starts(*range(24)))
        ],
    }


@responses.activate
def test_the_open_day_takes_empty_buckets_for_hours_not_begun(engine: Engine) -> None:
    responses.get(BASE_URL + COMPLETIONS_USAGE_PATH, json=_open_day_page(range(7)))
    client = AdminAPIClient(BASE_URL, None)
    day = DATE + dt.timedelta(days=1)
    [summary] = ingest_days(client, engine, DATE, day, GROUP_BY, INFO, now=OPEN_AT)
    assert summary.row_count == 7 and not summary.closed
    assert summary.input_tokens == 700


@responses.activate
def test_the_open_day_refuses_usage_in_hours_not_begun(engine: Engine) -> None:
    responses.get(BASE_URL + COMPLETIONS_USAGE_PATH, json=_open_day_page(range(9)))
    client = AdminAPIClient(BASE_URL, None)
    day = DATE + dt.timedelta(days=1)
    with pytest.raises(
        PayloadError, match="usage bucket 07:00 reports usage for an hour that has not begun"
    ) as e:
        list(ingest_days(client, engine, DATE, day, GROUP_BY, INFO, now=OPEN_AT))
    assert not isinstance(e.value, IncompleteDayError)  # wrong, not short: not asked again
    assert len(responses.calls) == 1
    assert table_rows(engine) == []


# --------------------------------------------------------------------------- revisions


def materialize_from(org: SyntheticOrganization, database_url: str) -> dg.ExecuteInProcessResult:
    with SimulatedAdminAPI(org=org) as sim:
        return materialize(admin_for(sim), database_url)


def check_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == RELOAD_CHECK]
    return evaluation


SMALL = SyntheticOrganization(stream_count=24)
FULL = SyntheticOrganization()


def test_every_load_is_recorded_with_the_figures_it_replaced(
    engine: Engine, database_url: str
) -> None:
    small, full = org_tokens(SMALL), org_tokens(FULL)
    assert small["tokens"] < full["tokens"]  # late usage: the second answer has more

    first = materialize_from(SMALL, database_url)
    second = materialize_from(FULL, database_url)
    third = materialize_from(FULL, database_url)
    assert first.success and second.success and third.success

    rows = revisions(engine)
    assert [r["revision"] for r in rows] == [1, 2, 3]
    assert [r["dagster_run_id"] for r in rows] == [
        first.run_id,
        second.run_id,
        third.run_id,
    ]
    one, two, three = rows
    assert one["previous_row_count"] is None and one["previous_input_tokens"] is None
    assert (one["new_input_tokens"], one["new_output_tokens"]) == (small["input"], small["output"])
    assert (two["previous_input_tokens"], two["previous_output_tokens"]) == (
        small["input"],
        small["output"],
    )
    assert (two["new_input_tokens"], two["new_output_tokens"]) == (full["input"], full["output"])
    assert two["previous_row_count"] == one["new_row_count"] < two["new_row_count"]
    assert two["previous_num_model_requests"] == one["new_num_model_requests"]
    assert three["previous_row_count"] == three["new_row_count"] == two["new_row_count"]
    assert all(r["day_closed"] and r["bucket_count"] == 24 for r in rows)
    with engine.connect() as conn:
        load = conn.execute(
            text(
                "SELECT row_count, input_tokens, output_tokens, num_model_requests "
                "FROM openai_usage.usage_loads"
            )
        ).one()
        counted = conn.execute(
            text(
                "SELECT count(*), sum(input_tokens), sum(output_tokens), "
                "sum(num_model_requests) FROM openai_usage.completions_usage_hourly"
            )
        ).one()
    assert tuple(load) == tuple(counted)

    def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
        [report] = day_reports(result, "completions_usage_hourly")
        return {key: value.value for key, value in report.metadata.items()}

    assert metadata(first)["revision"] == 1 and "tokens_vs_previous_load" not in metadata(first)
    assert metadata(first)["tokens_vs_first_load"] == 0
    growth = full["tokens"] - small["tokens"]
    rows_growth = two["new_row_count"] - one["new_row_count"]
    assert {
        k: metadata(second)[k]
        for k in (
            "revision",
            "tokens_vs_previous_load",
            "tokens_vs_first_load",
            "rows_vs_previous_load",
            "rows_vs_first_load",
        )
    } == {
        "revision": 2,
        "tokens_vs_previous_load": growth,
        "tokens_vs_first_load": growth,
        "rows_vs_previous_load": rows_growth,
        "rows_vs_first_load": rows_growth,
    }
    assert metadata(third)["revision"] == 3
    assert metadata(third)["tokens_vs_previous_load"] == 0
    assert metadata(third)["tokens_vs_first_load"] == growth

    # Growth is what late usage looks like: the check passes.
    for result in (first, second, third):
        evaluation = check_evaluation(result)
        assert evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert check_evaluation(second).metadata["closed_days_reloaded"].value == 1
    assert check_evaluation(first).metadata["closed_days_reloaded"].value == 0

    # The BI views: per load, and the usage each reload brought in by days after the close.
    with engine.connect() as conn:
        view = conn.execute(
            text(
                "SELECT revision, token_change, token_change_vs_first, row_change, "
                "days_after_close FROM openai_usage.v_usage_day_revisions ORDER BY revision"
            )
        ).all()
        late = conn.execute(
            text(
                "SELECT reloads, days, tokens_added, tokens_lost, rows_added, "
                "pct_of_latest_tokens FROM openai_usage.v_usage_late_arrival"
            )
        ).all()
    today = dt.datetime.now(dt.UTC).date()
    closed_for = (today - DATE).days - 1  # days between the day's end and the loads, floored
    assert [tuple(v)[:4] for v in view] == [
        (1, None, 0, None),
        (2, growth, growth, rows_growth),
        (3, 0, growth, 0),
    ]
    assert {v.days_after_close for v in view} <= {closed_for, closed_for + 1}
    [row] = late
    assert (row.reloads, row.days, row.tokens_added, row.tokens_lost, row.rows_added) == (
        2,
        1,
        growth,
        0,
        rows_growth,
    )
    assert float(row.pct_of_latest_tokens) == pytest.approx(
        100 * growth / (2 * full["tokens"]), abs=1e-4
    )


def test_a_reload_that_loses_usage_fails_the_check_with_before_and_after(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, full = org_tokens(SMALL), org_tokens(FULL)
    drop = (full["tokens"] - small["tokens"]) / full["tokens"]
    assert 0.1 < drop < 0.9
    assert materialize_from(FULL, database_url).success

    monkeypatch.setenv("USAGE_REVISION_TOLERANCE", "0.9")  # a drop within tolerance passes
    within = materialize_from(SMALL, database_url)
    assert within.success and check_evaluation(within).passed
    assert materialize_from(FULL, database_url).success  # back to the full day

    monkeypatch.delenv("USAGE_REVISION_TOLERANCE")  # the default, 0.001
    lost = materialize_from(SMALL, database_url)
    assert lost.success  # a WARN check: the API's answer is kept, and flagged
    evaluation = check_evaluation(lost)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    assert metadata["tolerance"] == 0.001
    assert metadata["days_losing_usage"] == 1
    [loss] = metadata["losses"]
    assert loss["usage_date"] == DAY and loss["revision"] == 4
    assert (loss["tokens_before"], loss["tokens_after"]) == (full["tokens"], small["tokens"])
    assert loss["tokens_change"] == small["tokens"] - full["tokens"]
    assert loss["rows_before"] > loss["rows_after"]
    assert f"{full['tokens']:,}" in metadata["losses_table"]
    with engine.connect() as conn:
        lost_total = conn.execute(
            text("SELECT tokens_lost FROM openai_usage.v_usage_late_arrival")
        ).scalar()
    assert lost_total == 2 * (full["tokens"] - small["tokens"])


def test_the_check_covers_every_day_of_a_range_run(engine: Engine, database_url: str) -> None:
    tags = {
        "dagster/asset_partition_range_start": "2025-11-18",
        "dagster/asset_partition_range_end": "2025-11-20",
    }

    def run(org: SyntheticOrganization) -> dg.ExecuteInProcessResult:
        with SimulatedAdminAPI(org=org) as sim:
            return dg.materialize(
                [completions_usage_hourly],
                tags=tags,
                resources={
                    "openai_admin": admin_for(sim),
                    "usage_db": UsageDatabase(url=database_url),
                },
            )

    assert run(FULL).success
    result = run(SMALL)
    evaluation = check_evaluation(result)
    assert not evaluation.passed
    metadata = evaluation.metadata
    assert metadata["days_in_run"].value == metadata["closed_days_reloaded"].value == 3
    assert [loss["usage_date"] for loss in metadata["losses"].value] == [
        "2025-11-18",
        "2025-11-19",
        "2025-11-20",
    ]
    assert {
        r.metadata["revision"].value for r in day_reports(result, "completions_usage_hourly")
    } == {2}


def test_a_day_landed_before_the_totals_were_kept_is_compared_with_its_rows(
    engine: Engine, simulator: SimulatedAdminAPI
) -> None:
    """Days landed before migration 0005 have no totals in usage_loads: the reload sums the
    old rows inside its transaction, before the delete."""
    [landed] = ingest(simulator, engine)
    with engine.begin() as conn:  # what migration 0005 finds for a day landed earlier
        conn.execute(
            text(
                "UPDATE openai_usage.usage_loads SET input_tokens = NULL, output_tokens = NULL, "
                "num_model_requests = NULL"
            )
        )
        conn.execute(text("TRUNCATE openai_usage.usage_day_revisions"))
    [reloaded] = ingest(simulator, engine)
    [revision] = revisions(engine)
    assert revision["revision"] == 1
    assert (
        revision["previous_row_count"],
        revision["previous_input_tokens"],
        revision["previous_output_tokens"],
        revision["previous_num_model_requests"],
    ) == (landed.row_count, landed.input_tokens, landed.output_tokens, landed.num_model_requests)
    assert reloaded.revision is not None and reloaded.revision.previous is not None
    assert reloaded.revision.first == reloaded.revision.previous  # the first load known


@pytest.mark.parametrize("value", ["-0.1", "1", "1.5", "lots", "nan"])
def test_revision_tolerance_is_validated(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("USAGE_REVISION_TOLERANCE", value)
    with pytest.raises(ConfigurationError, match=r"USAGE_REVISION_TOLERANCE.*between 0 and 1"):
        revision_tolerance()


def test_a_bad_revision_tolerance_fails_the_run_before_any_request(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    monkeypatch.setenv("USAGE_REVISION_TOLERANCE", "5%")
    result = materialize(admin_for(simulator), database_url)
    assert not result.success
    assert "USAGE_REVISION_TOLERANCE='5%'" in failure_message(result)
    assert simulator.usage_requests() == 0


# --------------------------------------------------------------------------- billed costs


def test_costs_of_a_closed_day_with_no_bucket_are_kept(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    assert materialize_costs(admin_for(simulator), database_url).success
    billed = cost_rows(engine)
    assert billed

    simulator.faults.add("drop_buckets", path="/organization/costs", times=COSTS_REASKS + 1)
    result = materialize_costs(admin_for(simulator), database_url)
    assert not result.success
    assert f"costs: no bucket for closed day(s) {DAY}; their stored billed costs are kept" in (
        failure_message(result)
    )
    assert cost_rows(engine) == billed


def test_costs_short_answer_is_asked_again(
    engine: Engine, simulator: SimulatedAdminAPI, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.faults.add("drop_buckets", path="/organization/costs", starts=[DAY_START], times=1)
    client = client_for(simulator)
    first = DATE - dt.timedelta(days=1)
    with caplog.at_level(logging.WARNING, logger="usage_assets.admin_api"):
        days = fetch_cost_days(client, first, DATE + dt.timedelta(days=1), now=LATER)
    assert [day.day for day in days] == [first, DATE]
    assert client.request_count == 2
    assert any(f"no bucket for closed day(s) {DAY}" in r.getMessage() for r in caplog.records)


def test_costs_of_the_open_day_without_a_bucket_are_not_written(
    simulator: SimulatedAdminAPI,
) -> None:
    simulator.faults.add("drop_buckets", path="/organization/costs", starts=[DAY_START], times=1)
    client = client_for(simulator)
    first = DATE - dt.timedelta(days=1)
    days = fetch_cost_days(client, first, DATE + dt.timedelta(days=1), now=OPEN_AT)
    assert [day.day for day in days] == [first]
    assert client.request_count == 1
