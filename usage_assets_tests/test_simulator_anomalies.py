"""Planted spend anomalies in the simulated organization, seen over real loopback HTTP: the
usage every endpoint serves and the bill both follow the factor, for that project-day only.

Each planted organization is compared with the default one (no anomalies) served by another
simulator: what changes, and what must not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from usage_assets.simulator.contract import USAGE_ENDPOINTS
from usage_assets.simulator.organization import SyntheticOrganization, parse_anomaly
from usage_assets.simulator.server import SimulatedAdminAPI

DAY = dt.date(2025, 6, 2)
FIRST, END = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=2)  # the day and its neighbours
#: The count each endpoint's requests scale: every result carries it, one per request (or call).
REQUEST_METRIC = {
    "completions": "num_model_requests",
    "embeddings": "num_model_requests",
    "moderations": "num_model_requests",
    "images": "num_model_requests",
    "audio_speeches": "num_model_requests",
    "audio_transcriptions": "num_model_requests",
    "code_interpreter_sessions": "num_sessions",
    "file_search_calls": "num_requests",
    "web_search_calls": "num_requests",
}
STORAGE = "vector store storage"


def ts(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


#: (day, project_id[, api_key_id]) -> {metric: value}
Usage = dict[tuple[Any, ...], dict[str, int]]
#: (day, project_id, line_item[, api_key_id]) -> USD
Bill = dict[tuple[Any, ...], Decimal]


def usage(sim: SimulatedAdminAPI, endpoint: str, *group_by: str) -> Usage:
    params: list[tuple[str, Any]] = [
        ("start_time", ts(FIRST)),
        ("end_time", ts(END)),
        ("bucket_width", "1d"),
        *(("group_by", name) for name in group_by),
    ]
    response = requests.get(f"{sim.base_url}/organization/usage/{endpoint}", params, timeout=30)
    assert response.status_code == 200, response.text
    page = response.json()
    assert not page["has_more"]
    metrics = USAGE_ENDPOINTS[endpoint].metrics
    out: Usage = {}
    for bucket in page["data"]:
        day = dt.datetime.fromtimestamp(bucket["start_time"], dt.UTC).date()
        for result in bucket["results"]:
            key = (day, *(result[name] for name in group_by))
            out[key] = {m: result[m] for m in metrics if m in result}
    return out


def bill(sim: SimulatedAdminAPI, *group_by: str) -> Bill:
    params: list[tuple[str, Any]] = [
        ("start_time", ts(FIRST)),
        ("end_time", ts(END)),
        *(("group_by", name) for name in group_by),
    ]
    response = requests.get(f"{sim.base_url}/organization/costs", params, timeout=60)
    assert response.status_code == 200, response.text
    page = response.json(parse_float=Decimal)
    assert not page["has_more"]
    out: Bill = {}
    for bucket in page["data"]:
        day = dt.datetime.fromtimestamp(bucket["start_time"], dt.UTC).date()
        for result in bucket["results"]:
            key = (day, *(result[name] for name in group_by))
            out[key] = Decimal(str(result["amount"]["value"]))
    return out


@pytest.fixture(scope="module")
def plain() -> Iterator[SimulatedAdminAPI]:
    with SimulatedAdminAPI() as sim:
        yield sim


def busy_project(org: SyntheticOrganization) -> str:
    """The active project with the most completions requests on DAY (a clear signal)."""
    start = ts(DAY)
    totals = org.totals_by_project(start, start + 86400)
    return max((p for p in totals if p), key=lambda p: totals[p]["num_model_requests"])


def planted(anomalies: dict[Any, float]) -> SimulatedAdminAPI:
    return SimulatedAdminAPI(org=SyntheticOrganization(anomalies=anomalies))


def test_a_spike_scales_the_usage_and_the_bill_of_that_project_day_only(
    plain: SimulatedAdminAPI,
) -> None:
    project = busy_project(plain.org)
    name = next(p.name for p in plain.org.projects if p.id == project)
    with planted({(DAY.isoformat(), name): 6.0}) as spiked:  # by name
        scaled_endpoints = 0
        for endpoint, metric in REQUEST_METRIC.items():
            before, after = (
                usage(plain, endpoint, "project_id"),
                usage(spiked, endpoint, "project_id"),
            )
            assert set(before) == set(after), endpoint
            for key, metrics in before.items():
                if key == (DAY, project):
                    assert after[key][metric] == 6 * metrics[metric], endpoint
                    scaled_endpoints += 1
                else:
                    assert after[key] == metrics, (endpoint, key)
        assert scaled_endpoints >= 4  # completions and several others have usage that day
        tokens_before = usage(plain, "completions", "project_id")[(DAY, project)]["input_tokens"]
        tokens_after = usage(spiked, "completions", "project_id")[(DAY, project)]["input_tokens"]
        assert tokens_after / tokens_before == pytest.approx(6, rel=0.01)
        # Storage is a size, not a flow: not scaled.
        assert usage(spiked, "vector_stores", "project_id") == usage(
            plain, "vector_stores", "project_id"
        )

        billed_before = bill(plain, "project_id", "line_item")
        billed_after = bill(spiked, "project_id", "line_item")
        assert set(billed_before) == set(billed_after)
        scaled_items = 0
        for key, usd in billed_before.items():
            day, project_id, line_item = key
            if (day, project_id) == (DAY, project) and line_item != STORAGE:
                # Token counts are whole numbers: a line item of a few tokens rounds.
                assert 5 < billed_after[key] / usd < 7, line_item
                scaled_items += 1
            else:
                assert billed_after[key] == usd, key
        assert scaled_items >= 5

        def flows(billed: Bill) -> Decimal:
            return sum(
                (v for (d, p, item), v in billed.items() if (d, p) == (DAY, project)
                 and item != STORAGE),
                Decimal(0),
            )  # fmt: skip

        assert flows(billed_after) / flows(billed_before) == pytest.approx(6, rel=0.005)


def test_a_key_can_stop_alone(plain: SimulatedAdminAPI) -> None:
    """Factor 0 on one API key: its usage and its part of the bill vanish that day; the
    project's other keys, and the key's other days, are unchanged."""
    project = busy_project(plain.org)
    by_key = usage(plain, "completions", "project_id", "api_key_id")
    keys = sorted({k for (d, p, k) in by_key if d == DAY and p == project and k})
    assert len(keys) >= 2
    stopped = keys[0]
    with planted({(DAY.isoformat(), project, stopped): 0.0}) as sim:
        for endpoint in REQUEST_METRIC:
            if "api_key_id" not in USAGE_ENDPOINTS[endpoint].dimensions:
                continue
            before = usage(plain, endpoint, "project_id", "api_key_id")
            after = usage(sim, endpoint, "project_id", "api_key_id")
            assert set(after) == set(before) - {(DAY, project, stopped)}, endpoint
            assert all(after[k] == v for k, v in before.items() if k in after), endpoint
        billed_before = bill(plain, "project_id", "line_item", "api_key_id")
        billed_after = bill(sim, "project_id", "line_item", "api_key_id")
        gone = {k for k in billed_before if (k[0], k[1], k[3]) == (DAY, project, stopped)}
        assert gone and set(billed_after) == set(billed_before) - gone
        assert all(billed_after[k] == v for k, v in billed_before.items() if k in billed_after)


def test_the_default_organization_plants_nothing() -> None:
    org = SyntheticOrganization()
    assert org.anomalies == {} and org.planted == {}
    assert org.factor(DAY, org.projects[0].id, None) == 1.0


def test_planted_anomalies_are_checked() -> None:
    org = SyntheticOrganization()
    project = org.projects[0]
    key = next(k for k in org.api_keys if k.project_id == project.id)
    other = next(k for k in org.api_keys if k.project_id != project.id)
    by_id = SyntheticOrganization(anomalies={(DAY.isoformat(), project.id, key.id): 2.5})
    assert by_id.planted == {(DAY, project.id, key.id): 2.5}
    assert by_id.factor(DAY, project.id, key.id) == 2.5
    assert by_id.factor(DAY, project.id, None) == 1.0
    default = SyntheticOrganization(anomalies={(DAY.isoformat(), "default"): 3.0})
    assert default.factor(DAY, None, None) == 3.0
    bad: list[dict[Any, float]] = [
        {("2025-13-01", project.id): 2.0},
        {(DAY.isoformat(), "No Such Project"): 2.0},
        {(DAY.isoformat(), project.id, other.id): 2.0},  # another project's key
        {(DAY.isoformat(), project.id): -1.0},
    ]
    for anomalies in bad:
        with pytest.raises(ValueError, match="anomaly"):
            SyntheticOrganization(anomalies=anomalies)


def test_parse_anomaly_reads_the_command_line_form() -> None:
    assert parse_anomaly("2025-06-02:Docs Q&A=6") == (("2025-06-02", "Docs Q&A"), 6.0)
    assert parse_anomaly("2025-06-02:proj_x:key_y=0") == (("2025-06-02", "proj_x", "key_y"), 0.0)
    for bad in ("2025-06-02=6", "2025-06-02:p", "2025-06-02:p=six", "2025-06-02::=1"):
        with pytest.raises(ValueError, match="anomaly"):
            parse_anomaly(bad)
