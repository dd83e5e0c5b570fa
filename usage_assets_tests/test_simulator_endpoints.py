"""The simulator's other usage endpoints (embeddings ... web search) and their bill, over real
loopback HTTP with plain `requests` (no product code).

Expectations are written here from the reference document and the published price list, or
computed here from the organization's hourly ground truth (`endpoint_hour_results`), never
taken from the simulator's own contract module or its grouping and pricing code.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from usage_assets.simulator import billing
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI

HOUR = 3600
DAY_SECONDS = 86_400


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


DAY = utc(2025, 11, 20)
BILL_DAY = dt.date(2025, 11, 20)
KEYED = ("project_id", "user_id", "api_key_id")

#: (result object, group_by fields, metrics) of each endpoint, from the reference document.
ENDPOINTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "embeddings": (
        "organization.usage.embeddings.result",
        (*KEYED, "model"),
        ("input_tokens", "num_model_requests"),
    ),
    "moderations": (
        "organization.usage.moderations.result",
        (*KEYED, "model"),
        ("input_tokens", "num_model_requests"),
    ),
    "images": (
        "organization.usage.images.result",
        (*KEYED, "model", "size", "source"),
        ("images", "num_model_requests"),
    ),
    "audio_speeches": (
        "organization.usage.audio_speeches.result",
        (*KEYED, "model"),
        ("characters", "num_model_requests"),
    ),
    "audio_transcriptions": (
        "organization.usage.audio_transcriptions.result",
        (*KEYED, "model"),
        ("seconds", "num_model_requests"),
    ),
    "vector_stores": ("organization.usage.vector_stores.result", ("project_id",), ("usage_bytes",)),
    "code_interpreter_sessions": (
        "organization.usage.code_interpreter_sessions.result",
        ("project_id",),
        ("num_sessions",),
    ),
    "file_search_calls": (
        "organization.usage.file_searches.result",
        (*KEYED, "vector_store_id"),
        ("num_requests",),
    ),
    "web_search_calls": (
        "organization.usage.web_searches.result",
        (*KEYED, "model", "context_level", "api_source"),
        ("num_requests", "num_model_requests"),
    ),
}
NAMES = list(ENDPOINTS)
#: Each endpoint's filters (query parameter -> dimension), from the reference document.
FILTERS: dict[str, dict[str, str]] = {
    name: {
        f"{dim}s": dim
        for dim in dims
        if dim != "api_source"  # web search groups by api_source, but has no such filter
    }
    for name, (_, dims, _) in ENDPOINTS.items()
}
ALL_FIELDS = sorted({d for _, dims, _ in ENDPOINTS.values() for d in dims} | {"batch"})
KEYED_ENDPOINTS = [name for name in NAMES if ENDPOINTS[name][1][:3] == KEYED]

GIB = 2**30
MILLION = Decimal(1_000_000)
NOISE = Decimal("0.005")


# ---------------------------------------------------------------------------- helpers


def url(sim: SimulatedAdminAPI, endpoint: str) -> str:
    return f"{sim.base_url}/organization/usage/{endpoint}"


def get(
    sim: SimulatedAdminAPI, endpoint: str, params: Sequence[tuple[str, Any]]
) -> requests.Response:
    return requests.get(url(sim, endpoint), params=list(params), timeout=10)


def window(
    start: int, span: int, width: str = "1h", *extra: tuple[str, Any]
) -> list[tuple[str, Any]]:
    return [("start_time", start), ("end_time", start + span), ("bucket_width", width), *extra]


def grouped_by(*fields: str) -> list[tuple[str, str]]:
    return [("group_by", name) for name in fields]


def everything(endpoint: str) -> list[tuple[str, str]]:
    return grouped_by(*ENDPOINTS[endpoint][1])


def fetch_all(
    sim: SimulatedAdminAPI, endpoint: str, params: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        response = get(sim, endpoint, params + ([("page", cursor)] if cursor else []))
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if not page["has_more"]:
            return pages
        assert page["next_page"] != cursor
        cursor = page["next_page"]
        assert len(pages) < 500


def merged(pages: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    buckets: dict[int, list[dict[str, Any]]] = {}
    for page in pages:
        for bucket in page["data"]:
            buckets.setdefault(bucket["start_time"], []).extend(bucket["results"])
    return buckets


def key_of(endpoint: str, result: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(result[d] for d in ENDPOINTS[endpoint][1])


def by_key(endpoint: str, results: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    keyed = {key_of(endpoint, r): r for r in results}
    assert len(keyed) == len(results), "a group listed twice"
    return keyed


def truth(
    org: SyntheticOrganization,
    endpoint: str,
    start: int,
    end: int,
    group_by: Sequence[str],
    keep: Callable[[dict[str, Any]], bool] = lambda r: True,
) -> dict[tuple[Any, ...], dict[str, int]]:
    """Metrics per group computed here from the hourly ground truth: summed within an hour,
    then over hours (usage_bytes: the largest hourly value)."""
    _, dims, metrics = ENDPOINTS[endpoint]
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    for hour in range(start, end, HOUR):
        this_hour: dict[tuple[Any, ...], dict[str, int]] = {}
        for r in org.endpoint_hour_results(endpoint, hour):
            if keep(r):
                key = tuple(r[d] if d in group_by else None for d in dims)
                acc = this_hour.setdefault(key, dict.fromkeys(metrics, 0))
                for m in metrics:
                    acc[m] += r[m]
        for key, values in this_hour.items():
            acc = out.setdefault(key, dict.fromkeys(metrics, 0))
            for m in metrics:
                acc[m] = max(acc[m], values[m]) if m == "usage_bytes" else acc[m] + values[m]
    return out


def served(endpoint: str, results: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, int]]:
    metrics = ENDPOINTS[endpoint][2]
    return {k: {m: r[m] for m in metrics} for k, r in by_key(endpoint, results).items()}


def day_results(org: SyntheticOrganization, endpoint: str, start: int = DAY) -> list[Any]:
    return [
        r
        for hour in range(start, start + DAY_SECONDS, HOUR)
        for r in org.endpoint_hour_results(endpoint, hour)
    ]


def assert_openai_error(response: requests.Response, status: int, param: str | None) -> None:
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param


def _reset(server: SimulatedAdminAPI) -> SimulatedAdminAPI:
    server.faults.clear()
    server.requests.clear()
    return server


@pytest.fixture(scope="module")
def _shared_sim() -> Iterator[SimulatedAdminAPI]:
    with SimulatedAdminAPI() as server:
        yield server


@pytest.fixture(scope="module")
def _shared_split_sim() -> Iterator[SimulatedAdminAPI]:
    with SimulatedAdminAPI(max_results_per_page=3) as server:
        yield server


@pytest.fixture
def sim(_shared_sim: SimulatedAdminAPI) -> SimulatedAdminAPI:
    return _reset(_shared_sim)


@pytest.fixture
def split_sim(_shared_split_sim: SimulatedAdminAPI) -> SimulatedAdminAPI:
    """Continues a bucket on the next page after 3 results."""
    return _reset(_shared_split_sim)


@pytest.fixture
def org(sim: SimulatedAdminAPI) -> SyntheticOrganization:
    return sim.org


# ---------------------------------------------------------------------------- independence


def test_simulator_imports_nothing_of_the_product() -> None:
    """An independent implementation of the API: no constants or code shared with the client
    (only its own modules, the standard library and genai-prices)."""
    package = Path(__file__).parent.parent / "usage_assets" / "simulator"
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module.name}: relative import"
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] == "usage_assets":
                    assert name.startswith("usage_assets.simulator"), f"{module.name}: {name}"


def test_no_import_loop_between_simulator_modules() -> None:
    """Each simulator module imports in a fresh interpreter on its own, first."""
    for name in ("billing", "directory", "organization", "usage_api", "server"):
        code = f"import usage_assets.simulator.{name}"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    package = Path(__file__).parent.parent / "usage_assets" / "simulator"
    for module in ("billing.py", "directory.py", "usage_api.py", "organization.py"):
        text = (package / module).read_text()
        assert "simulator.server" not in text and "simulator import server" not in text, module


# ---------------------------------------------------------------------------- determinism


#: sha256 of the completions usage of one day, served before the other endpoints existed
#: (commit 34eadb7): adding them must not move a single completions number.
COMPLETIONS_DIGESTS = {
    dt.date(2024, 12, 30): "cd2484557188cfc9a57695266ca74c04f069a04a745c8bc7c02a86d2a3306c74",
    dt.date(2025, 6, 2): "e81e598f23fe24845c6ad8a28af601efe0e4af20f7b01cff6b889cb218673106",
    dt.date(2025, 11, 20): "c49e145acd314ff37858fa3c751a9e2ed1550d1bfc989bd853a6ab74ba338734",
}
#: sha256 of the completions line items of 2025-11-20 (project, line item, amount, JSON value,
#: tokens), and of their per key/user/source parts, from the same commit.
COMPLETIONS_BILL_DIGEST = "6505dd8ae2031d4d7d732a95ef4ea4f1af4a3bef1d7d74b56ee172b4de1f13b5"
COMPLETIONS_PARTS_DIGEST = "ea25a1c54b1bce2dcfe4eb9cd5275b99a7c96ee5dc14a58259dec95c9435398b"


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def test_completions_usage_and_bill_are_unchanged(org: SyntheticOrganization) -> None:
    for day, digest in COMPLETIONS_DIGESTS.items():
        start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
        assert _sha([org.hour_results(h) for h in range(start, start + DAY_SECONDS, HOUR)]) == (
            digest
        ), day
    models = {s.model.name for s in org.streams}
    items = [
        (i.project_id, i.line_item, str(i.amount), repr(i.value), int(i.quantity))
        for i in billing.billed_line_items(org, BILL_DAY)
        if i.line_item.rsplit(", ", 1)[0] in models
    ]
    assert len(items) == 174
    assert hashlib.sha256(json.dumps(items).encode()).hexdigest() == COMPLETIONS_BILL_DIGEST
    parts = [
        (*i.key[:1], i.line_item, *i.key[2:], str(i.amount), repr(i.value), int(i.quantity))
        for i in billing.billed_parts(org, BILL_DAY)
        if i.line_item.rsplit(", ", 1)[0] in models
    ]
    assert hashlib.sha256(json.dumps(parts).encode()).hexdigest() == COMPLETIONS_PARTS_DIGEST


def test_same_seed_same_usage_in_any_order_and_another_seed_differs() -> None:
    a, b, c = SyntheticOrganization(seed=7), SyntheticOrganization(seed=7), SyntheticOrganization()
    assert a.endpoint_streams == b.endpoint_streams
    assert a.vector_store_ids == b.vector_store_ids
    hours = list(range(DAY, DAY + 3 * DAY_SECONDS, HOUR))
    for name in NAMES:
        forward = {h: a.endpoint_hour_results(name, h) for h in hours}
        backward = {h: b.endpoint_hour_results(name, h) for h in reversed(hours)}
        assert forward == backward, name
        assert any(forward.values()), name
        assert forward != {h: c.endpoint_hour_results(name, h) for h in hours}, name
    # Evicted from the cache (more hours than it keeps) and recomputed: the same numbers.
    for name in NAMES:
        for h in range(DAY - 40 * DAY_SECONDS, DAY - 30 * DAY_SECONDS, HOUR):
            a.endpoint_hour_results(name, h)
    assert {h: a.endpoint_hour_results("images", h) for h in hours} == {
        h: b.endpoint_hour_results("images", h) for h in hours
    }


def test_a_large_organization_has_as_many_groups_per_endpoint_as_asked() -> None:
    """`endpoint_stream_count` (the benchmark's large organization): each endpoint has that
    many distinct groups where its combinations allow it, vector stores one per project, every
    group busy every hour when always active; completions usage is the default's."""
    small = SyntheticOrganization(project_count=40, user_count=60, always_active=True)
    large = SyntheticOrganization(project_count=40, user_count=60, always_active=True,
                                  endpoint_stream_count=150)  # fmt: skip
    assert large.streams == small.streams
    sizes = {name: len(streams) for name, streams in large.endpoint_streams.items()}
    assert sizes["vector_stores"] == sizes["code_interpreter_sessions"] == 41  # + default
    # One model each: a group per key (80) and the one keyless (playground) group.
    assert sizes["moderations"] == sizes["audio_transcriptions"] == 81
    for name in ("embeddings", "images", "audio_speeches", "web_search_calls"):
        assert sizes[name] == 150, name
        assert len(small.endpoint_streams[name]) < 10, name
    for name, streams in large.endpoint_streams.items():
        assert len({s.values for s in streams}) == len(streams), name
        hour = large.endpoint_hour_results(name, DAY + 12 * HOUR)
        assert len(hour) == len(streams), name


def test_endpoint_usage_is_the_same_in_another_process(org: SyntheticOrganization) -> None:
    hours = range(DAY + 10 * HOUR, DAY + 13 * HOUR, HOUR)
    code = (
        "import json\n"
        "from usage_assets.simulator.organization import SyntheticOrganization\n"
        "org = SyntheticOrganization()\n"
        f"print(json.dumps({{n: [org.endpoint_hour_results(n, h) for h in range({hours.start}, "
        f"{hours.stop}, 3600)] for n in {NAMES!r}}}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    here = {n: [org.endpoint_hour_results(n, h) for h in hours] for n in NAMES}
    assert json.loads(out) == here
    assert all(any(results) for results in here.values())


# ---------------------------------------------------------------------------- realism


@pytest.mark.parametrize("endpoint", KEYED_ENDPOINTS)
def test_keyed_usage_has_service_keys_keyless_usage_and_several_projects(
    org: SyntheticOrganization, endpoint: str
) -> None:
    results = [r for d in range(3) for r in day_results(org, endpoint, DAY + d * DAY_SECONDS)]
    assert results
    assert any(r["user_id"] is None and r["api_key_id"] is not None for r in results), endpoint
    assert any(r["api_key_id"] is None and r["project_id"] is None for r in results), endpoint
    assert len({r["project_id"] for r in results if r["project_id"]}) >= 2
    users = {u.id for u in org.users}
    keys = {k.id: k for k in org.api_keys}
    archived = {p.id for p in org.projects if p.status == "archived"}
    for r in results:
        assert r["project_id"] not in archived
        if r["api_key_id"] is not None:  # a key's usage is its project's and its owner's
            key = keys[r["api_key_id"]]
            assert (r["project_id"], r["user_id"]) == (key.project_id, key.owner_user_id)
        assert r["user_id"] is None or r["user_id"] in users


def test_dimension_values_are_the_documented_ones(org: SyntheticOrganization) -> None:
    def values(endpoint: str, *dims: str) -> set[tuple[Any, ...]]:
        days = range(DAY, DAY + 7 * DAY_SECONDS, DAY_SECONDS)
        return {tuple(r[d] for d in dims) for s in days for r in day_results(org, endpoint, s)}

    assert {m for (m,) in values("embeddings", "model")} == {
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    }
    assert values("moderations", "model") == {("omni-moderation-2024-09-26",)}
    images = values("images", "model", "size", "source")
    allowed_images = {("dall-e-3", s, "image.generation") for s in ("1024x1024", "1024x1792")} | {
        ("dall-e-2", size, source)
        for size in ("256x256", "512x512", "1024x1024")
        for source in ("image.generation", "image.edit", "image.variation")
    }
    assert images <= allowed_images and {m for m, _, _ in images} == {"dall-e-2", "dall-e-3"}
    assert len(images) >= 4
    assert values("audio_speeches", "model") <= {("tts-1",), ("tts-1-hd",)}
    assert values("audio_transcriptions", "model") == {("whisper-1",)}
    web = values("web_search_calls", "model", "context_level", "api_source")
    assert {m for m, _, _ in web} == {"gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"}
    assert {c for _, c, _ in web} <= {"low", "medium", "high"} and len({c for _, c, _ in web}) > 1
    assert {s for _, _, s in web} <= {"agents_api", "unlabeled"}
    stores = values("file_search_calls", "project_id", "vector_store_id")
    assert all(v.startswith("vs_") for _, v in stores)
    owner: dict[str, str | None] = {}
    for project, store in stores:
        assert owner.setdefault(store, project) == project, "a vector store in two projects"


def test_vector_store_bytes_are_a_slowly_growing_gauge(org: SyntheticOrganization) -> None:
    now = {
        r["project_id"]: r["usage_bytes"] for r in org.endpoint_hour_results("vector_stores", DAY)
    }
    later = org.endpoint_hour_results("vector_stores", DAY + 5 * HOUR)
    year_ago = org.endpoint_hour_results("vector_stores", DAY - 365 * DAY_SECONDS)
    assert len(now) >= 5 and None in now  # the default project stores files too
    for r in later:
        assert 0.2 * GIB <= r["usage_bytes"] <= 3 * GIB
        assert abs(r["usage_bytes"] - now[r["project_id"]]) < 0.01 * now[r["project_id"]]
    grew = sum(r["usage_bytes"] < now[r["project_id"]] for r in year_ago)
    assert grew >= len(now) - 1
    # Before the organization's vector stores existed, nothing is stored.
    assert org.endpoint_hour_results("vector_stores", utc(2024, 1, 1)) == []


def test_usage_starts_on_each_endpoints_configured_day(sim: SimulatedAdminAPI) -> None:
    """Hours before a feature's start are empty; the buckets are served all the same."""
    before = get(sim, "web_search_calls", window(utc(2025, 3, 10), DAY_SECONDS)).json()
    assert [b["results"] for b in before["data"]] == [[]] * 24
    org = SyntheticOrganization(endpoint_since={"images": BILL_DAY})
    with SimulatedAdminAPI(org=org) as late:
        page = get(late, "images", window(DAY - DAY_SECONDS, 2 * DAY_SECONDS, "1d")).json()
        assert [len(b["results"]) for b in page["data"]] == [0, 1]
        assert page["data"][1]["results"][0]["images"] > 0
        # The other endpoints keep their own start.
        other = get(late, "embeddings", window(DAY - DAY_SECONDS, DAY_SECONDS, "1d")).json()
        assert other["data"][0]["results"]


# ---------------------------------------------------------------------------- the envelope


@pytest.mark.parametrize("endpoint", NAMES)
def test_every_endpoint_answers_with_its_objects_dimensions_and_metrics(
    sim: SimulatedAdminAPI, endpoint: str
) -> None:
    obj, dims, metrics = ENDPOINTS[endpoint]
    page = get(sim, endpoint, window(DAY, 6 * HOUR, "1h", *everything(endpoint))).json()
    assert set(page) == {"object", "data", "has_more", "next_page"}
    assert (page["object"], page["has_more"], page["next_page"]) == ("page", False, None)
    assert [b["start_time"] for b in page["data"]] == list(range(DAY, DAY + 6 * HOUR, HOUR))
    results = [r for b in page["data"] for r in b["results"]]
    assert results
    for bucket in page["data"]:
        assert set(bucket) == {"object", "start_time", "end_time", "results"}
        assert bucket["object"] == "bucket" and bucket["end_time"] - bucket["start_time"] == HOUR
    for r in results:
        assert r["object"] == obj
        assert set(r) == {"object", *dims, *metrics}
        assert all(type(r[m]) is int and r[m] >= 0 for m in metrics), r
    assert any(all(r[m] > 0 for m in metrics) for r in results)


@pytest.mark.parametrize("endpoint", NAMES)
def test_dimensions_not_grouped_by_are_null(sim: SimulatedAdminAPI, endpoint: str) -> None:
    _, dims, metrics = ENDPOINTS[endpoint]
    params = window(DAY, DAY_SECONDS, "1d")
    [ungrouped] = get(sim, endpoint, params).json()["data"][0]["results"]
    assert all(ungrouped[d] is None for d in dims)
    for dim in dims:
        results = get(sim, endpoint, params + grouped_by(dim)).json()["data"][0]["results"]
        assert results
        assert all(r[o] is None for r in results for o in dims if o != dim), dim
        assert any(r[dim] is not None for r in results), dim
        if "usage_bytes" not in metrics:  # counts: the groups add up to the total
            for m in metrics:
                assert sum(r[m] for r in results) == ungrouped[m], (dim, m)


@pytest.mark.parametrize("endpoint", NAMES)
def test_grouped_results_are_the_ground_truth(
    org: SyntheticOrganization, sim: SimulatedAdminAPI, endpoint: str
) -> None:
    _, dims, _ = ENDPOINTS[endpoint]
    start, end = DAY, DAY + DAY_SECONDS
    for group_by in (dims, dims[:1], dims[1:], ()):
        results = get(sim, endpoint, window(start, end - start, "1d", *grouped_by(*group_by)))
        [bucket] = results.json()["data"]
        assert served(endpoint, bucket["results"]) == truth(org, endpoint, start, end, group_by)
    per_project = truth(org, endpoint, start, end, ("project_id",))
    assert org.endpoint_totals(endpoint, start, end) == {k[0]: v for k, v in per_project.items()}


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("endpoint", NAMES)
def test_group_by_fields_of_other_endpoints_are_rejected_by_name(
    sim: SimulatedAdminAPI, endpoint: str
) -> None:
    dims = ENDPOINTS[endpoint][1]
    foreign = [f for f in ALL_FIELDS if f not in dims]
    assert foreign
    for name in foreign:
        response = get(sim, endpoint, window(DAY, HOUR, "1h", *grouped_by(dims[0], name)))
        assert_openai_error(response, 400, "group_by")
        assert f"'{name}'" in response.json()["error"]["message"]
        response = get(sim, endpoint, window(DAY, HOUR, "1h", ("group_by[]", name)))
        assert_openai_error(response, 400, "group_by")
    assert get(sim, endpoint, window(DAY, HOUR, "1h", *everything(endpoint))).status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "param", "bad", "good"),
    [
        ("images", "sizes", "2048x2048", "1792x1792"),
        ("images", "sources", "image.upscale", "image.variation"),
        ("web_search_calls", "context_levels", "extreme", "high"),
    ],
)
def test_enumerated_filters_refuse_undocumented_values(
    sim: SimulatedAdminAPI, endpoint: str, param: str, bad: str, good: str
) -> None:
    params = window(DAY, DAY_SECONDS, "1d")
    response = get(sim, endpoint, [*params, (param, good), (param, bad)])
    assert_openai_error(response, 400, param)
    assert bad in response.json()["error"]["message"]
    assert_openai_error(get(sim, endpoint, [*params, (f"{param}[]", bad)]), 400, param)
    assert get(sim, endpoint, [*params, (param, good)]).status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "param"), [(n, p) for n in NAMES for p in FILTERS[n]], ids=lambda v: str(v)
)
def test_filters_return_only_matching_groups(
    org: SyntheticOrganization, sim: SimulatedAdminAPI, endpoint: str, param: str
) -> None:
    dim = FILTERS[endpoint][param]
    start, end = DAY, DAY + DAY_SECONDS
    dims = ENDPOINTS[endpoint][1]
    whole = truth(org, endpoint, start, end, dims)
    present = sorted({k[dims.index(dim)] for k in whole if k[dims.index(dim)] is not None})
    assert present
    picked = present[:2] if len(present) > 2 else present[:1]
    expected = truth(org, endpoint, start, end, dims, lambda r: r[dim] in picked)
    assert expected and all(k[dims.index(dim)] in picked for k in expected)
    if len(present) > 1:
        assert len(expected) < len(whole)
    params = window(start, end - start, "1d", *everything(endpoint))
    [bucket] = get(sim, endpoint, params + [(param, v) for v in picked]).json()["data"]
    assert served(endpoint, bucket["results"]) == expected
    # Ungrouped and filtered: the matching usage only.
    [bucket] = get(sim, endpoint, window(start, end - start, "1d", (param, picked[0]))).json()[
        "data"
    ]
    one = truth(org, endpoint, start, end, (), lambda r: r[dim] == picked[0])
    assert served(endpoint, bucket["results"]) == one
    # A value nobody used: no results.
    unknown = {"sizes": "1792x1792", "sources": "image.edit", "context_levels": "high"}
    if param not in unknown:
        [bucket] = get(sim, endpoint, [*params, (param, "nobody-used-this")]).json()["data"]
        assert bucket["results"] == []


