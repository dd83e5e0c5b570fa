"""Every usage endpoint through the one pipeline: query validation, parsing, COPY, loads,
revisions and the Dagster asset, with HTTP faked at the transport (`responses`) and a real
PostgreSQL. The sample results are written out here from the reference document's endpoint
table, not generated from `usage_assets.endpoints`, so a wrong description fails these tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
import responses
from sqlalchemy import Engine, text

from usage_assets.admin_api.endpoints import ENDPOINTS_BY_NAME, USAGE_ENDPOINTS
from usage_assets.admin_api.transport import AdminAPIClient, RetrySettings
from usage_assets.admin_api.usage import UsageQuery
from usage_assets.defs.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.defs.usage.assets import USAGE_ASSETS, day_metadata, usage_asset
from usage_assets.defs.usage.ingest import ingest_days
from usage_assets.errors import PayloadError, QueryValidationError
from usage_assets.warehouse.models import USAGE_COPY_COLUMNS, USAGE_TABLES, CompletionsUsageHourly
from usage_assets.warehouse.usage_days import LoadInfo

BASE = "https://api.example.test/v1"
DAY = dt.date(2025, 11, 20)
DAY_START = int(dt.datetime(2025, 11, 20, tzinfo=dt.UTC).timestamp())
NOW = dt.datetime(2025, 11, 25, tzinfo=dt.UTC)
INFO = LoadInfo(group_by=(), simulated=False, source_url=BASE, dagster_run_id=None)

#: From ../shared/reference/openai-admin-api.md, "The other usage endpoints": result object,
#: group_by fields and metrics of each endpoint, and one result of it.
DOCUMENTED: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "embeddings": (
        "organization.usage.embeddings.result",
        ("project_id", "user_id", "api_key_id", "model"),
        {"input_tokens": 1200, "num_model_requests": 3, "model": "text-embedding-3-small"},
    ),
    "moderations": (
        "organization.usage.moderations.result",
        ("project_id", "user_id", "api_key_id", "model"),
        {"input_tokens": 40, "num_model_requests": 2, "model": "omni-moderation-2024-09-26"},
    ),
    "images": (
        "organization.usage.images.result",
        ("project_id", "user_id", "api_key_id", "model", "size", "source"),
        {
            "images": 4,
            "num_model_requests": 2,
            "model": "dall-e-3",
            "size": "1024x1024",
            "source": "image.generation",
        },
    ),
    "audio_speeches": (
        "organization.usage.audio_speeches.result",
        ("project_id", "user_id", "api_key_id", "model"),
        {"characters": 5400, "num_model_requests": 6, "model": "tts-1"},
    ),
    "audio_transcriptions": (
        "organization.usage.audio_transcriptions.result",
        ("project_id", "user_id", "api_key_id", "model"),
        {"seconds": 930, "num_model_requests": 5, "model": "whisper-1"},
    ),
    "vector_stores": (
        "organization.usage.vector_stores.result",
        ("project_id",),
        {"usage_bytes": 3 * 2**29},
    ),
    "code_interpreter_sessions": (
        "organization.usage.code_interpreter_sessions.result",
        ("project_id",),
        {"num_sessions": 7},
    ),
    "file_search_calls": (
        "organization.usage.file_searches.result",
        ("project_id", "user_id", "api_key_id", "vector_store_id"),
        {"num_requests": 11, "vector_store_id": "vs_abc123"},
    ),
    "web_search_calls": (
        "organization.usage.web_searches.result",
        ("project_id", "user_id", "api_key_id", "model", "context_level", "api_source"),
        {
            "num_requests": 9,
            "num_model_requests": 9,
            "model": "gpt-4o-mini-2024-07-18",
            "context_level": "medium",
            "api_source": "unlabeled",
        },
    ),
}


def result_of(name: str, hour: int, project: str | None = "proj_a") -> dict[str, Any]:
    """The documented result of `name` for one hour: every dimension present (null when not
    set), counts varying with the hour."""
    kind, dimensions, sample = DOCUMENTED[name]
    result: dict[str, Any] = {"object": kind, **dict.fromkeys(dimensions)}
    result["project_id"] = project
    for field, value in sample.items():
        result[field] = value * (hour + 1) if isinstance(value, int) else value
    if "user_id" in dimensions:
        result["user_id"] = "user-1"
        result["api_key_id"] = "key_1"
    return result


def day_page(name: str, hours: range = range(24), **extra: Any) -> dict[str, Any]:
    buckets = []
    for hour in range(24):
        start = DAY_START + hour * 3600
        results = [result_of(name, hour), result_of(name, hour, project=None)]
        for result in results:
            result.update(extra)
        buckets.append(
            {
                "object": "bucket",
                "start_time": start,
                "end_time": start + 3600,
                "results": results if hour in hours else [],
            }
        )
    return {"object": "page", "data": buckets, "has_more": False, "next_page": None}


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def serve(http: responses.RequestsMock, name: str, page: dict[str, Any]) -> None:
    http.add(responses.GET, f"{BASE}/organization/usage/{name}", json=page)


def client() -> AdminAPIClient:
    return AdminAPIClient(BASE, "sk-admin-test", retry=RetrySettings(max_attempts=1))


def ingest(name: str, engine: Engine) -> list[Any]:
    endpoint = ENDPOINTS_BY_NAME[name]
    return list(
        ingest_days(
            client(),
            engine,
            DAY,
            DAY + dt.timedelta(days=1),
            endpoint.group_by_fields,
            INFO,
            now=NOW,
            endpoint=endpoint,
        )
    )


OTHER_ENDPOINTS = [name for name in ENDPOINTS_BY_NAME if name != "completions"]


def test_every_documented_endpoint_is_described() -> None:
    assert set(ENDPOINTS_BY_NAME) == {"completions", *DOCUMENTED}
    for name, (kind, dimensions, sample) in DOCUMENTED.items():
        endpoint = ENDPOINTS_BY_NAME[name]
        assert endpoint.result_object == kind
        assert endpoint.group_by_fields == dimensions
        metrics = {k for k, v in sample.items() if isinstance(v, int)}
        assert set(endpoint.metric_names) == metrics, name
        assert endpoint.path == f"/organization/usage/{name}"
        assert endpoint.table_name == f"{name}_usage_hourly"


def test_the_completions_table_is_the_one_its_description_makes() -> None:
    columns = [c.name for c in CompletionsUsageHourly.__table__.columns]
    assert columns == [*USAGE_COPY_COLUMNS, "ingested_at"]
    for endpoint in USAGE_ENDPOINTS:
        table = USAGE_TABLES[endpoint.name]
        assert [c.name for c in table.columns] == [*endpoint.copy_columns, "ingested_at"]
        assert table.schema == "openai_usage"
        for metric in endpoint.metrics:
            assert table.c[metric.name].nullable is not metric.required


@pytest.mark.parametrize("name", OTHER_ENDPOINTS)
def test_a_day_of_each_endpoint_lands_exactly_as_served(
    name: str, http: responses.RequestsMock, engine: Engine
) -> None:
    page = day_page(name)
    serve(http, name, page)
    [day] = ingest(name, engine)
    endpoint = ENDPOINTS_BY_NAME[name]
    assert day.row_count == 48 and day.bucket_count == 24 and day.closed
    served = [r for bucket in page["data"] for r in bucket["results"]]
    columns = [*endpoint.dimension_names, *endpoint.metric_names]
    with engine.connect() as conn:
        stored = [
            tuple(row)
            for row in conn.execute(
                text(
                    f"SELECT {', '.join(columns)}, openai_usage.api_result(u), u.result "
                    f"FROM openai_usage.{name}_usage_hourly u "
                    "ORDER BY bucket_start, project_id NULLS LAST"
                )
            )
        ]
        load = conn.execute(
            text(
                "SELECT row_count, totals, volume, bucket_count FROM openai_usage.usage_loads "
                "WHERE endpoint = :name AND usage_date = :day"
            ),
            {"name": name, "day": DAY},
        ).one()
    assert sorted(stored, key=repr) == sorted(
        # the whole result rebuilt from the columns; nothing left over for `result` to keep
        [(*(r.get(c) for c in columns), r, None) for r in served],
        key=repr,
    )
    # The day's totals: every metric summed over its rows, recorded for the next reload.
    expected = {m: sum(r[m] for r in served) for m in endpoint.metric_names}
    assert load.row_count == 48 and load.bucket_count == 24
    assert load.totals == expected
    assert load.volume == sum(expected[m] for m in endpoint.volume_metrics)
    assert day.totals == expected


def test_one_endpoint_replaces_its_own_day_only(
    http: responses.RequestsMock, engine: Engine
) -> None:
    serve(http, "images", day_page("images"))
    serve(http, "embeddings", day_page("embeddings"))
    ingest("images", engine)
    ingest("embeddings", engine)
    http.replace(
        responses.GET, f"{BASE}/organization/usage/images", json=day_page("images", range(24))
    )
    [again] = ingest("images", engine)  # a reload of images leaves embeddings alone
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                text("SELECT endpoint, row_count FROM openai_usage.usage_loads ORDER BY endpoint")
            ).all()
        )
        embeddings = conn.execute(
            text("SELECT count(*) FROM openai_usage.embeddings_usage_hourly")
        ).scalar_one()
        revisions = conn.execute(
            text(
                "SELECT endpoint, revision, previous_volume, new_volume, volume_change "
                "FROM openai_usage.v_usage_day_revisions ORDER BY endpoint, revision"
            )
        ).all()
    assert counts == {"embeddings": 48, "images": 48}
    assert embeddings == 48
    images = sum(result_of("images", h)["images"] for h in range(24)) * 2
    embeddings_volume = sum(result_of("embeddings", h)["input_tokens"] for h in range(24)) * 2
    assert [tuple(r) for r in revisions] == [
        ("embeddings", 1, None, embeddings_volume, None),
        ("images", 1, None, images, None),
        ("images", 2, images, images, 0),
    ]
    assert again.revision is not None and again.revision.previous is not None
    assert again.revision.previous.volume == images


def test_vector_store_storage_is_a_gauge_read_as_gib_days(
    http: responses.RequestsMock, engine: Engine
) -> None:
    serve(http, "vector_stores", day_page("vector_stores"))
    [day] = ingest("vector_stores", engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT project_id, hours_reported, max_usage_bytes, gib_days "
                "FROM openai_usage.v_vector_store_storage_daily ORDER BY project_id NULLS LAST"
            )
        ).all()
    hourly = [3 * 2**29 * (h + 1) for h in range(24)]  # 1.5 GiB, 3 GiB, ...
    gib_days = sum(hourly) / 24 / 2**30
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("proj_a", 24, hourly[-1]),
        (None, 24, hourly[-1]),
    ]
    assert [float(r[3]) for r in rows] == pytest.approx([gib_days, gib_days])
    asset = next(a for a in USAGE_ASSETS if a.key.path == ["vector_stores_usage_hourly"])
    assert "never summed over hours" in (asset.descriptions_by_key[asset.key] or "")
    metadata = day_metadata(day)
    assert metadata["usage_bytes_gib_days"].value == pytest.approx(2 * gib_days, rel=1e-6)
    assert "usage_bytes" not in metadata  # a sum of sizes would mislead


@pytest.mark.parametrize(
    ("name", "field", "value", "message"),
    [
        ("images", "object", "organization.usage.completions.result", "object="),
        ("images", "images", None, "required field 'images'"),
        ("images", "size", 1024, "size=1024 is not a string"),
        ("web_search_calls", "num_requests", "9", "num_requests='9' is not an integer"),
        ("vector_stores", "usage_bytes", -1, "usage_bytes=-1 is negative"),
        ("file_search_calls", "vector_store_id", "vs_\x00", "NUL character"),
        ("audio_speeches", "characters", 2**63, "larger than a PostgreSQL bigint"),
    ],
)
def test_a_drifted_result_fails_the_day_naming_endpoint_bucket_and_field(
    name: str,
    field: str,
    value: Any,
    message: str,
    http: responses.RequestsMock,
    engine: Engine,
) -> None:
    serve(http, name, day_page(name))
    ingest(name, engine)  # a good day first: it must survive
    page = day_page(name)
    page["data"][23]["results"][1][field] = value  # the last result of the day
    http.replace(responses.GET, f"{BASE}/organization/usage/{name}", json=page)
    with pytest.raises(PayloadError, match=message) as failure:
        ingest(name, engine)
    assert f"{name} usage bucket 2025-11-20T23:00:00+00:00 result #1" in str(failure.value)
    with engine.connect() as conn:
        assert (
            conn.execute(text(f"SELECT count(*) FROM openai_usage.{name}_usage_hourly")).scalar()
            == 48
        )


def test_an_optional_metric_may_be_missing_and_unknown_fields_are_kept(
    http: responses.RequestsMock, engine: Engine
) -> None:
    page = day_page("web_search_calls", tomorrow_field={"a": 1})
    for bucket in page["data"]:
        for result in bucket["results"]:
            del result["num_model_requests"]
    serve(http, "web_search_calls", page)
    [day] = ingest("web_search_calls", engine)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT num_model_requests, result -> 'tomorrow_field' "
                "FROM openai_usage.web_search_calls_usage_hourly LIMIT 1"
            )
        ).one()
    assert tuple(row) == (None, {"a": 1})
    assert day.totals["num_model_requests"] == 0


def test_a_closed_day_missing_hours_is_refused_for_every_endpoint(
    http: responses.RequestsMock, engine: Engine
) -> None:
    page = day_page("code_interpreter_sessions")
    del page["data"][5]
    for _ in range(3):
        serve(http, "code_interpreter_sessions", page)
    with pytest.raises(PayloadError, match=r"missing hourly buckets 05:00"):
        ingest("code_interpreter_sessions", engine)


def test_queries_are_validated_against_their_endpoint() -> None:
    images = ENDPOINTS_BY_NAME["images"]
    stores = ENDPOINTS_BY_NAME["vector_stores"]
    web = ENDPOINTS_BY_NAME["web_search_calls"]
    ok = UsageQuery(
        start_time=DAY_START,
        endpoint=images,
        group_by=images.group_by_fields,
        filters={"sizes": ("1024x1024",), "sources": ("image.edit",)},
    )
    params = ok.to_params()
    assert ("sizes", "1024x1024") in params and ("sources", "image.edit") in params
    assert [v for k, v in params if k == "group_by"] == list(images.group_by_fields)
    with pytest.raises(QueryValidationError, match=r"sizes values \['999x999'\]"):
        UsageQuery(start_time=DAY_START, endpoint=images, filters={"sizes": ("999x999",)})
    with pytest.raises(QueryValidationError, match=r"group_by fields \['model'\]"):
        UsageQuery(start_time=DAY_START, endpoint=stores, group_by=("project_id", "model"))
    with pytest.raises(QueryValidationError, match="models is not a filter of the vector_stores"):
        UsageQuery(start_time=DAY_START, endpoint=stores, filters={"models": ("gpt-4o",)})
    with pytest.raises(QueryValidationError, match="context_levels values"):
        UsageQuery(start_time=DAY_START, endpoint=web, filters={"context_levels": ("max",)})
    with pytest.raises(QueryValidationError, match="Invalid web_search_calls usage query"):
        UsageQuery(start_time=DAY_START, endpoint=web, filters={"batch": True})


def test_the_asset_of_an_endpoint_asks_its_path_with_full_group_by(
    http: responses.RequestsMock, database_url: str, engine: Engine
) -> None:
    serve(http, "file_search_calls", day_page("file_search_calls"))
    asset = usage_asset(ENDPOINTS_BY_NAME["file_search_calls"])
    result = dg.materialize(
        [asset],
        partition_key=DAY.isoformat(),
        resources={
            "openai_admin": OpenAIAdminResource(base_url=BASE, admin_key="sk-admin-test"),
            "usage_db": UsageDatabase(url=database_url),
        },
    )
    assert result.success
    [call] = http.calls
    query = parse_qs(urlsplit(call.request.url or "").query)
    assert urlsplit(call.request.url or "").path == "/v1/organization/usage/file_search_calls"
    assert query["group_by"] == ["project_id", "user_id", "api_key_id", "vector_store_id"]
    assert query["bucket_width"] == ["1h"]
    [report] = result.asset_materializations_for_node("file_search_calls_usage_hourly")
    metadata = report.metadata
    assert metadata["dagster/row_count"].value == 48
    assert metadata["num_requests"].value == sum(11 * (h + 1) for h in range(24)) * 2
    assert metadata["dagster/table_name"].value == "openai_usage.file_search_calls_usage_hourly"
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "reloads_do_not_lose_usage" and check.passed


def test_the_readme_documents_every_usage_table_and_column() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for endpoint in USAGE_ENDPOINTS:
        assert f"`{endpoint.table_name}`" in readme, endpoint.table_name
        for column in (*endpoint.dimension_names, *endpoint.metric_names):
            assert f"`{column}`" in readme, (endpoint.name, column)
    assert "`v_vector_store_storage_daily`" in readme


def test_the_ten_usage_assets_land_exactly_what_the_simulator_served(
    database_url: str, engine: Engine
) -> None:
    """Issue 10's "done when": a day of every usage asset against the simulator, over real
    HTTP, lands row for row what the simulator's ground truth says (its own implementation)."""
    from usage_assets.simulator.server import SimulatedAdminAPI

    with SimulatedAdminAPI(max_results_per_page=7) as sim:  # buckets split across pages
        result = dg.materialize(
            USAGE_ASSETS,
            partition_key=DAY.isoformat(),
            resources={
                "openai_admin": OpenAIAdminResource(base_url=sim.base_url, admin_key="sk-admin-x"),
                "usage_db": UsageDatabase(url=database_url),
            },
        )
        assert result.success
        truth = {
            endpoint.name: [
                (hour, result)
                for hour in range(DAY_START, DAY_START + 86400, 3600)
                for result in sim.org.endpoint_hour_results(endpoint.name, hour)
            ]
            for endpoint in USAGE_ENDPOINTS
        }
    with engine.connect() as conn:
        for endpoint in USAGE_ENDPOINTS:
            columns = [*endpoint.dimension_names, *endpoint.metric_names]
            stored = conn.execute(
                text(
                    f"SELECT extract(epoch FROM bucket_start)::bigint, {', '.join(columns)} "
                    f"FROM openai_usage.{endpoint.table_name}"
                )
            ).all()
            served = [(hour, *(r.get(c) for c in columns)) for hour, r in truth[endpoint.name]]
            assert served, endpoint.name  # the demo has usage of every kind on the day
            assert sorted(map(tuple, stored), key=repr) == sorted(served, key=repr), endpoint.name
        loads = dict(
            conn.execute(text("SELECT endpoint, row_count FROM openai_usage.usage_loads")).all()
        )
    assert loads == {name: len(rows) for name, rows in truth.items()}
