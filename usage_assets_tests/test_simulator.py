"""The synthetic organization and the simulated Admin API, checked over real loopback HTTP.

Expectations are computed independently (ungrouped totals vs sums of grouped results, the
organization's ground truth vs what the real client fetched, one paging vs another), never
copied from the implementation.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import requests

from usage_assets.admin_api.transport import AdminAPIClient, RetrySettings
from usage_assets.admin_api.usage import (
    GROUP_BY_FIELDS,
    CompletionsUsageQuery,
    UsageBucket,
    iter_usage,
)
from usage_assets.errors import AdminAPIError, PayloadError
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.models import DIMENSIONS, METRICS, OPTIONAL_METRICS, REQUIRED_METRICS

HOUR = 3600
DAY_SECONDS = 86400


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


#: A day with the full breakdown (after the default `breakdown_since`).
DAY = utc(2025, 6, 2)
#: A day of older data, before the default `breakdown_since` (2025-01-01).
LEGACY_DAY = utc(2024, 12, 30)
#: A day after the default `cache_write_30m_since` (2025-09-01): the 30-minute field is there.
SPLIT_DAY = utc(2025, 11, 20)
#: Results after `breakdown_since` but before `cache_write_30m_since` lack only this field.
CACHE_WRITE_30M = "input_cache_write_30m_tokens"
COMPLETIONS = "/organization/usage/completions"
FAST_RETRY = RetrySettings(initial_backoff_seconds=0.001, max_backoff_seconds=0.01)


# ---------------------------------------------------------------------------- helpers


def day_results(org: SyntheticOrganization, start: int, days: int = 1) -> list[dict[str, Any]]:
    return [r for h in range(start, start + days * DAY_SECONDS, HOUR) for r in org.hour_results(h)]


def group_key(result: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(result[d] for d in DIMENSIONS)


def root_url(sim: SimulatedAdminAPI) -> str:
    return sim.base_url.removesuffix("/v1")


def get_usage(
    sim: SimulatedAdminAPI, params: Sequence[tuple[str, Any]] | dict[str, Any], **kw: Any
) -> requests.Response:
    return requests.get(sim.base_url + COMPLETIONS, params=params, timeout=10, **kw)


def hourly(start: int, hours: int, *extra: tuple[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("start_time", start),
        ("end_time", start + hours * HOUR),
        ("bucket_width", "1h"),
        *extra,
    ]


def all_group_by() -> list[tuple[str, str]]:
    return [("group_by", name) for name in GROUP_BY_FIELDS]


def fetch_all_pages(sim: SimulatedAdminAPI, params: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Follow next_page with plain requests; returns every page body."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        response = get_usage(sim, params + ([("page", cursor)] if cursor else []))
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if not page["has_more"]:
            return pages
        assert page["next_page"] != cursor, "simulator repeated a cursor without a fault"
        cursor = page["next_page"]
        assert len(pages) < 500


def merged_buckets(pages: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    merged: dict[int, list[dict[str, Any]]] = {}
    for page in pages:
        for bucket in page["data"]:
            merged.setdefault(bucket["start_time"], []).extend(bucket["results"])
    return merged


def client_for(sim: SimulatedAdminAPI, key: str | None = "sk-admin-test") -> AdminAPIClient:
    return AdminAPIClient(sim.base_url, key, retry=FAST_RETRY)


def day_query(start: int = DAY, hours: int = 24, **kw: Any) -> CompletionsUsageQuery:
    return CompletionsUsageQuery(
        start_time=start,
        end_time=start + hours * HOUR,
        bucket_width="1h",
        group_by=GROUP_BY_FIELDS,
        **kw,
    )


def assert_openai_error(response: requests.Response, status: int, param: str | None) -> None:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] == param


@pytest.fixture
def org() -> SyntheticOrganization:
    return SyntheticOrganization()


def _reset(server: SimulatedAdminAPI) -> SimulatedAdminAPI:
    server.faults.clear()
    server.requests.clear()
    return server


# One server per module (stopping one takes up to half a second); each test starts it with no
# queued faults and an empty request log.
@pytest.fixture(scope="module")
def _shared_sim() -> Iterator[SimulatedAdminAPI]:
    with SimulatedAdminAPI() as server:
        yield server


@pytest.fixture(scope="module")
def _shared_split_sim() -> Iterator[SimulatedAdminAPI]:
    with SimulatedAdminAPI(max_results_per_page=4) as server:
        yield server


@pytest.fixture
def sim(_shared_sim: SimulatedAdminAPI) -> SimulatedAdminAPI:
    """The default simulated Admin API on loopback."""
    return _reset(_shared_sim)


@pytest.fixture
def split_sim(_shared_split_sim: SimulatedAdminAPI) -> SimulatedAdminAPI:
    """A simulator that continues a bucket on the next page after 4 results."""
    return _reset(_shared_split_sim)


# ---------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_organization_and_usage() -> None:
    a, b = SyntheticOrganization(seed=7), SyntheticOrganization(seed=7)
    assert a.projects == b.projects
    assert a.users == b.users
    assert a.api_keys == b.api_keys
    assert a.streams == b.streams
    # Different query order and cache state: a forward, b backward over > the cache size.
    hours = list(range(DAY, DAY + 3 * DAY_SECONDS, HOUR))
    forward = {h: a.hour_results(h) for h in hours}
    backward = {h: b.hour_results(h) for h in reversed(hours)}
    assert forward == backward
    # Evicted from a's cache and recomputed: still the same numbers.
    again = {h: a.hour_results(h) for h in hours}
    assert again == forward
    assert a.usage_results(DAY, DAY + DAY_SECONDS, group_by=["model"]) == b.usage_results(
        DAY, DAY + DAY_SECONDS, group_by=["model"]
    )


def test_different_seed_differs() -> None:
    a, b = SyntheticOrganization(seed=7), SyntheticOrganization(seed=8)
    assert {p.id for p in a.projects}.isdisjoint({p.id for p in b.projects})
    assert day_results(a, DAY) != day_results(b, DAY)
    assert a.totals_by_project(DAY, DAY + DAY_SECONDS) != b.totals_by_project(
        DAY, DAY + DAY_SECONDS
    )


def test_usage_is_the_same_in_another_process(org: SyntheticOrganization) -> None:
    """A pure function of (seed, hour): no dependence on hash randomization or process state."""
    code = (
        "import json, sys\n"
        "from usage_assets.simulator.organization import SyntheticOrganization\n"
        "org = SyntheticOrganization()\n"
        f"print(json.dumps([org.hour_results(h) for h in range({DAY + 10 * HOUR}, "
        f"{DAY + 13 * HOUR}, 3600)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    here = [org.hour_results(h) for h in range(DAY + 10 * HOUR, DAY + 13 * HOUR, HOUR)]
    assert json.loads(out) == here
    assert any(here)


# ---------------------------------------------------------------------------- realism


def test_a_day_has_null_dimensions_batch_and_tiers(org: SyntheticOrganization) -> None:
    results = day_results(org, DAY)
    assert results
    assert any(r["project_id"] is None for r in results), "no default-project usage"
    assert any(r["user_id"] is None for r in results), "no service-account usage"
    assert any(r["api_key_id"] is None for r in results), "no keyless (playground) usage"
    assert any(r["project_id"] is not None for r in results)
    assert {r["batch"] for r in results} == {True, False}
    assert len({r["service_tier"] for r in results}) >= 3
    assert {r["api_source"] for r in results} <= {"agents_api", "unlabeled"}
    # Each hour lists a group at most once.
    for hour in range(DAY, DAY + DAY_SECONDS, HOUR):
        keys = [group_key(r) for r in org.hour_results(hour)]
        assert len(keys) == len(set(keys))


def test_models_include_dated_snapshots_and_fine_tunes(org: SyntheticOrganization) -> None:
    models = {r["model"] for r in day_results(org, DAY, days=3)}
    assert any(re.search(r"-\d{4}-\d{2}-\d{2}$", m) for m in models), models
    assert any(m.startswith("ft:") for m in models), models


def test_no_usage_of_a_model_before_its_release() -> None:
    org = SyntheticOrganization()
    released = {s.model.name: s.model.released for s in org.streams}
    assert any(d > dt.date(2024, 6, 1) for d in released.values())
    start = utc(2024, 6, 1)
    seen = set()
    for hour in range(start, start + 2 * DAY_SECONDS, HOUR):
        day = dt.datetime.fromtimestamp(hour, dt.UTC).date()
        for r in org.hour_results(hour):
            assert released[r["model"]] <= day, r["model"]
            seen.add(r["model"])
    assert seen


def test_quiet_hours_have_no_results(org: SyntheticOrganization) -> None:
    hours = range(DAY, DAY + 7 * DAY_SECONDS, HOUR)
    quiet = [h for h in hours if org.hour_results(h) == []]
    assert quiet, "no quiet hour in a week"
    assert len(quiet) < len(hours) / 2
    assert org.usage_results(quiet[0], quiet[0] + HOUR, group_by=[]) == []


def test_quiet_hour_comes_back_as_an_empty_bucket(
    org: SyntheticOrganization, sim: SimulatedAdminAPI
) -> None:
    quiet = next(h for h in range(DAY, DAY + 7 * DAY_SECONDS, HOUR) if not org.hour_results(h))
    response = get_usage(sim, hourly(quiet - HOUR, 3))
    assert response.status_code == 200
    buckets = {b["start_time"]: b for b in response.json()["data"]}
    assert sorted(buckets) == [quiet - HOUR, quiet, quiet + HOUR]
    assert buckets[quiet]["results"] == []
    assert buckets[quiet]["end_time"] == quiet + HOUR


def test_legacy_data_lacks_breakdown_fields(org: SyntheticOrganization) -> None:
    old = day_results(org, LEGACY_DAY)
    new = day_results(org, DAY)
    assert old and new
    for r in old:
        assert "input_cache_write_tokens" not in r
        assert "input_text_tokens" not in r
        assert set(REQUIRED_METRICS) <= r.keys()
    for r in new:
        assert set(METRICS) - {CACHE_WRITE_30M} <= r.keys()
        assert CACHE_WRITE_30M not in r  # the cache-write total and its 12h part only
    split = day_results(org, SPLIT_DAY)
    assert split and all(set(METRICS) <= r.keys() for r in split)


def test_breakdown_since_is_configurable_and_switches_at_midnight() -> None:
    org = SyntheticOrganization(
        breakdown_since=dt.date(2025, 6, 2), cache_write_30m_since=dt.date(2025, 6, 2)
    )
    before = [r for h in range(DAY - 3 * HOUR, DAY, HOUR) for r in org.hour_results(h)]
    after = [r for h in range(DAY, DAY + 3 * HOUR, HOUR) for r in org.hour_results(h)]
    assert before and after
    assert all("input_text_tokens" not in r for r in before)
    assert all(set(OPTIONAL_METRICS) <= r.keys() for r in after)


def test_cache_write_30m_since_is_configurable_and_switches_at_midnight() -> None:
    org = SyntheticOrganization(cache_write_30m_since=dt.date(2025, 6, 3))
    before = day_results(org, DAY)
    after = day_results(org, DAY + DAY_SECONDS)
    assert before and after
    assert all(CACHE_WRITE_30M not in r and "input_cache_write_tokens" in r for r in before)
    assert all(CACHE_WRITE_30M in r for r in after)
    # The same usage either way: the field is left out, the total still includes it.
    same_usage = SyntheticOrganization(cache_write_30m_since=dt.date(2025, 6, 2))
    for older, newer in zip(before, day_results(same_usage, DAY), strict=True):
        assert older == {k: v for k, v in newer.items() if k != CACHE_WRITE_30M}


def test_legacy_day_over_http_lacks_breakdown_fields(sim: SimulatedAdminAPI) -> None:
    response = get_usage(
        sim,
        [("start_time", LEGACY_DAY), ("end_time", LEGACY_DAY + DAY_SECONDS), *all_group_by()],
    )
    assert response.status_code == 200
    (bucket,) = response.json()["data"]
    assert bucket["results"]
    for r in bucket["results"]:
        assert "input_cache_write_tokens" not in r
        assert "input_text_tokens" not in r


def test_modern_results_are_internally_consistent(org: SyntheticOrganization) -> None:
    without_30m = day_results(org, DAY, days=2)
    with_30m = day_results(org, SPLIT_DAY, days=2)
    assert without_30m and with_30m
    for r in without_30m + with_30m:
        assert all(isinstance(r[m], int) and r[m] >= 0 for m in METRICS if m in r), r
        # input_cache_write_tokens is ALL cache writes, the 12-hour ones included.
        assert r["input_tokens"] == (
            r["input_uncached_tokens"] + r["input_cached_tokens"] + r["input_cache_write_tokens"]
        ), r
        assert r["input_cache_write_12h_tokens"] <= r["input_cache_write_tokens"], r
        if CACHE_WRITE_30M in r:
            assert r["input_cache_write_tokens"] == (
                r[CACHE_WRITE_30M] + r["input_cache_write_12h_tokens"]
            ), r
        assert r["input_uncached_tokens"] == (
            r["input_text_tokens"] + r["input_audio_tokens"] + r["input_image_tokens"]
        ), r
        assert r["input_cached_tokens"] == (
            r["input_cached_text_tokens"]
            + r["input_cached_audio_tokens"]
            + r["input_cached_image_tokens"]
        ), r
        assert r["output_tokens"] == (
            r["output_text_tokens"] + r["output_audio_tokens"] + r["output_image_tokens"]
        ), r
        assert r["num_model_requests"] >= 1
    # The breakdowns are not trivially zero across the board; both retentions are written.
    for name in ("input_cached_tokens", "input_cache_write_tokens", "input_audio_tokens",
                 "input_cache_write_12h_tokens"):  # fmt: skip
        assert any(r[name] for r in without_30m), name
    assert any(r[CACHE_WRITE_30M] for r in with_30m)
    assert any(
        r["input_cache_write_12h_tokens"] and r[CACHE_WRITE_30M] for r in with_30m
    )  # a total that is more than its 12-hour part


def test_legacy_results_are_consistent(org: SyntheticOrganization) -> None:
    for r in day_results(org, LEGACY_DAY):
        assert 0 <= r["input_cached_tokens"] <= r["input_tokens"]
        assert 0 <= r["output_audio_tokens"] <= r["output_tokens"]


# ---------------------------------------------------------------------------- grouping, filters


def reported(results: Sequence[dict[str, Any]]) -> list[str]:
    """The metrics every one of `results` reports, after checking that they report the same
    ones (DAY is before `cache_write_30m_since`: everything but the 30-minute field)."""
    names = [m for m in METRICS if m in results[0]]
    assert all([m for m in METRICS if m in r] == names for r in results)
    assert set(METRICS) - set(names) == {CACHE_WRITE_30M}
    return names


def test_fully_grouped_day_sums_to_ungrouped_totals(org: SyntheticOrganization) -> None:
    grouped = org.usage_results(DAY, DAY + DAY_SECONDS, group_by=list(DIMENSIONS))
    (ungrouped,) = org.usage_results(DAY, DAY + DAY_SECONDS, group_by=[])
    assert all(ungrouped[d] is None for d in DIMENSIONS)
    names = reported([ungrouped, *grouped])
    for name in names:
        assert sum(r[name] for r in grouped) == ungrouped[name], name
    # And both equal the raw hourly data.
    raw = day_results(org, DAY)
    for name in names:
        assert sum(r[name] for r in raw) == ungrouped[name], name
    assert len({group_key(r) for r in grouped}) == len(grouped)


def test_grouped_cache_writes_keep_their_parts(org: SyntheticOrganization) -> None:
    """Summed over a day and grouped by project, the total is still its two parts."""
    grouped = org.usage_results(SPLIT_DAY, SPLIT_DAY + DAY_SECONDS, group_by=["project_id"])
    raw = day_results(org, SPLIT_DAY)
    assert grouped and all(set(METRICS) <= r.keys() for r in grouped)
    for name in ("input_cache_write_tokens", CACHE_WRITE_30M, "input_cache_write_12h_tokens"):
        assert sum(r[name] for r in grouped) == sum(r[name] for r in raw), name
    for r in grouped:
        assert r["input_cache_write_tokens"] == (
            r[CACHE_WRITE_30M] + r["input_cache_write_12h_tokens"]
        )


def test_grouped_and_ungrouped_agree_over_http(sim: SimulatedAdminAPI) -> None:
    window = [("start_time", DAY), ("end_time", DAY + DAY_SECONDS)]
    grouped = get_usage(sim, window + all_group_by()).json()["data"]
    ungrouped = get_usage(sim, window).json()["data"]
    assert len(grouped) == len(ungrouped) == 1
    (total,) = ungrouped[0]["results"]
    for name in reported([total, *grouped[0]["results"]]):
        assert sum(r[name] for r in grouped[0]["results"]) == total[name], name


def test_group_by_project_nulls_other_dimensions(
    org: SyntheticOrganization, sim: SimulatedAdminAPI
) -> None:
    by_project = org.usage_results(DAY, DAY + DAY_SECONDS, group_by=["project_id"])
    truth = org.totals_by_project(DAY, DAY + DAY_SECONDS)
    assert {r["project_id"] for r in by_project} == set(truth)
    assert None in truth
    for r in by_project:
        assert all(r[d] is None for d in DIMENSIONS if d != "project_id"), r
        for name, value in truth[r["project_id"]].items():
            assert r[name] == value
    response = get_usage(
        sim,
        [("start_time", DAY), ("end_time", DAY + DAY_SECONDS), ("group_by", "project_id")],
    )
    (bucket,) = response.json()["data"]
    assert {r["project_id"] for r in bucket["results"]} == set(truth)
    for r in bucket["results"]:
        assert all(r[d] is None for d in DIMENSIONS if d != "project_id"), r


@pytest.mark.parametrize(
    ("param", "dimension", "pick"),
    [
        ("project_ids", "project_id", 2),
        ("models", "model", 2),
        ("user_ids", "user_id", 1),
        ("api_key_ids", "api_key_id", 1),
    ],
)
def test_array_filters_return_only_matching_rows(
    org: SyntheticOrganization,
    sim: SimulatedAdminAPI,
    param: str,
    dimension: str,
    pick: int,
) -> None:
    everything = org.usage_results(DAY, DAY + DAY_SECONDS, group_by=list(DIMENSIONS))
    values = sorted({r[dimension] for r in everything if r[dimension] is not None})[:pick]
    assert len(values) == pick
    expected = [r for r in everything if r[dimension] in values]
    assert 0 < len(expected) < len(everything)

    filtered = org.usage_results(
        DAY, DAY + DAY_SECONDS, group_by=list(DIMENSIONS), **{param: values}
    )
    assert sorted(map(group_key, filtered), key=repr) == sorted(map(group_key, expected), key=repr)

    response = get_usage(
        sim,
        [("start_time", DAY), ("end_time", DAY + DAY_SECONDS), *all_group_by()]
        + [(param, v) for v in values],
    )
    assert response.status_code == 200
    (bucket,) = response.json()["data"]
    assert bucket["results"]
    assert all(r[dimension] in values for r in bucket["results"])
    assert {group_key(r): r for r in bucket["results"]} == {group_key(r): r for r in expected}


@pytest.mark.parametrize("batch", [True, False])
def test_batch_filter(org: SyntheticOrganization, sim: SimulatedAdminAPI, batch: bool) -> None:
    everything = org.usage_results(DAY, DAY + DAY_SECONDS, group_by=list(DIMENSIONS))
    expected = {group_key(r): r for r in everything if r["batch"] is batch}
    assert 0 < len(expected) < len(everything)
    response = get_usage(
        sim,
        [
            ("start_time", DAY),
            ("end_time", DAY + DAY_SECONDS),
            *all_group_by(),
            ("batch", "true" if batch else "false"),
        ],
    )
    assert response.status_code == 200
    (bucket,) = response.json()["data"]
    assert all(r["batch"] is batch for r in bucket["results"])
    assert {group_key(r): r for r in bucket["results"]} == expected
    # Ungrouped + batch filter: totals of the matching rows only.
    response = get_usage(
        sim,
        [("start_time", DAY), ("end_time", DAY + DAY_SECONDS), ("batch", str(batch).lower())],
    )
    (total,) = response.json()["data"][0]["results"]
    assert total["input_tokens"] == sum(r["input_tokens"] for r in expected.values())


def test_group_by_bracket_spelling_is_accepted(sim: SimulatedAdminAPI) -> None:
    window = hourly(DAY + 12 * HOUR, 2)
    repeated = get_usage(sim, [*window, ("group_by", "project_id"), ("group_by", "model")])
    bracket = get_usage(sim, [*window, ("group_by[]", "project_id"), ("group_by[]", "model")])
    plain = get_usage(sim, window)
    assert repeated.status_code == bracket.status_code == plain.status_code == 200
    assert repeated.json() == bracket.json()
    assert repeated.json() != plain.json()
    for bucket in bracket.json()["data"]:
        assert len(bucket["results"]) > 1
        for r in bucket["results"]:
            assert r["model"] is not None
            assert all(r[d] is None for d in DIMENSIONS if d not in ("project_id", "model"))


def test_daily_bucket_equals_sum_of_hourly_and_minute_buckets(
    sim: SimulatedAdminAPI,
) -> None:
    (day_bucket,) = get_usage(sim, [("start_time", DAY), ("end_time", DAY + DAY_SECONDS)]).json()[
        "data"
    ]
    hours = get_usage(sim, hourly(DAY, 24)).json()["data"]
    assert len(hours) == 24
    (day_total,) = day_bucket["results"]
    for name in reported([day_total, *(r for b in hours for r in b["results"])]):
        assert sum(r[name] for b in hours for r in b["results"]) == day_total[name], name

    hour_start = DAY + 14 * HOUR
    minutes = get_usage(
        sim,
        [("start_time", hour_start), ("end_time", hour_start + HOUR), ("bucket_width", "1m")],
    ).json()["data"]
    assert len(minutes) == 60
    assert all(b["end_time"] - b["start_time"] == 60 for b in minutes)
    (hour_bucket,) = [b for b in hours if b["start_time"] == hour_start]
    (hour_total,) = hour_bucket["results"]
    assert (
        sum(r["input_tokens"] for b in minutes for r in b["results"])
        == (hour_total["input_tokens"])
    )


def test_extra_result_fields_are_served() -> None:
    org = SyntheticOrganization(extra_result_fields={"input_video_tokens": 5})
    with SimulatedAdminAPI(org=org) as sim:
        response = get_usage(sim, hourly(DAY + 12 * HOUR, 1, *all_group_by()))
    (bucket,) = response.json()["data"]
    assert bucket["results"]
    assert all(r["input_video_tokens"] == 5 for r in bucket["results"])


# ---------------------------------------------------------------------------- HTTP paging


def test_paging_respects_limit(sim: SimulatedAdminAPI) -> None:
    params = hourly(DAY, 48, ("limit", 24))
    first = get_usage(sim, params)
    assert first.status_code == 200
    page1 = first.json()
    assert page1["object"] == "page"
    assert len(page1["data"]) == 24
    assert page1["has_more"] is True
    assert isinstance(page1["next_page"], str) and page1["next_page"].startswith("page_")
    page2 = get_usage(sim, [*params, ("page", page1["next_page"])]).json()
    assert len(page2["data"]) == 24
    assert page2["has_more"] is False
    assert page2["next_page"] is None
    starts = [b["start_time"] for b in page1["data"] + page2["data"]]
    assert starts == list(range(DAY, DAY + 48 * HOUR, HOUR))
    for bucket in page1["data"] + page2["data"]:
        assert bucket["object"] == "bucket"
        assert bucket["end_time"] - bucket["start_time"] == HOUR
    assert fetch_all_pages(sim, params) == [page1, page2]
    assert sim.usage_requests() == 4


@pytest.mark.parametrize(
    ("width", "span", "default"),
    [("1h", 30 * HOUR, 24), ("1d", 10 * DAY_SECONDS, 7)],
)
def test_default_limits(sim: SimulatedAdminAPI, width: str, span: int, default: int) -> None:
    page = get_usage(
        sim, [("start_time", DAY), ("end_time", DAY + span), ("bucket_width", width)]
    ).json()
    assert len(page["data"]) == default
    assert page["has_more"] is True


@pytest.mark.parametrize(("width", "maximum"), [("1h", 168), ("1d", 31), ("1m", 1440)])
def test_limit_above_max_is_rejected(sim: SimulatedAdminAPI, width: str, maximum: int) -> None:
    params = [("start_time", DAY), ("end_time", DAY + HOUR), ("bucket_width", width)]
    assert_openai_error(get_usage(sim, [*params, ("limit", maximum + 1)]), 400, "limit")
    assert get_usage(sim, [*params, ("limit", maximum)]).status_code == 200


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one_is_rejected(sim: SimulatedAdminAPI, limit: int) -> None:
    """The documented range is 1..max buckets; 0 must not silently become the default."""
    assert_openai_error(get_usage(sim, hourly(DAY, 48, ("limit", limit))), 400, "limit")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        (hourly(DAY, 2, ("bucket_width", "1w")), "bucket_width"),
        ([("end_time", DAY + HOUR), ("bucket_width", "1h")], "start_time"),
        ([("start_time", "yesterday")], "start_time"),
        (hourly(DAY, 2, ("group_by", "project_id"), ("group_by", "colour")), "group_by"),
        (hourly(DAY, 2, ("group_by[]", "organization_id")), "group_by"),
        ([("start_time", DAY), ("end_time", DAY)], "end_time"),
        (hourly(DAY, 2, ("batch", "yes")), "batch"),
        (hourly(DAY, 2, ("page", "not-a-cursor")), "page"),
    ],
)
def test_invalid_queries_get_openai_errors(
    sim: SimulatedAdminAPI, params: list[tuple[str, Any]], param: str
) -> None:
    assert_openai_error(get_usage(sim, params), 400, param)


def test_cursor_from_another_query_is_rejected(sim: SimulatedAdminAPI) -> None:
    page = get_usage(sim, hourly(DAY, 48)).json()
    other = hourly(DAY + 5 * DAY_SECONDS, 2, ("page", page["next_page"]))
    assert_openai_error(get_usage(sim, other), 400, "page")


@pytest.mark.parametrize(
    "path", ["/v1/organization/usage/decisions", "/v1/organization/usage/", "/v1/nope", "/"]
)
def test_unknown_path_is_404(sim: SimulatedAdminAPI, path: str) -> None:
    response = requests.get(root_url(sim) + path, params={"start_time": DAY}, timeout=10)
    assert_openai_error(response, 404, None)


def test_bucket_split_across_pages(sim: SimulatedAdminAPI, split_sim: SimulatedAdminAPI) -> None:
    params = hourly(DAY, 6, *all_group_by())
    whole = fetch_all_pages(sim, params)
    assert len(whole) == 1
    whole_buckets = merged_buckets(whole)
    assert max(len(r) for r in whole_buckets.values()) > 4

    pages = fetch_all_pages(split_sim, params)
    assert len(pages) > 2
    for page in pages:
        assert sum(len(b["results"]) for b in page["data"]) <= 4
    # Some bucket appears on two consecutive pages: the last of one, the first of the next.
    assert any(
        a["data"][-1]["start_time"] == b["data"][0]["start_time"]
        for a, b in itertools.pairwise(pages)
    )
    assert merged_buckets(pages) == whole_buckets


def test_client_merges_split_buckets_like_an_unsplit_fetch(
    sim: SimulatedAdminAPI, split_sim: SimulatedAdminAPI
) -> None:
    query = day_query(start=DAY + 2 * HOUR, hours=5, limit=2)
    whole = list(iter_usage(client_for(sim), query))
    split_client = client_for(split_sim)
    split = list(iter_usage(split_client, query))
    assert [b.start_time for b in whole] == list(range(DAY + 2 * HOUR, DAY + 7 * HOUR, HOUR))
    assert max(len(b.results) for b in whole) > 4
    assert split == whole
    assert split_client.request_count == split_sim.usage_requests() > 2


def test_client_totals_match_ground_truth(
    org: SyntheticOrganization, sim: SimulatedAdminAPI
) -> None:
    buckets = list(iter_usage(client_for(sim), day_query()))
    assert len(buckets) == 24
    fetched: dict[str | None, Counter[str]] = {}
    for bucket in buckets:
        for r in bucket.results:
            acc = fetched.setdefault(r["project_id"], Counter())
            for name in REQUIRED_METRICS:
                acc[name] += r[name]
    truth = org.totals_by_project(DAY, DAY + DAY_SECONDS)
    assert None in truth and len(truth) > 2
    assert {p: dict(c) for p, c in fetched.items()} == truth


# ---------------------------------------------------------------------------- authentication


def test_required_key() -> None:
    with SimulatedAdminAPI(required_key="sk-admin-right-key-123") as sim:
        params = hourly(DAY, 1)
        missing = get_usage(sim, params)
        assert_openai_error(missing, 401, None)
        assert missing.json()["error"]["code"] == "invalid_api_key"
        wrong = get_usage(sim, params, headers={"Authorization": "Bearer sk-admin-wrong-key-999"})
        assert_openai_error(wrong, 401, None)
        assert "sk-admin-wrong-key-999" not in wrong.text
        right = get_usage(sim, params, headers={"Authorization": "Bearer sk-admin-right-key-123"})
        assert right.status_code == 200
        assert len(right.json()["data"]) == 1

        with pytest.raises(AdminAPIError) as excinfo:
            list(iter_usage(client_for(sim, "sk-admin-wrong-key-999"), day_query()))
        assert excinfo.value.status == 401
        assert "sk-admin-wrong-key-999" not in str(excinfo.value)
        good = list(iter_usage(client_for(sim, "sk-admin-right-key-123"), day_query()))
        assert len(good) == 24


# ---------------------------------------------------------------------------- faults


def test_status_fault_with_retry_after_is_consumed_after_times(
    sim: SimulatedAdminAPI,
) -> None:
    sim.faults.add("status", status=429, retry_after=3, times=2)
    params = hourly(DAY, 1)
    for _ in range(2):
        response = get_usage(sim, params)
        assert_openai_error(response, 429, None)
        assert float(response.headers["Retry-After"]) == 3
    ok = get_usage(sim, params)
    assert ok.status_code == 200
    assert "Retry-After" not in ok.headers
    assert sim.faults.pending() == []


def test_server_error_fault(sim: SimulatedAdminAPI) -> None:
    sim.faults.add("status", status=503)
    response = get_usage(sim, hourly(DAY, 1))
    assert_openai_error(response, 503, None)
    assert "Retry-After" not in response.headers
    assert get_usage(sim, hourly(DAY, 1)).status_code == 200


def test_fault_only_applies_to_its_path(sim: SimulatedAdminAPI) -> None:
    sim.faults.add("status", status=500)
    assert requests.get(sim.base_url + "/nope", timeout=10).status_code == 404
    assert get_usage(sim, hourly(DAY, 1)).status_code == 500


def test_not_json_fault(sim: SimulatedAdminAPI) -> None:
    sim.faults.add("not_json")
    response = get_usage(sim, hourly(DAY, 1))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert get_usage(sim, hourly(DAY, 1)).json()["object"] == "page"


def test_truncated_fault(sim: SimulatedAdminAPI) -> None:
    sim.faults.add("truncated")
    with pytest.raises(requests.exceptions.RequestException):
        get_usage(sim, hourly(DAY, 2))
    assert get_usage(sim, hourly(DAY, 2)).status_code == 200


def test_drift_fault_makes_input_tokens_a_string(sim: SimulatedAdminAPI) -> None:
    clean = get_usage(sim, hourly(DAY, 2, *all_group_by())).json()
    sim.faults.add("drift")
    drifted = get_usage(sim, hourly(DAY, 2, *all_group_by())).json()
    first = drifted["data"][0]["results"][0]
    assert isinstance(first["input_tokens"], str)
    assert int(first["input_tokens"]) == clean["data"][0]["results"][0]["input_tokens"]
    # Fault consumed, and the organization's cached numbers were not mutated.
    assert get_usage(sim, hourly(DAY, 2, *all_group_by())).json() == clean


def test_repeat_cursor_fault(sim: SimulatedAdminAPI) -> None:
    params = hourly(DAY, 48, ("limit", 24))
    sim.faults.add("repeat_cursor", times=2)
    first = get_usage(sim, params).json()
    assert first["has_more"] is True
    cursor = first["next_page"]
    second = get_usage(sim, [*params, ("page", cursor)]).json()
    assert second["has_more"] is True
    assert second["next_page"] == cursor
    third = get_usage(sim, [*params, ("page", cursor)]).json()
    assert third["has_more"] is False and third["next_page"] is None


def test_client_stops_on_repeated_cursor(sim: SimulatedAdminAPI) -> None:
    sim.faults.add("repeat_cursor", times=2)
    with pytest.raises(PayloadError, match="cursor"):
        list(iter_usage(client_for(sim), day_query(hours=48, limit=24)))
    assert sim.usage_requests() == 2


def test_outside_window_fault(sim: SimulatedAdminAPI) -> None:
    sim.faults.add("outside_window")
    data = get_usage(sim, hourly(DAY, 3)).json()["data"]
    assert data[0]["start_time"] >= DAY + 3 * HOUR
    assert data[0]["end_time"] - data[0]["start_time"] == HOUR
    assert [b["start_time"] for b in data[1:]] == [DAY + HOUR, DAY + 2 * HOUR]
    assert [b["start_time"] for b in get_usage(sim, hourly(DAY, 3)).json()["data"]] == [
        DAY,
        DAY + HOUR,
        DAY + 2 * HOUR,
    ]
    sim.faults.add("outside_window")
    with pytest.raises(PayloadError, match="outside"):
        list(iter_usage(client_for(sim), day_query(hours=3)))


def test_drop_buckets_fault(sim: SimulatedAdminAPI) -> None:
    """A 200 answer missing some buckets (or all of them), then the next answer whole."""
    sim.faults.add("drop_buckets", starts=[DAY + HOUR, DAY + 3 * HOUR])
    page = get_usage(sim, hourly(DAY, 5)).json()
    assert [b["start_time"] for b in page["data"]] == [DAY, DAY + 2 * HOUR, DAY + 4 * HOUR]
    assert page["has_more"] is False
    sim.faults.add("drop_buckets")
    page = get_usage(sim, hourly(DAY, 5)).json()
    assert (page["data"], page["has_more"]) == ([], False)
    assert len(get_usage(sim, hourly(DAY, 5)).json()["data"]) == 5
    sim.faults.add("drop_buckets", path="/organization/costs")
    costs = requests.get(
        sim.base_url + "/organization/costs",
        params={"start_time": DAY, "end_time": DAY + 2 * DAY_SECONDS},
        timeout=10,
    ).json()
    assert costs["data"] == []


def test_slow_fault_delays_then_answers(sim: SimulatedAdminAPI) -> None:
    sim.faults.add("slow", delay=0.3)
    began = time.monotonic()
    response = get_usage(sim, hourly(DAY, 1))
    assert time.monotonic() - began >= 0.3
    assert response.status_code == 200
    began = time.monotonic()
    assert get_usage(sim, hourly(DAY, 1)).status_code == 200
    assert time.monotonic() - began < 0.3


def test_client_recovers_from_transient_faults(sim: SimulatedAdminAPI) -> None:
    query = day_query(hours=30, limit=24)
    clean = list(iter_usage(client_for(sim), query))
    sim.faults.add("status", status=429, retry_after=0.01)
    sim.faults.add("status", status=502)
    sim.faults.add("not_json")
    sim.faults.add("truncated")
    client = client_for(sim)
    assert list(iter_usage(client, query)) == clean
    assert client.request_count == 2 + 4
    assert sim.faults.pending() == []


def test_unknown_fault_kind_is_refused(sim: SimulatedAdminAPI) -> None:
    with pytest.raises(ValueError, match="explode"):
        sim.faults.add("explode")


# ---------------------------------------------------------------------------- control endpoint


def test_control_endpoint_queues_faults_and_reports_requests(
    sim: SimulatedAdminAPI,
) -> None:
    control = root_url(sim) + "/_simulator"
    queued = requests.post(
        control + "/faults",
        json=[{"kind": "status", "status": 503, "times": 2}, {"kind": "drift"}],
        timeout=10,
    )
    assert queued.status_code == 200
    assert [f["kind"] for f in queued.json()["queued"]] == ["status", "drift"]

    state = requests.get(control + "/requests", timeout=10).json()
    assert state["requests"] == 0 and state["usage_requests"] == 0
    assert [(f["kind"], f["times"]) for f in state["pending_faults"]] == [
        ("status", 2),
        ("drift", 1),
    ]

    params = hourly(DAY, 2, *all_group_by())
    assert get_usage(sim, params).status_code == 503
    assert get_usage(sim, params).status_code == 503
    drifted = get_usage(sim, params).json()
    assert isinstance(drifted["data"][0]["results"][0]["input_tokens"], str)
    assert requests.get(sim.base_url + "/nope", timeout=10).status_code == 404

    state = requests.get(control + "/requests", timeout=10).json()
    assert state == {"requests": 4, "usage_requests": 3, "pending_faults": []}
    assert sim.usage_requests() == 3
    assert len(sim.requests) == 4


def test_control_endpoint_clears_and_rejects_bad_specs(sim: SimulatedAdminAPI) -> None:
    control = root_url(sim) + "/_simulator"
    requests.post(control + "/faults", json=[{"kind": "status", "status": 500}], timeout=10)
    cleared = requests.delete(control + "/faults", timeout=10)
    assert cleared.status_code == 200
    assert requests.get(control + "/requests", timeout=10).json()["pending_faults"] == []
    assert get_usage(sim, hourly(DAY, 1)).status_code == 200

    bad = requests.post(control + "/faults", json=[{"kind": "explode"}], timeout=10)
    assert bad.status_code == 400
    assert "error" in bad.json()
    bad = requests.post(control + "/faults", json=[{"kind": "status", "colour": 1}], timeout=10)
    assert bad.status_code == 400
    assert sim.faults.pending() == []
    assert requests.post(control + "/nope", json=[], timeout=10).status_code == 404


def test_request_log_records_queries(sim: SimulatedAdminAPI) -> None:
    get_usage(sim, hourly(DAY, 2, ("group_by", "model"), ("models", "gpt-x")))
    ((path, query),) = sim.requests
    assert path == "/v1" + COMPLETIONS
    assert query["group_by"] == ["model"]
    assert query["models"] == ["gpt-x"]
    assert query["start_time"] == [str(DAY)]


def test_usage_bucket_parse_accepts_simulator_buckets(sim: SimulatedAdminAPI) -> None:
    query = day_query(hours=2)
    page = get_usage(sim, query.to_params()).json()
    buckets = [UsageBucket.parse(raw, query) for raw in page["data"]]
    assert [b.start_time for b in buckets] == [DAY, DAY + HOUR]
    assert all(b.results for b in buckets)


def test_the_page_cache_serves_a_repeated_request_from_memory_but_never_a_fault() -> None:
    url_path = "/organization/usage/completions"
    params = {"start_time": "1764547200", "bucket_width": "1h", "limit": "3"}
    with SimulatedAdminAPI(page_cache_mib=16) as sim:
        first = requests.get(sim.base_url + url_path, params=params, timeout=30)
        built = sim.usage
        sim.usage = lambda *a, **k: pytest.fail("a cached page was built again")  # type: ignore[method-assign]
        again = requests.get(sim.base_url + url_path, params=params, timeout=30)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.content == first.content and first.json()["data"]
        sim.usage = built  # type: ignore[method-assign]
        sim.faults.add("status", status=503)
        failed = requests.get(sim.base_url + url_path, params=params, timeout=30)
        assert failed.status_code == 503
        other = requests.get(sim.base_url + url_path, params={**params, "limit": "2"}, timeout=30)
        assert len(other.json()["data"]) == 2
    with SimulatedAdminAPI() as sim:  # off by default: every answer is built
        requests.get(sim.base_url + url_path, params=params, timeout=30)
        assert not sim._page_cache
