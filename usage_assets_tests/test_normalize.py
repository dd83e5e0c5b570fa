"""From API result objects to table rows: types, order, refusal of drifted payloads, day totals.

Expected values come from the result objects themselves, from hand-written payloads, or from the
synthetic organization's ground truth; never from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from usage_assets.admin_api.rows import DaySummary, UsageRow, normalize_result, split_by_day
from usage_assets.admin_api.transport import AdminAPIClient, RetrySettings
from usage_assets.admin_api.usage import (
    GROUP_BY_FIELDS,
    CompletionsUsageQuery,
    UsageBucket,
    iter_usage_buckets,
)
from usage_assets.errors import PayloadError
from usage_assets.simulator.organization import LEGACY_METRICS, SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.models import (
    DIMENSIONS,
    METRICS,
    OPTIONAL_METRICS,
    REQUIRED_METRICS,
    USAGE_COPY_COLUMNS,
)
from usage_assets.warehouse.usage_days import LoadInfo, replace_day

from .results import as_served, kept, whole_result

HOUR = 3600
DAY_SECONDS = 86400
UTC = dt.UTC
DAY_DATE = dt.date(2025, 6, 2)
DAY = int(dt.datetime(2025, 6, 2, tzinfo=UTC).timestamp())
BUCKET_START = DAY + 10 * HOUR
BUCKET = UsageBucket(BUCKET_START, BUCKET_START + HOUR, [])
FAST_RETRY = RetrySettings(initial_backoff_seconds=0.001, max_backoff_seconds=0.01)


def sample_result(**changes: Any) -> dict[str, Any]:
    """A complete result as the API reference documents it, every number distinct."""
    result: dict[str, Any] = {
        "object": "organization.usage.completions.result",
        "project_id": "proj_abc",
        "user_id": "user-abc",
        "api_key_id": "key_abc",
        "model": "gpt-4o-mini-2024-07-18",
        "batch": False,
        "service_tier": "default",
        "api_source": "unlabeled",
        "input_tokens": 5000,
        "output_tokens": 1000,
        "num_model_requests": 5,
        "input_cached_tokens": 4000,
        "input_cache_write_tokens": 150,  # the total: 30-minute and 12-hour writes
        "input_cache_write_30m_tokens": 100,
        "input_cache_write_12h_tokens": 50,
        "input_uncached_tokens": 850,
        "input_text_tokens": 500,
        "input_audio_tokens": 300,
        "input_image_tokens": 50,
        "input_cached_text_tokens": 3900,
        "input_cached_audio_tokens": 70,
        "input_cached_image_tokens": 30,
        "output_text_tokens": 790,
        "output_audio_tokens": 200,
        "output_image_tokens": 10,
    }
    result.update(changes)
    return result


def as_record(row: tuple[Any, ...]) -> dict[str, Any]:
    assert len(row) == len(USAGE_COPY_COLUMNS)
    return dict(zip(USAGE_COPY_COLUMNS, row, strict=True))


def org_buckets(
    org: SyntheticOrganization, start: int, hours: int, group_by: tuple[str, ...] = DIMENSIONS
) -> list[UsageBucket]:
    return [
        UsageBucket(h, h + HOUR, org.usage_results(h, h + HOUR, group_by=group_by))
        for h in range(start, start + hours * HOUR, HOUR)
    ]


def hour_bucket(start: int, *results: Any) -> UsageBucket:
    return UsageBucket(start, start + HOUR, list(results))


@pytest.fixture(scope="module")
def org() -> SyntheticOrganization:
    return SyntheticOrganization()


@pytest.fixture(scope="module")
def _shared_sim() -> Iterator[SimulatedAdminAPI]:
    with SimulatedAdminAPI() as server:
        yield server


@pytest.fixture
def sim(_shared_sim: SimulatedAdminAPI) -> SimulatedAdminAPI:
    _shared_sim.faults.clear()
    _shared_sim.requests.clear()
    return _shared_sim


# ---------------------------------------------------------------------------- normalize_result


def test_valid_result_becomes_a_row_in_copy_column_order() -> None:
    result = sample_result()
    record = as_record(normalize_result(result, BUCKET, 0))
    assert list(record) == list(USAGE_COPY_COLUMNS)
    assert record["bucket_start"] == dt.datetime(2025, 6, 2, 10, tzinfo=UTC)
    assert record["bucket_end"] == dt.datetime(2025, 6, 2, 11, tzinfo=UTC)
    for column in ("bucket_start", "bucket_end"):
        assert record[column].utcoffset() == dt.timedelta(0)
    for name in (*DIMENSIONS, *METRICS):
        assert record[name] == result[name], name
        assert type(record[name]) is type(result[name]), name
    assert record["result"] is None  # every field has its column
    assert whole_result(record) == result


def test_every_simulated_result_round_trips(org: SyntheticOrganization) -> None:
    (bucket,) = org_buckets(org, DAY + 15 * HOUR, 1)
    assert len(bucket.results) > 3
    for index, result in enumerate(bucket.results):
        record = as_record(normalize_result(result, bucket, index))
        for name in (*DIMENSIONS, *METRICS):
            assert record[name] == result.get(name), name
        assert whole_result(record) == as_served(result)


def test_unknown_fields_are_kept_in_the_json_column() -> None:
    result = sample_result(
        input_video_tokens=5,
        new_breakdown={"reasoning": [1, 2]},
        note="café ünïcode 日本",
    )
    record = as_record(normalize_result(result, BUCKET, 0))
    assert kept(record) == {
        "input_video_tokens": 5,
        "new_breakdown": {"reasoning": [1, 2]},
        "note": "café ünïcode 日本",
    }
    assert whole_result(record) == result
    assert "input_video_tokens" not in record


def test_extra_fields_from_the_simulator_survive() -> None:
    org = SyntheticOrganization(extra_result_fields={"input_video_tokens": 5})
    (bucket,) = org_buckets(org, DAY + 12 * HOUR, 1)
    assert bucket.results
    rows = list(DaySummary(DAY_DATE).rows([bucket]))
    assert rows
    for row in rows:
        assert json.loads(as_record(row)["result"])["input_video_tokens"] == 5


def test_absent_or_null_optional_metrics_become_none() -> None:
    required_only = {k: v for k, v in sample_result().items() if k not in OPTIONAL_METRICS}
    record = as_record(normalize_result(required_only, BUCKET, 0))
    for name in OPTIONAL_METRICS:
        assert record[name] is None, name
    for name in REQUIRED_METRICS:
        assert record[name] == required_only[name]

    nulls = sample_result(**dict.fromkeys(OPTIONAL_METRICS))
    record = as_record(normalize_result(nulls, BUCKET, 0))
    assert all(record[name] is None for name in OPTIONAL_METRICS)
    assert record["result"] is None
    assert whole_result(record) == nulls


def test_cache_write_total_and_parts_land_in_their_columns() -> None:
    record = as_record(normalize_result(sample_result(), BUCKET, 0))
    assert (
        record["input_cache_write_tokens"],
        record["input_cache_write_30m_tokens"],
        record["input_cache_write_12h_tokens"],
    ) == (150, 100, 50)
    # Older responses have the total and the 12-hour part only.
    older = sample_result()
    del older["input_cache_write_30m_tokens"]
    record = as_record(normalize_result(older, BUCKET, 0))
    assert record["input_cache_write_30m_tokens"] is None
    assert (record["input_cache_write_tokens"], record["input_cache_write_12h_tokens"]) == (150, 50)


def test_zero_is_not_none() -> None:
    record = as_record(
        normalize_result(sample_result(input_audio_tokens=0, output_tokens=0), BUCKET, 0)
    )
    assert record["input_audio_tokens"] == 0
    assert record["output_tokens"] == 0


def test_legacy_simulated_results_have_only_legacy_metrics(org: SyntheticOrganization) -> None:
    start = int(dt.datetime(2024, 12, 30, 15, tzinfo=UTC).timestamp())
    (bucket,) = org_buckets(org, start, 1)
    assert bucket.results
    for index, result in enumerate(bucket.results):
        record = as_record(normalize_result(result, bucket, index))
        for name in METRICS:
            if name in LEGACY_METRICS:
                assert record[name] == result[name], name
            else:
                assert record[name] is None, name


def test_null_dimensions_are_allowed() -> None:
    result = sample_result(**dict.fromkeys(DIMENSIONS))
    record = as_record(normalize_result(result, BUCKET, 0))
    assert all(record[d] is None for d in DIMENSIONS)
    record = as_record(normalize_result(sample_result(batch=True), BUCKET, 0))
    assert record["batch"] is True


def _without(name: str) -> dict[str, Any]:
    result = sample_result()
    del result[name]
    return result


@pytest.mark.parametrize(
    ("result", "field"),
    [
        *[(_without(name), name) for name in REQUIRED_METRICS],
        *[(sample_result(**{name: None}), name) for name in REQUIRED_METRICS],
        (sample_result(input_tokens="5000"), "input_tokens"),
        (sample_result(input_cached_tokens="4000"), "input_cached_tokens"),
        (sample_result(output_tokens=1000.0), "output_tokens"),
        (sample_result(num_model_requests=-1), "num_model_requests"),
        (sample_result(input_text_tokens=-5), "input_text_tokens"),
        (sample_result(input_tokens=True), "input_tokens"),
        (sample_result(output_image_tokens=False), "output_image_tokens"),
        (sample_result(batch="true"), "batch"),
        (sample_result(batch=1), "batch"),
        (sample_result(model=5), "model"),
        (sample_result(project_id=123), "project_id"),
        (sample_result(service_tier=["default"]), "service_tier"),
        (sample_result(object="organization.usage.embeddings.result"), "object"),
    ],
)
def test_drifted_results_are_refused_naming_the_field(result: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        normalize_result(result, BUCKET, 3)
    message = str(excinfo.value)
    assert field in message
    assert "2025-06-02T10:00:00+00:00" in message
    assert "#3" in message


@pytest.mark.parametrize("result", [[], None, "result", 5, [sample_result()]])
def test_result_that_is_not_an_object_is_refused(result: Any) -> None:
    with pytest.raises(PayloadError, match="expected an object"):
        normalize_result(result, BUCKET, 0)


# ---------------------------------------------------------------------------- DaySummary


def summarize(day: dt.date, *buckets: UsageBucket) -> tuple[DaySummary, list[UsageRow]]:
    summary = DaySummary(day)
    return summary, list(summary.rows(buckets))


def write_day(
    engine: Engine, *buckets: UsageBucket, day: dt.date = DAY_DATE
) -> tuple[DaySummary, int]:
    summary = DaySummary(day)
    info = LoadInfo(group_by=DIMENSIONS, simulated=True, source_url="t", dagster_run_id=None)
    return summary, replace_day(engine, summary, summary.rows(buckets), info)


def stored_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return list(
            conn.execute(text("SELECT * FROM openai_usage.completions_usage_hourly ORDER BY 1, 3"))
        )


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (DAY - HOUR, DAY),  # the previous day's last hour
        (DAY + DAY_SECONDS, DAY + DAY_SECONDS + HOUR),  # the next day's first hour
        (DAY + 23 * HOUR, DAY + 25 * HOUR),  # runs past midnight
        (DAY + 12 * HOUR, DAY + 12 * HOUR + DAY_SECONDS),  # a day wide, not aligned
        (DAY - 30 * DAY_SECONDS, DAY - 30 * DAY_SECONDS + HOUR),
    ],
)
def test_day_summary_rejects_buckets_outside_the_day(start: int, end: int) -> None:
    summary = DaySummary(DAY_DATE)
    rows = summary.rows([UsageBucket(start, end, [sample_result()])])
    with pytest.raises(PayloadError, match=str(DAY_DATE)):
        next(rows)
    assert summary.row_count == 0
    assert summary.input_tokens == 0


@pytest.mark.parametrize(
    ("start", "end"),
    [(DAY, DAY + HOUR), (DAY + 23 * HOUR, DAY + DAY_SECONDS), (DAY, DAY + DAY_SECONDS)],
)
def test_day_summary_accepts_buckets_at_the_edges_of_the_day(start: int, end: int) -> None:
    summary, rows = summarize(DAY_DATE, UsageBucket(start, end, [sample_result()]))
    assert len(rows) == summary.row_count == 1
    assert summary.bucket_count == 1


def test_a_bucket_split_across_pages_counts_once() -> None:
    first = sample_result(project_id="p1")
    second = sample_result(project_id="p2")
    summary, rows = summarize(
        DAY_DATE, hour_bucket(DAY, first), hour_bucket(DAY, second), hour_bucket(DAY + HOUR)
    )
    assert [as_record(r)["project_id"] for r in rows] == ["p1", "p2"]
    assert summary.bucket_count == 2


@pytest.mark.parametrize(
    "dims",
    [
        {},  # a fully specified group
        dict.fromkeys(DIMENSIONS),  # an ungrouped result: every dimension null
        {"project_id": None, "user_id": None, "api_key_id": None},  # default project, no key
        {"batch": None, "service_tier": None, "api_source": None},
    ],
)
def test_a_group_listed_twice_is_refused_and_the_day_kept(
    engine: Engine, dims: dict[str, Any]
) -> None:
    write_day(engine, hour_bucket(DAY, sample_result(project_id="before")))
    before = stored_rows(engine)
    first = sample_result(**dims)
    second = sample_result(**dims, input_tokens=1, output_tokens=2, num_model_requests=1)
    with pytest.raises(PayloadError, match="twice") as caught:
        write_day(
            engine, hour_bucket(DAY, sample_result()), hour_bucket(BUCKET_START, first, second)
        )
    assert str(DAY_DATE) in str(caught.value)
    assert stored_rows(engine) == before


def test_a_group_repeated_by_a_second_copy_of_the_bucket_is_refused(engine: Engine) -> None:
    repeated = sample_result(project_id=None)
    with pytest.raises(PayloadError, match="twice"):
        write_day(engine, hour_bucket(BUCKET_START, repeated), hour_bucket(BUCKET_START, repeated))
    assert stored_rows(engine) == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"batch": True}, {"batch": False}),
        ({"batch": None}, {"batch": False}),
        ({"project_id": None}, {"project_id": "proj_abc"}),
        ({"user_id": None}, {"user_id": ""}),
        ({"api_source": "agents_api"}, {"api_source": "unlabeled"}),
        ({"service_tier": "flex"}, {"service_tier": "default"}),
    ],
)
def test_groups_that_differ_are_both_kept(
    engine: Engine, a: dict[str, Any], b: dict[str, Any]
) -> None:
    _, written = write_day(
        engine, hour_bucket(BUCKET_START, sample_result(**a), sample_result(**b))
    )
    assert written == len(stored_rows(engine)) == 2


def test_same_group_in_different_hours_is_not_a_duplicate(engine: Engine) -> None:
    ungrouped = sample_result(**dict.fromkeys(DIMENSIONS))
    summary, written = write_day(
        engine, *(hour_bucket(DAY + hour * HOUR, ungrouped) for hour in range(3))
    )
    assert written == len(stored_rows(engine)) == 3
    assert summary.bucket_count == 3


def test_day_summary_totals_equal_sums_over_rows(org: SyntheticOrganization) -> None:
    buckets = org_buckets(org, DAY, 24)
    expected_rows = sum(len(b.results) for b in buckets)
    day, rows = summarize(DAY_DATE, *buckets)
    records = [as_record(row) for row in rows]

    assert day.bucket_count == 24
    assert len(records) == day.row_count == expected_rows
    assert day.input_tokens == sum(r["input_tokens"] for r in records)
    assert day.output_tokens == sum(r["output_tokens"] for r in records)
    assert day.num_model_requests == sum(r["num_model_requests"] for r in records)
    by_project: dict[str | None, int] = {}
    for r in records:
        by_project[r["project_id"]] = (
            by_project.get(r["project_id"], 0) + r["input_tokens"] + r["output_tokens"]
        )
    assert day.tokens_by_project == by_project

    # And against the organization's ground truth, computed from the raw hourly usage.
    truth = org.totals_by_project(DAY, DAY + DAY_SECONDS)
    assert None in truth
    assert day.tokens_by_project == {
        p: t["input_tokens"] + t["output_tokens"] for p, t in truth.items()
    }
    assert day.num_model_requests == sum(t["num_model_requests"] for t in truth.values())
    assert day.input_tokens == sum(t["input_tokens"] for t in truth.values())


def test_hand_written_totals() -> None:
    day, rows = summarize(
        DAY_DATE,
        hour_bucket(
            DAY,
            sample_result(project_id="p1", input_tokens=10, output_tokens=1, num_model_requests=1),
            sample_result(project_id=None, input_tokens=20, output_tokens=2, num_model_requests=2),
        ),
        hour_bucket(DAY + HOUR),  # a quiet hour
        hour_bucket(
            DAY + 2 * HOUR,
            sample_result(project_id="p1", input_tokens=40, output_tokens=4, num_model_requests=4),
        ),
    )
    assert (day.input_tokens, day.output_tokens, day.num_model_requests) == (70, 7, 7)
    assert day.tokens_by_project == {"p1": 55, None: 22}
    assert day.bucket_count == 3
    assert len(rows) == day.row_count == 3


def test_quiet_hour_counts_as_a_bucket_without_rows(org: SyntheticOrganization) -> None:
    quiet = next(h for h in range(DAY, DAY + 7 * DAY_SECONDS, HOUR) if not org.hour_results(h))
    day, rows = summarize(
        dt.datetime.fromtimestamp(quiet, UTC).date(),
        UsageBucket(
            quiet, quiet + HOUR, org.usage_results(quiet, quiet + HOUR, group_by=DIMENSIONS)
        ),
    )
    assert day.bucket_count == 1
    assert rows == []
    assert day.tokens_by_project == {}


# ---------------------------------------------------------------------------- split_by_day


def split(buckets: Iterable[UsageBucket]) -> list[tuple[DaySummary, list[UsageRow]]]:
    return [(summary, list(rows)) for summary, rows in split_by_day(buckets)]


def test_split_by_day_splits_two_days_in_order(org: SyntheticOrganization) -> None:
    buckets = org_buckets(org, DAY, 48)
    per_day = [
        sum(len(b.results) for b in buckets if start <= b.start_time < start + DAY_SECONDS)
        for start in (DAY, DAY + DAY_SECONDS)
    ]
    days = split(buckets)
    assert [d.day for d, _ in days] == [DAY_DATE, DAY_DATE + dt.timedelta(days=1)]
    for offset, (day, rows) in enumerate(days):
        start = DAY + offset * DAY_SECONDS
        assert day.bucket_count == 24
        assert len(rows) == day.row_count == per_day[offset]
        for row in rows:
            assert as_record(row)["bucket_start"].date() == day.day
        truth = org.totals_by_project(start, start + DAY_SECONDS)
        assert day.tokens_by_project == {
            p: t["input_tokens"] + t["output_tokens"] for p, t in truth.items()
        }


def test_split_by_day_streams_a_day_without_reading_ahead(org: SyntheticOrganization) -> None:
    buckets = org_buckets(org, DAY, 30)
    consumed = 0

    def stream() -> Iterator[UsageBucket]:
        nonlocal consumed
        for bucket in buckets:
            consumed += 1
            yield bucket

    days = split_by_day(stream())
    first, rows = next(days)
    assert first.day == DAY_DATE
    next(rows)
    assert consumed == 1  # the first row needs only the first bucket
    list(rows)
    assert consumed == 25  # the day ends where the next begins
    assert first.bucket_count == 24


def test_split_by_day_across_the_breakdown_boundary() -> None:
    org = SyntheticOrganization()
    start = int(dt.datetime(2024, 12, 31, tzinfo=UTC).timestamp())
    (old, old_rows), (new, new_rows) = split(org_buckets(org, start, 48))
    assert old.day == dt.date(2024, 12, 31) and new.day == dt.date(2025, 1, 1)
    assert old_rows and new_rows
    assert all(as_record(r)["input_text_tokens"] is None for r in old_rows)
    assert all(as_record(r)["input_text_tokens"] is not None for r in new_rows)


def test_split_by_day_rejects_buckets_going_back_in_time() -> None:
    day1 = hour_bucket(DAY + 5 * HOUR, sample_result())
    day2 = hour_bucket(DAY + DAY_SECONDS + 5 * HOUR, sample_result())
    with pytest.raises(PayloadError, match="back in time"):
        split([day2, hour_bucket(DAY + 5 * HOUR, sample_result())])

    days = split_by_day([day1, day2, hour_bucket(DAY + 6 * HOUR, sample_result())])
    summary, rows = next(days)
    assert summary.day == DAY_DATE
    assert len(list(rows)) == 1
    with pytest.raises(PayloadError, match="back in time"):
        _, rows = next(days)
        list(rows)


def test_split_by_day_of_nothing_is_nothing() -> None:
    assert list(split_by_day([])) == []


# ---------------------------------------------------------------------------- end to end


def test_fetched_days_match_ground_truth(
    org: SyntheticOrganization, sim: SimulatedAdminAPI
) -> None:
    client = AdminAPIClient(sim.base_url, "sk-admin-test", retry=FAST_RETRY)
    query = CompletionsUsageQuery(
        start_time=DAY,
        end_time=DAY + 2 * DAY_SECONDS,
        bucket_width="1h",
        group_by=GROUP_BY_FIELDS,
        limit=24,
    )
    days = [summary for summary, _ in split(iter_usage_buckets(client, query))]
    assert [d.day for d in days] == [DAY_DATE, DAY_DATE + dt.timedelta(days=1)]
    for offset, day in enumerate(days):
        start = DAY + offset * DAY_SECONDS
        truth = org.totals_by_project(start, start + DAY_SECONDS)
        assert day.tokens_by_project == {
            p: t["input_tokens"] + t["output_tokens"] for p, t in truth.items()
        }
        assert day.num_model_requests == sum(t["num_model_requests"] for t in truth.values())
        assert day.bucket_count == 24
    assert sim.usage_requests() == 2


def test_drifted_payload_from_the_api_is_refused(sim: SimulatedAdminAPI) -> None:
    client = AdminAPIClient(sim.base_url, "sk-admin-test", retry=FAST_RETRY)
    query = CompletionsUsageQuery(
        start_time=DAY + 10 * HOUR,
        end_time=DAY + 12 * HOUR,
        bucket_width="1h",
        group_by=GROUP_BY_FIELDS,
    )
    sim.faults.add("drift")
    with pytest.raises(PayloadError, match="input_tokens"):
        split(iter_usage_buckets(client, query))
    # The same query without the fault is fine.
    ((day, rows),) = split(iter_usage_buckets(client, query))
    assert rows and day.row_count == len(rows)