@pytest.mark.parametrize("endpoint", ["embeddings", "vector_stores", "web_search_calls"])
@pytest.mark.parametrize(
    ("width", "span", "default", "maximum"),
    [("1d", 40 * DAY_SECONDS, 7, 31), ("1h", 200 * HOUR, 24, 168), ("1m", 2 * HOUR, 60, 1440)],
)
def test_limits_per_bucket_width(
    sim: SimulatedAdminAPI, endpoint: str, width: str, span: int, default: int, maximum: int
) -> None:
    params = window(DAY, span, width)
    page = get(sim, endpoint, params).json()
    assert len(page["data"]) == default and page["has_more"] is True
    assert_openai_error(get(sim, endpoint, [*params, ("limit", maximum + 1)]), 400, "limit")
    assert_openai_error(get(sim, endpoint, [*params, ("limit", 0)]), 400, "limit")
    fewer = min(maximum, span // {"1d": DAY_SECONDS, "1h": HOUR, "1m": 60}[width])
    page = get(sim, endpoint, [*params, ("limit", fewer)]).json()
    assert len(page["data"]) == fewer


@pytest.mark.parametrize("endpoint", NAMES)
@pytest.mark.parametrize(
    ("params", "param"),
    [
        ([("end_time", DAY + HOUR)], "start_time"),
        ([("start_time", "today")], "start_time"),
        ([("start_time", DAY), ("end_time", DAY)], "end_time"),
        (window(DAY, HOUR, "1w"), "bucket_width"),
        (window(DAY, HOUR, "1h", ("limit", "many")), "limit"),
        (window(DAY, HOUR, "1h", ("page", "not-a-cursor")), "page"),
    ],
)
def test_invalid_queries_are_openai_errors(
    sim: SimulatedAdminAPI, endpoint: str, params: list[tuple[str, Any]], param: str
) -> None:
    assert_openai_error(get(sim, endpoint, params), 400, param)


# ---------------------------------------------------------------------------- buckets and paging


@pytest.mark.parametrize("endpoint", NAMES)
def test_a_day_is_the_sum_of_its_hours_and_stored_bytes_their_maximum(
    sim: SimulatedAdminAPI, endpoint: str
) -> None:
    _, _, metrics = ENDPOINTS[endpoint]
    group = grouped_by("project_id")
    [day] = get(sim, endpoint, window(DAY, DAY_SECONDS, "1d", *group)).json()["data"]
    hours = get(sim, endpoint, window(DAY, DAY_SECONDS, "1h", *group)).json()["data"]
    assert len(hours) == 24
    hourly: dict[str | None, list[dict[str, Any]]] = {}
    for bucket in hours:
        for r in bucket["results"]:
            hourly.setdefault(r["project_id"], []).append(r)
    daily = {r["project_id"]: r for r in day["results"]}
    assert daily.keys() == hourly.keys() and len(daily) >= 2
    for project, results in hourly.items():
        for m in metrics:
            if m == "usage_bytes":
                assert daily[project][m] == max(r[m] for r in results)
                assert daily[project][m] < sum(r[m] for r in results)  # never a sum
            else:
                assert daily[project][m] == sum(r[m] for r in results), (project, m)
    # Ungrouped, stored bytes are the organization's largest hourly total.
    [total] = get(sim, endpoint, window(DAY, DAY_SECONDS, "1d")).json()["data"][0]["results"]
    for m in metrics:
        hour_totals = [sum(r[m] for r in b["results"]) for b in hours]
        assert total[m] == (max(hour_totals) if m == "usage_bytes" else sum(hour_totals)), m


@pytest.mark.parametrize("endpoint", ["embeddings", "vector_stores", "file_search_calls"])
def test_minute_buckets_report_an_hour_in_its_first_minute(
    sim: SimulatedAdminAPI, endpoint: str
) -> None:
    hour = DAY + 14 * HOUR
    group = everything(endpoint)
    minutes = get(sim, endpoint, window(hour, HOUR, "1m", *group)).json()["data"]
    [whole] = get(sim, endpoint, window(hour, HOUR, "1h", *group)).json()["data"]
    assert [b["start_time"] for b in minutes] == list(range(hour, hour + HOUR, 60))
    assert all(b["end_time"] - b["start_time"] == 60 for b in minutes)
    assert whole["results"] and minutes[0]["results"] == whole["results"]
    assert all(b["results"] == [] for b in minutes[1:])


@pytest.mark.parametrize("endpoint", NAMES)
def test_a_bucket_split_across_pages_reassembles(
    sim: SimulatedAdminAPI, split_sim: SimulatedAdminAPI, endpoint: str
) -> None:
    params = window(DAY, 3 * DAY_SECONDS, "1d", *everything(endpoint))
    whole = fetch_all(sim, endpoint, params)
    assert len(whole) == 1
    buckets = merged(whole)
    assert len(buckets) == 3 and max(len(r) for r in buckets.values()) > 3
    pages = fetch_all(split_sim, endpoint, params)
    assert all(sum(len(b["results"]) for b in page["data"]) <= 3 for page in pages)
    assert any(
        a["data"][-1]["start_time"] == b["data"][0]["start_time"]
        for a, b in itertools.pairwise(pages)
    )
    assert merged(pages) == buckets
    assert split_sim.endpoint_requests(endpoint) == len(pages) > 2
    assert split_sim.usage_requests() == 0  # completions requests are counted apart


@pytest.mark.parametrize(
    ("endpoint", "metric"),
    [("images", "images"), ("vector_stores", "usage_bytes"), ("web_search_calls", "num_requests")],
)
def test_drift_fault_turns_the_first_metric_into_a_string(
    sim: SimulatedAdminAPI, endpoint: str, metric: str
) -> None:
    params = window(DAY, DAY_SECONDS, "1d", *everything(endpoint))
    clean = get(sim, endpoint, params).json()
    sim.faults.add("drift", path=f"/organization/usage/{endpoint}")
    assert get(sim, "embeddings", params[:3]).status_code == 200  # another path: untouched
    drifted = get(sim, endpoint, params).json()
    first = drifted["data"][0]["results"][0]
    assert first[metric] == str(clean["data"][0]["results"][0][metric])
    assert drifted["data"][0]["results"][1:] == clean["data"][0]["results"][1:]
    assert get(sim, endpoint, params).json() == clean
    sim.faults.add("status", status=503, path=f"/organization/usage/{endpoint}")
    assert_openai_error(get(sim, endpoint, params), 503, None)


# ---------------------------------------------------------------------------- the bill

#: Published list prices (https://openai.com/api/pricing/, https://platform.openai.com/docs/pricing)
#: written here independently of the simulator's copy.
EMBEDDING_MTOK = {
    "text-embedding-3-small": Decimal("0.02"),
    "text-embedding-3-large": Decimal("0.13"),
    "text-embedding-ada-002": Decimal("0.10"),
}
IMAGE = {
    ("dall-e-3", "1024x1024"): Decimal("0.040"),
    ("dall-e-3", "1024x1792"): Decimal("0.080"),
    ("dall-e-2", "256x256"): Decimal("0.016"),
    ("dall-e-2", "512x512"): Decimal("0.018"),
    ("dall-e-2", "1024x1024"): Decimal("0.020"),
}
TTS_MCHAR = {"tts-1": Decimal(15), "tts-1-hd": Decimal(30)}
WHISPER_MINUTE = Decimal("0.006")
STORAGE_GIB_DAY = Decimal("0.10")
SESSION = Decimal("0.03")
FILE_SEARCH_1K = Decimal("2.50")
WEB_SEARCH_1K = {
    ("gpt-4o", "low"): Decimal(30),
    ("gpt-4o", "medium"): Decimal(35),
    ("gpt-4o", "high"): Decimal(50),
    ("gpt-4o-mini", "low"): Decimal(25),
    ("gpt-4o-mini", "medium"): Decimal("27.50"),
    ("gpt-4o-mini", "high"): Decimal(30),
}

#: (project_id, line_item) -> [quantity, USD, quantity_unit]
Expected = dict[tuple[str | None, str], list[Any]]


def _add(
    expected: Expected, key: tuple[str | None, str], qty: Any, usd: Decimal, unit: str
) -> None:
    acc = expected.setdefault(key, [0, Decimal(0), unit])
    acc[0] += qty
    acc[1] += usd


def storage_expected(org: SyntheticOrganization, start: int) -> Expected:
    byte_hours: dict[str | None, int] = {}
    for hour in range(start, start + DAY_SECONDS, HOUR):
        for r in org.endpoint_hour_results("vector_stores", hour):
            byte_hours[r["project_id"]] = byte_hours.get(r["project_id"], 0) + r["usage_bytes"]
    org_gib_days = Decimal(sum(byte_hours.values())) / GIB / 24
    expected: Expected = {}
    for project, stored in byte_hours.items():
        gib_days = Decimal(stored) / GIB / 24
        usd = max(Decimal(0), org_gib_days - 1) * STORAGE_GIB_DAY * gib_days / org_gib_days
        if usd > 0:
            expected[(project, "vector store storage")] = [gib_days * 24, usd, "gibibyte_hours"]
    return expected


def priced_usage(org: SyntheticOrganization, day: dt.date) -> Expected:
    """Every line item of the other endpoints, priced here from the hourly usage."""
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    expected: Expected = {}
    for hour in range(start, start + DAY_SECONDS, HOUR):
        each = {name: org.endpoint_hour_results(name, hour) for name in NAMES}
        for r in each["embeddings"]:
            usd = r["input_tokens"] * EMBEDDING_MTOK[r["model"]] / MILLION
            key = (r["project_id"], f"{r['model']}, input")
            _add(expected, key, r["input_tokens"], usd, "tokens")
        for r in each["images"]:
            usd = r["images"] * IMAGE[(r["model"], r["size"])]
            _add(
                expected,
                (r["project_id"], f"{r['model']}, {r['size']}"),
                r["images"],
                usd,
                "images",
            )
        for r in each["audio_speeches"]:
            usd = r["characters"] * TTS_MCHAR[r["model"]] / MILLION
            key = (r["project_id"], f"{r['model']}, characters")
            _add(expected, key, r["characters"], usd, "characters")
        for r in each["audio_transcriptions"]:
            usd = Decimal(r["seconds"]) / 60 * WHISPER_MINUTE
            key = (r["project_id"], "whisper-1, duration")
            _add(expected, key, r["seconds"], usd, "duration_seconds")
        for r in each["code_interpreter_sessions"]:
            key = (r["project_id"], "code interpreter sessions")
            _add(expected, key, r["num_sessions"], r["num_sessions"] * SESSION, "sessions")
        for r in each["file_search_calls"]:
            usd = r["num_requests"] * FILE_SEARCH_1K / 1000
            _add(
                expected,
                (r["project_id"], "file search tool calls"),
                r["num_requests"],
                usd,
                "calls",
            )
        for r in each["web_search_calls"]:
            family = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", r["model"])
            usd = r["num_requests"] * WEB_SEARCH_1K[(family, r["context_level"])] / 1000
            key = (r["project_id"], f"web search tool calls, {r['model']}, {r['context_level']}")
            _add(expected, key, r["num_requests"], usd, "calls")
    expected.update(storage_expected(org, start))
    return expected


def http_costs(sim: SimulatedAdminAPI, day: dt.date, *group_by: str) -> list[dict[str, Any]]:
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    params: dict[str, Any] = {
        "start_time": start,
        "end_time": start + DAY_SECONDS,
        "group_by": list(group_by),
    }
    response = requests.get(sim.base_url + "/organization/costs", params=params, timeout=10)
    assert response.status_code == 200, response.text
    [bucket] = response.json(parse_float=Decimal)["data"]
    results: list[dict[str, Any]] = bucket["results"]
    return results


def is_completions(org: SyntheticOrganization, line_item: str) -> bool:
    return line_item.rsplit(", ", 1)[0] in {s.model.name for s in org.streams}


@pytest.mark.parametrize("day", [BILL_DAY, dt.date(2025, 6, 2)])
def test_the_bill_of_every_family_is_its_priced_usage_within_half_a_percent(
    sim: SimulatedAdminAPI, day: dt.date
) -> None:
    expected = priced_usage(sim.org, day)
    billed = {
        (r["project_id"], r["line_item"]): r
        for r in http_costs(sim, day, "project_id", "line_item")
        if not is_completions(sim.org, r["line_item"])
    }
    assert billed.keys() == expected.keys()  # nothing else billed: moderations are free
    assert not any("moderation" in line_item for _, line_item in billed)
    units = set()
    for key, (quantity, usd, unit) in expected.items():
        result = billed[key]
        amount = Decimal(result["amount"]["value"])
        assert abs(amount / usd - 1) <= NOISE, key
        assert result["quantity_unit"] == unit, key
        if unit == "gibibyte_hours":
            assert abs(result["quantity"] - quantity) <= Decimal("1e-6"), key
        else:
            assert result["quantity"] == quantity, key
        units.add(unit)
    assert units == {
        "tokens",
        "images",
        "characters",
        "duration_seconds",
        "gibibyte_hours",
        "sessions",
        "calls",
    }
    assert sum(
        abs(Decimal(r["amount"]["value"]) - expected[k][1]) > 0 for k, r in billed.items()
    ) > (len(billed) // 2), "the bill is noisy, not an estimate"
    forms = {type(r["amount"]["value"]) for r in billed.values()}
    assert forms == {str, Decimal}  # decimal strings and JSON numbers, as the real API


def test_vector_store_storage_first_gib_day_of_the_organization_is_free() -> None:
    start = DAY
    # Well within the allowance: stored bytes are served, but storage is not billed.
    small = SyntheticOrganization(vector_store_gib=(0.01, 0.03))
    stored = sum(r["usage_bytes"] for r in day_results(small, "vector_stores", start))
    assert 0 < stored / GIB / 24 < 1
    assert not any(
        i.line_item == "vector store storage" for i in billing.billed_line_items(small, BILL_DAY)
    )
    # Just above it: only the excess is billed, shared in proportion to each project's storage.
    for org in (SyntheticOrganization(vector_store_gib=(0.15, 0.25)), SyntheticOrganization()):
        with SimulatedAdminAPI(org=org) as sim:
            billed = {
                r["project_id"]: r
                for r in http_costs(sim, BILL_DAY, "project_id", "line_item")
                if r["line_item"] == "vector store storage"
            }
        byte_hours: dict[str | None, int] = {}
        for r in day_results(org, "vector_stores", start):
            byte_hours[r["project_id"]] = byte_hours.get(r["project_id"], 0) + r["usage_bytes"]
        gib_days = {p: Decimal(b) / GIB / 24 for p, b in byte_hours.items()}
        org_gib_days = sum(gib_days.values(), Decimal(0))
        assert billed.keys() == gib_days.keys()
        assert len(billed) >= 5 and org_gib_days > 1
        for project, result in billed.items():
            share = (org_gib_days - 1) * STORAGE_GIB_DAY * gib_days[project] / org_gib_days
            assert abs(Decimal(result["amount"]["value"]) / share - 1) <= NOISE
            assert abs(result["quantity"] - gib_days[project] * 24) <= Decimal("1e-6")
            assert result["quantity_unit"] == "gibibyte_hours"
        total = sum((Decimal(r["amount"]["value"]) for r in billed.values()), Decimal(0))
        without_allowance = org_gib_days * STORAGE_GIB_DAY
        assert total < without_allowance - Decimal("0.09")  # a GiB-day at $0.10 is free


def test_billed_parts_add_up_to_their_line_items_and_follow_the_usage(
    sim: SimulatedAdminAPI,
) -> None:
    org = sim.org
    full = http_costs(
        sim, BILL_DAY, "project_id", "line_item", "api_key_id", "user_id", "api_source"
    )
    coarse = http_costs(sim, BILL_DAY, "project_id", "line_item")
    sums: dict[tuple[str | None, str], list[Any]] = {}
    for r in full:
        acc = sums.setdefault((r["project_id"], r["line_item"]), [Decimal(0), 0])
        acc[0] += Decimal(r["amount"]["value"])
        acc[1] += r["quantity"]
    assert sums.keys() == {(r["project_id"], r["line_item"]) for r in coarse}
    for r in coarse:
        amount, quantity = sums[(r["project_id"], r["line_item"])]
        assert abs(amount - Decimal(r["amount"]["value"])) < Decimal("1e-12"), r["line_item"]
        assert quantity == r["quantity"]

    def parts(line_item: Callable[[str], bool]) -> list[dict[str, Any]]:
        return [r for r in full if line_item(r["line_item"])]

    for line_item in ("vector store storage", "code interpreter sessions"):
        only_project = [r for r in full if r["line_item"] == line_item]
        assert only_project
        assert all(
            (r["api_key_id"], r["user_id"], r["api_source"]) == (None,) * 3 for r in only_project
        )
    files = parts(lambda li: li == "file search tool calls")
    assert any(r["api_key_id"] for r in files) and all(r["api_source"] is None for r in files)
    web = parts(lambda li: li.startswith("web search tool calls, "))
    assert web and all(r["api_source"] in ("agents_api", "unlabeled") for r in web)
    assert {r["api_source"] for r in web} == {
        r["api_source"] for r in day_results(org, "web_search_calls")
    }
    images = parts(lambda li: li.startswith("dall-e-"))
    assert images and all(r["api_source"] is None for r in images)
    # Quantities per key are the usage of that key, counted here.
    calls: dict[tuple[Any, ...], int] = {}
    for r in day_results(org, "file_search_calls"):
        key = (r["project_id"], r["api_key_id"], r["user_id"])
        calls[key] = calls.get(key, 0) + r["num_requests"]
    assert {(r["project_id"], r["api_key_id"], r["user_id"]): r["quantity"] for r in files} == calls
    embedded: dict[tuple[Any, ...], int] = {}
    for r in day_results(org, "embeddings"):
        key = (r["project_id"], r["api_key_id"], r["user_id"], f"{r['model']}, input")
        embedded[key] = embedded.get(key, 0) + r["input_tokens"]
    assert {
        (r["project_id"], r["api_key_id"], r["user_id"], r["line_item"]): r["quantity"]
        for r in parts(lambda li: li.startswith("text-embedding-"))
    } == embedded


def test_grouped_by_line_item_alone_each_family_keeps_its_unit(sim: SimulatedAdminAPI) -> None:
    by_line = {r["line_item"]: r for r in http_costs(sim, BILL_DAY, "line_item")}
    expected = priced_usage(sim.org, BILL_DAY)
    for (_, line_item), (_, _, unit) in expected.items():
        assert by_line[line_item]["quantity_unit"] == unit
        assert by_line[line_item]["project_id"] is None
    per_line: dict[str, Any] = {}
    for (_, line_item), (quantity, _, _) in expected.items():
        per_line[line_item] = per_line.get(line_item, 0) + quantity
    for line_item, quantity in per_line.items():
        served_quantity = by_line[line_item]["quantity"]
        assert abs(served_quantity - quantity) <= Decimal("1e-5"), line_item
    [total] = http_costs(sim, BILL_DAY)
    assert (total["quantity"], total["quantity_unit"], total["line_item"]) == (None, None, None)
