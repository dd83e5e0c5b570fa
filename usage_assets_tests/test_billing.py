"""Billed costs end to end: the `costs_daily` asset, the simulator's costs endpoint over loopback
HTTP, and a real PostgreSQL; client edge cases with HTTP faked at the transport (`responses`)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
import requests
import responses
from genai_prices import data_snapshot
from sqlalchemy import Engine, text

from usage_assets.admin_api.costs import COSTS_PATH, CostsQuery, iter_costs
from usage_assets.admin_api.transport import AdminAPIClient, RetrySettings
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.billing.ingest import parse_line_item
from usage_assets.defs.resources import OpenAIAdminResource, PricingResource, UsageDatabase
from usage_assets.errors import PayloadError, QueryValidationError
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets_tests.test_ingest import ADMIN_KEY, admin_for, failure_message

from .conftest import day_reports

DAY = "2025-11-20"
DAY_START = int(dt.datetime(2025, 11, 20, tzinfo=dt.UTC).timestamp())
ONE_DAY = 86_400
#: A three-day run, as one backfill run of a partition range launches it.
RANGE = {
    "dagster/asset_partition_range_start": "2025-11-18",
    "dagster/asset_partition_range_end": "2025-11-20",
}
RANGE_START = DAY_START - 2 * ONE_DAY
COLUMNS = (
    "usage_date, project_id, line_item, line_item_model, line_item_kind, amount_usd, currency, "
    "result, api_key_id, user_id, api_source, quantity, quantity_unit, group_by"
)
#: What the costs asset asks for first: every documented grouping field.
FULL_GROUPING = ["project_id", "line_item", "api_key_id", "user_id", "api_source"]
KINDS = {"input", "cached input", "cache writes", "cache writes - 12hr", "output"}


def materialize(
    admin: OpenAIAdminResource,
    database_url: str,
    partition: str | None = DAY,
    *,
    tags: dict[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [costs_daily],
        partition_key=None if tags else partition,
        resources={
            "openai_admin": admin,
            "usage_db": UsageDatabase(url=database_url),
            "pricing": PricingResource(),
        },
        tags=tags,
        raise_on_error=False,
        instance=instance,
    )


def cost_rows(engine: Engine, *, with_ids: bool = False) -> list[tuple[Any, ...]]:
    columns = ("id, ingested_at, " if with_ids else "") + COLUMNS
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    f"SELECT {columns} FROM openai_usage.costs_daily "
                    "ORDER BY usage_date, project_id NULLS FIRST, line_item, "
                    "api_key_id NULLS FIRST, user_id NULLS FIRST, api_source NULLS FIRST"
                )
            )
        ]


def db_billed_by_project(engine: Engine, day: dt.date | None = None) -> dict[str | None, Decimal]:
    where = "WHERE usage_date = :day" if day else ""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT project_id, sum(amount_usd) FROM openai_usage.costs_daily {where} "
                "GROUP BY project_id"
            ),
            {"day": day},
        )
        return {project: amount for project, amount in rows}


def http_costs(sim: SimulatedAdminAPI, start: int, end: int, **params: Any) -> list[Any]:
    """Every bucket of the simulator's costs endpoint, with plain requests (no product code)."""
    query: dict[str, Any] = {
        "start_time": start,
        "end_time": end,
        "group_by": ["project_id", "line_item"],
        "limit": 180,
    }
    query.update(params)
    buckets: list[Any] = []
    while True:
        response = requests.get(sim.base_url + COSTS_PATH, params=query, timeout=10)
        response.raise_for_status()
        page = response.json(parse_float=Decimal)
        buckets.extend(page["data"])
        if not page["has_more"]:
            return buckets
        query["page"] = page["next_page"]


def billed_by_project(buckets: list[Any]) -> dict[str | None, Decimal]:
    totals: dict[str | None, Decimal] = {}
    for bucket in buckets:
        for result in bucket["results"]:
            value = Decimal(result["amount"]["value"])  # a Decimal (number) or a str (string)
            totals[result["project_id"]] = totals.get(result["project_id"], Decimal(0)) + value
    return totals


# ---------------------------------------------------------------------------- end to end


def test_costs_partition_lands_the_simulators_bill(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    result = materialize(admin_for(simulator), database_url)
    assert result.success

    buckets = http_costs(simulator, DAY_START, DAY_START + ONE_DAY, group_by=FULL_GROUPING)
    truth = billed_by_project(buckets)
    assert db_billed_by_project(engine) == truth  # exact: numeric, not float
    assert len(truth) >= 3 and None in truth  # the default project is billed too
    values = [r["amount"]["value"] for r in buckets[0]["results"]]
    assert any(isinstance(v, str) for v in values) and any(isinstance(v, Decimal) for v in values)
    # The finer rows add up to the bill by project and line item (up to a float's rounding).
    coarse = billed_by_project(http_costs(simulator, DAY_START, DAY_START + ONE_DAY))
    assert coarse.keys() == truth.keys()
    assert all(abs(coarse[p] - truth[p]) < Decimal("1e-12") for p in truth)

    rows = cost_rows(engine)
    assert len(rows) == len(buckets[0]["results"])
    completions_models = {stream.model.name for stream in simulator.org.streams}
    units = set()
    for row in rows:
        usage_date, _project, line_item, model, kind, _amount, currency, stored = row[:8]
        assert usage_date == dt.date(2025, 11, 20)
        assert currency == "usd"
        assert stored["object"] == "organization.costs.result"
        _key, _user, source, quantity, unit, group_by = row[8:]
        assert quantity > 0 and unit == stored["quantity_unit"]
        assert group_by == FULL_GROUPING
        units.add(unit)
        if model not in completions_models:  # the bill of the other usage endpoints
            continue
        assert f"{model}, {kind}" == line_item and kind in KINDS
        assert source in {"agents_api", "unlabeled"}
        assert unit == "tokens" and quantity == stored["quantity"]
    assert {"tokens", "images", "calls", "gibibyte_hours"} <= units
    assert {row[8] is None for row in rows} == {True, False}  # service-account keys: no user
    assert len({row[8] for row in rows}) > 5 and len({row[9] for row in rows}) > 5

    [materialization] = day_reports(result, "costs_daily")
    metadata = materialization.metadata
    total = sum(truth.values(), Decimal(0))
    assert metadata["dagster/row_count"].value == len(rows)
    assert metadata["dagster/table_name"].value == "openai_usage.costs_daily"
    assert metadata["billed_usd"].value == pytest.approx(float(total))
    assert metadata["billed_usd_exact"].value == str(total)
    assert metadata["projects"].value == len(truth)
    assert "(default project)" in str(metadata["top_projects_by_billed_usd"].value)
    assert metadata["simulated"].value is False
    assert metadata["api_requests"].value == 1

    [(path, sent)] = simulator.requests[:1]
    assert path == "/v1/organization/costs"
    assert sent["bucket_width"] == ["1d"]
    assert sent["group_by"] == FULL_GROUPING
    assert materialization.metadata["group_by"].value == ",".join(FULL_GROUPING)
    assert sent["start_time"] == [str(DAY_START)] and sent["end_time"] == [str(DAY_START + ONE_DAY)]


def test_rerun_gives_identical_content_and_a_range_lands_every_day(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    assert materialize(admin_for(simulator), database_url).success
    first = cost_rows(engine)
    assert materialize(admin_for(simulator), database_url).success
    assert cost_rows(engine) == first

    result = materialize(admin_for(simulator), database_url, tags=RANGE)
    assert result.success
    assert [r for r in cost_rows(engine) if r[0] == dt.date(2025, 11, 20)] == first
    buckets = http_costs(simulator, RANGE_START, DAY_START + ONE_DAY, group_by=FULL_GROUPING)
    assert len(buckets) == 3
    for bucket in buckets:
        day = dt.datetime.fromtimestamp(bucket["start_time"], dt.UTC).date()
        assert db_billed_by_project(engine, day) == billed_by_project([bucket])
    materializations = day_reports(result, "costs_daily")
    assert sorted(m.partition or "" for m in materializations) == [
        "2025-11-18",
        "2025-11-19",
        "2025-11-20",
    ]
    # Each partition's metadata is true for that day, not the range's total.
    for materialization in materializations:
        day = dt.date.fromisoformat(materialization.partition or "")
        assert materialization.metadata["usage_dates"].value == day.isoformat()
        assert materialization.metadata["billed_usd_exact"].value == str(
            sum(db_billed_by_project(engine, day).values())
        )


def test_no_key_bills_the_built_in_simulator_and_says_so(engine: Engine, database_url: str) -> None:
    result = materialize(OpenAIAdminResource(), database_url)
    assert result.success
    [materialization] = day_reports(result, "costs_daily")
    assert materialization.metadata["simulated"].value is True
    assert "SIMULATED" in str(materialization.metadata["data_source"].value)
    assert materialization.metadata["billed_usd"].value > 0
    assert any("SIMULATED" in str(event) for event in result.all_events)


def test_amounts_as_strings_and_numbers_land_exactly(engine: Engine, database_url: str) -> None:
    org = SyntheticOrganization()
    project = org.projects[0].id
    org.billed_amount_overrides = {
        (DAY, project, "gpt-4o-2024-08-06, input"): {
            "value": "0.1000000000000000055511151231257827",
            "currency": "usd",
        },
        (DAY, project, "custom-model, output"): {"value": 1234.5678901234, "currency": "USD"},
        (DAY, project, "Fine-tuning training"): {"value": 7, "currency": "usd"},
        (DAY, None, "ft:gpt-4o-mini:acme::x, y, cache writes - 12hr"): {
            "value": "-2.50",
            "currency": "usd",
        },
    }
    with SimulatedAdminAPI(org=org) as sim:
        assert materialize(admin_for(sim), database_url).success
    with engine.connect() as conn:
        stored = {
            row.line_item: row
            for row in conn.execute(
                text(
                    "SELECT line_item, line_item_model, line_item_kind, amount_usd::text AS "
                    "amount, currency, jsonb_typeof(result->'amount'->'value') AS sent_as, "
                    "result->'amount'->>'value' AS sent FROM openai_usage.costs_daily "
                    "WHERE project_id IS NOT DISTINCT FROM :p OR line_item LIKE 'ft:%'"
                ),
                {"p": project},
            )
        }
    string = stored["gpt-4o-2024-08-06, input"]
    assert string.amount == "0.1000000000000000055511151231257827"
    assert (string.sent_as, string.sent) == ("string", "0.1000000000000000055511151231257827")
    number = stored["custom-model, output"]
    assert number.amount == "1234.5678901234"
    assert (number.sent_as, number.sent) == ("number", "1234.5678901234")
    assert (number.line_item_model, number.line_item_kind, number.currency) == (
        "custom-model",
        "output",
        "usd",
    )
    unparsed = stored["Fine-tuning training"]
    assert (unparsed.amount, unparsed.line_item_model, unparsed.line_item_kind) == ("7", None, None)
    credit = stored["ft:gpt-4o-mini:acme::x, y, cache writes - 12hr"]
    assert credit.amount == "-2.50"
    assert (credit.line_item_model, credit.line_item_kind) == (
        "ft:gpt-4o-mini:acme::x, y",
        "cache writes - 12hr",
    )


def test_malformed_amounts_fail_before_any_write(engine: Engine, database_url: str) -> None:
    overrides: dict[tuple[str, str | None, str | None], Any] = {}
    org = SyntheticOrganization(billed_amount_overrides=overrides)
    project = org.projects[1].id
    with SimulatedAdminAPI(org=org) as sim:
        assert materialize(admin_for(sim), database_url, tags=RANGE).success
        good = cost_rows(engine, with_ids=True)  # ids change whenever a day is rewritten
        assert {r[2] for r in good} == {
            dt.date(2025, 11, 18),
            dt.date(2025, 11, 19),
            dt.date(2025, 11, 20),
        }
        line_item = "gpt-5-2025-08-07, output"
        for amount, expected in [
            ({"currency": "usd"}, "amount.value is missing"),
            ({"value": "12,50", "currency": "usd"}, "amount.value='12,50' is not a decimal"),
            ({"value": "NaN", "currency": "usd"}, "amount.value='NaN' is not a decimal"),
            ({"value": True, "currency": "usd"}, "amount.value=True is not a decimal amount"),
            ({"value": None, "currency": "usd"}, "amount.value=None is not a decimal amount"),
            (None, "amount=None is missing or not an object"),
            ({"value": "1.5", "currency": "eur"}, "amount.currency='eur'"),
        ]:
            # The bad line item is on the last day: the first two days must not be written.
            overrides.clear()
            overrides[(DAY, project, line_item)] = amount
            result = materialize(admin_for(sim), database_url, tags=RANGE)
            assert not result.success
            message = failure_message(result)
            assert "PayloadError" in message and expected in message, message
            assert "2025-11-20" in message and line_item in message
            assert cost_rows(engine, with_ids=True) == good


def test_paging_faults_and_retries(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        sim.faults.add("status", status=429, retry_after=0, times=2, path=COSTS_PATH)
        assert materialize(admin_for(sim), database_url, tags=RANGE).success
        assert len(sim.requests) == 3
        good = cost_rows(engine, with_ids=True)
        for kind, tags, expected in [
            ("repeat_cursor", RANGE, "paging loop"),
            ("drift", None, "amount.value"),
            ("outside_window", None, "outside the requested window"),
            ("outside_window", RANGE, "Cost buckets out of order"),
        ]:
            sim.faults.add(kind, times=2, path=COSTS_PATH)
            result = materialize(admin_for(sim), database_url, tags=tags)
            assert not result.success
            assert expected in failure_message(result)
            assert cost_rows(engine, with_ids=True) == good
            sim.faults.clear()


# ---------------------------------------------------------------------------- the client


def test_client_follows_next_page_across_small_pages(simulator: SimulatedAdminAPI) -> None:
    client = AdminAPIClient(simulator.base_url, None)
    start, end = RANGE_START, DAY_START + ONE_DAY
    group_by = ("project_id", "line_item")
    paged = list(iter_costs(client, CostsQuery(start, end, group_by=group_by, limit=1)))
    assert client.request_count == 3
    assert [b.start_time for b in paged] == [start, start + ONE_DAY, start + 2 * ONE_DAY]
    assert "page" not in simulator.requests[0][1]
    assert all("page" in sent for _, sent in simulator.requests[1:3])
    whole = list(iter_costs(client, CostsQuery(start, end, group_by=group_by, limit=7)))
    assert client.request_count == 4
    assert [b.results for b in paged] == [b.results for b in whole]
    buckets = http_costs(simulator, start, end)
    assert {(b.day, r.project_id, r.line_item): r.amount for b in paged for r in b.results} == {
        (
            dt.datetime.fromtimestamp(b["start_time"], dt.UTC).date(),
            r["project_id"],
            r["line_item"],
        ): Decimal(r["amount"]["value"])
        for b in buckets
        for r in b["results"]
    }


def test_only_daily_buckets() -> None:
    with pytest.raises(QueryValidationError, match="bucket_width must be '1d'"):
        CostsQuery(DAY_START, bucket_width="1h")
    with pytest.raises(QueryValidationError, match="between 1 and 180"):
        CostsQuery(DAY_START, limit=181)
    with pytest.raises(QueryValidationError, match="group_by fields \\['model'\\]"):
        CostsQuery(DAY_START, group_by=("model",))
    assert CostsQuery(DAY_START, DAY_START + ONE_DAY, group_by=("line_item",)).to_params() == [
        ("start_time", str(DAY_START)),
        ("end_time", str(DAY_START + ONE_DAY)),
        ("bucket_width", "1d"),
        ("group_by", "line_item"),
    ]


BASE_URL = "https://api.test.example/v1"


def _page(data: list[Any], next_page: str | None = None) -> str:
    return json.dumps(
        {"object": "page", "data": data, "has_more": next_page is not None, "next_page": next_page}
    )


def _bucket(start: int, results: list[str], width: int = ONE_DAY) -> dict[str, Any]:
    # Results as raw JSON text, so that numbers keep every digit on the wire.
    return {"object": "bucket", "start_time": start, "end_time": start + width, "results": results}


def _raw(page: str, bucket_results: list[list[str]]) -> str:
    """Splice raw result JSON into a page whose buckets hold placeholders."""
    for results in bucket_results:
        page = page.replace('"@@"', ",".join(results), 1)
    return page


def _result(value: str, line_item: str = "gpt-4o, input", project: str = "proj_a") -> str:
    return (
        '{"object": "organization.costs.result", "amount": {"value": ' + value + ", "
        '"currency": "usd"}, "line_item": "' + line_item + '", "project_id": "' + project + '"}'
    )


@responses.activate
def test_client_parses_amounts_exactly_and_merges_split_buckets() -> None:
    url = BASE_URL + COSTS_PATH
    first = _raw(
        _page([_bucket(DAY_START, ["@@"])], "page_2"),
        [[_result("0.1000000000000000055511151231257827"), _result('"12.000"', "gpt-4o, output")]],
    )
    second = _raw(
        _page([_bucket(DAY_START, ["@@"]), _bucket(DAY_START + ONE_DAY, ["@@"])]),
        [[_result("3", "gpt-4o, cached input")], [_result("1e-7")]],
    )
    responses.get(url, body=first)
    responses.get(url, body=second)
    client = AdminAPIClient(BASE_URL, ADMIN_KEY)
    query = CostsQuery(DAY_START, DAY_START + 2 * ONE_DAY, group_by=("project_id", "line_item"))
    day_one, day_two = iter_costs(client, query)
    assert [(r.line_item, r.amount) for r in day_one.results] == [
        ("gpt-4o, input", Decimal("0.1000000000000000055511151231257827")),
        ("gpt-4o, output", Decimal("12.000")),
        ("gpt-4o, cached input", Decimal(3)),
    ]
    assert [r.amount for r in day_two.results] == [Decimal("1e-7")]
    assert responses.calls[1].request.url is not None
    assert "page=page_2" in responses.calls[1].request.url


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ([_bucket(DAY_START, ["@@"], width=3600)], "is not one UTC day"),
        ([_bucket(DAY_START + 3600, ["@@"])], "is not one UTC day"),
        ([_bucket(DAY_START + 5 * ONE_DAY, ["@@"])], "outside the requested window"),
    ],
)
@responses.activate
def test_client_rejects_buckets_that_are_not_the_requested_days(
    buckets: list[Any], expected: str
) -> None:
    responses.get(BASE_URL + COSTS_PATH, body=_raw(_page(buckets), [[_result("1")]]))
    client = AdminAPIClient(BASE_URL, ADMIN_KEY, retry=RetrySettings(max_attempts=1))
    with pytest.raises(PayloadError, match=expected):
        list(iter_costs(client, CostsQuery(DAY_START, DAY_START + ONE_DAY)))


@responses.activate
def test_client_rejects_a_line_item_listed_twice() -> None:
    page = _raw(_page([_bucket(DAY_START, ["@@"])]), [[_result("1"), _result('"2"')]])
    responses.get(BASE_URL + COSTS_PATH, body=page)
    client = AdminAPIClient(BASE_URL, ADMIN_KEY)
    with pytest.raises(PayloadError, match="listed twice"):
        list(iter_costs(client, CostsQuery(DAY_START, DAY_START + ONE_DAY)))


@pytest.mark.parametrize(
    ("line_item", "expected"),
    [
        ("gpt-4o-2024-08-06, input", ("gpt-4o-2024-08-06", "input")),
        ("gpt-4o-mini-2024-07-18, cached input", ("gpt-4o-mini-2024-07-18", "cached input")),
        ("gpt-5, cache writes - 12hr", ("gpt-5", "cache writes - 12hr")),
        ("ft:gpt-4o-mini:acme:a, b::x, output", ("ft:gpt-4o-mini:acme:a, b::x", "output")),
        ("Fine-tuning training", (None, None)),
        ("gpt-4o,input", (None, None)),
        (None, (None, None)),
    ],
)
def test_line_item_parsing(line_item: str | None, expected: tuple[str | None, ...]) -> None:
    assert parse_line_item(line_item) == expected


# ---------------------------------------------------------------------------- the simulator


def test_simulated_bill_is_priced_usage_within_half_a_percent(
    simulator: SimulatedAdminAPI,
) -> None:
    """Output line items against usage priced independently with genai-prices."""
    snapshot = data_snapshot.get_snapshot()
    expected: dict[tuple[str | None, str], Decimal] = {}
    other_tiers: set[tuple[str | None, str]] = set()  # billed at flex/priority rates
    for hour in range(DAY_START, DAY_START + ONE_DAY, 3600):
        for r in simulator.org.hour_results(hour):
            if r["service_tier"] not in ("default", "scale"):
                other_tiers.add((r["project_id"], r["model"]))
            if r["output_audio_tokens"]:
                continue
            _, info = snapshot.find_provider_model(r["model"], None, "openai", None)
            rate = info.get_prices(dt.datetime(2025, 11, 20, 12, tzinfo=dt.UTC)).output_mtok
            assert isinstance(rate, Decimal)
            usd = r["output_tokens"] * rate / 1_000_000 * (Decimal("0.5") if r["batch"] else 1)
            key = (r["project_id"], r["model"])
            expected[key] = expected.get(key, Decimal(0)) + usd
    [bucket] = http_costs(simulator, DAY_START, DAY_START + ONE_DAY)
    billed = {
        (r["project_id"], r["line_item"].removesuffix(", output")): Decimal(r["amount"]["value"])
        for r in bucket["results"]
        if r["line_item"].endswith(", output")
    }
    compared = 0
    for key, usd in expected.items():
        if key in other_tiers:
            continue
        assert abs(billed[key] / usd - 1) <= Decimal("0.005"), key
        compared += 1
    assert compared >= 10
    assert any(billed[key] != usd for key, usd in expected.items())  # noisy, not an estimate


@pytest.mark.parametrize(
    "day",
    [dt.date(2025, 11, 20), dt.date(2025, 6, 2)],
    ids=["with-the-30m-field", "without-the-30m-field"],
)
def test_simulated_bill_prices_each_cache_write_once(
    simulator: SimulatedAdminAPI, day: dt.date
) -> None:
    """The bill follows the API reference: `input_cache_write_tokens` is the total of both
    retentions, so "cache writes" bills the 30-minute part (the 30m field, else total - 12h)
    and "cache writes - 12hr" the 12-hour part, each once; "input" is what is left."""
    snapshot = data_snapshot.get_snapshot()
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    when = dt.datetime.combine(day, dt.time(12), dt.UTC)
    expected: dict[tuple[str | None, str], Decimal] = {}
    other_tiers: set[tuple[str | None, str]] = set()  # billed at flex/priority rates
    saw_30m_field = False
    for hour in range(start, start + ONE_DAY, 3600):
        for r in simulator.org.hour_results(hour):
            if r["service_tier"] not in ("default", "scale"):
                other_tiers.add((r["project_id"], r["model"]))
            _, info = snapshot.find_provider_model(r["model"], None, "openai", None)
            prices = info.get_prices(when)
            input_rate = prices.input_mtok
            write_rate = prices.cache_write_mtok or input_rate
            write_12h_rate = getattr(prices, "cache_write_12h_mtok", None) or write_rate
            assert isinstance(input_rate, Decimal) and isinstance(write_12h_rate, Decimal)
            total, write_12h = r["input_cache_write_tokens"], r["input_cache_write_12h_tokens"]
            saw_30m_field |= "input_cache_write_30m_tokens" in r
            write_30m = r.get("input_cache_write_30m_tokens", total - write_12h)
            audio = r["input_audio_tokens"]
            uncached = r["input_tokens"] - r["input_cached_tokens"] - total - audio
            factor = Decimal("0.5") if r["batch"] else Decimal(1)
            for kind, usd in (
                ("cache writes", write_30m * write_rate),
                ("cache writes - 12hr", write_12h * write_12h_rate),
                ("input", uncached * input_rate + audio * Decimal(40)),
            ):
                key = (r["project_id"], f"{r['model']}, {kind}")
                expected[key] = expected.get(key, Decimal(0)) + usd * factor / 1_000_000
    assert saw_30m_field is (day >= simulator.org.cache_write_30m_since)
    [bucket] = http_costs(simulator, start, start + ONE_DAY)
    billed = {(r["project_id"], r["line_item"]): Decimal(r["amount"]["value"])
              for r in bucket["results"]}  # fmt: skip
    compared = set()
    for (project, line_item), usd in expected.items():
        if (project, line_item.rsplit(", ", 1)[0]) in other_tiers or usd == 0:
            continue
        assert abs(billed[(project, line_item)] / usd - 1) <= Decimal("0.005"), line_item
        compared.add(line_item.rsplit(", ", 1)[1])
    assert compared == {"cache writes", "cache writes - 12hr", "input"}


def test_simulated_costs_endpoint_validates_and_groups(simulator: SimulatedAdminAPI) -> None:
    url = simulator.base_url + COSTS_PATH
    for params, message in [
        ({"start_time": DAY_START, "bucket_width": "1h"}, "bucket_width"),
        ({"start_time": DAY_START, "limit": 181}, "between 1 and 180"),
        ({"start_time": DAY_START, "limit": 0}, "between 1 and 180"),
        ({"start_time": DAY_START, "group_by": "model"}, "group_by"),
        ({"end_time": DAY_START}, "start_time"),
    ]:
        response = requests.get(url, params=params, timeout=10)
        assert response.status_code == 400, params
        assert message in response.json()["error"]["message"]

    end = DAY_START + ONE_DAY
    [grouped] = http_costs(simulator, DAY_START, end)
    by_project = billed_by_project([grouped])
    [ungrouped] = http_costs(simulator, DAY_START, end, group_by=[])
    [total] = ungrouped["results"]
    assert (total["project_id"], total["line_item"]) == (None, None)
    # Sums are exact in Decimal; a sum sent as a JSON number carries a float's 17 digits.
    assert abs(Decimal(total["amount"]["value"]) - sum(by_project.values())) < Decimal("1e-12")
    [by_line] = http_costs(simulator, DAY_START, end, group_by=["line_item"])
    assert all(r["project_id"] is None for r in by_line["results"])
    project = simulator.org.projects[0].id
    [filtered] = http_costs(simulator, DAY_START, end, project_ids=[project])
    assert {r["project_id"] for r in filtered["results"]} == {project}
    assert billed_by_project([filtered]) == {project: by_project[project]}
    # Default limit: 7 daily buckets a page.
    page = requests.get(url, params={"start_time": DAY_START, "end_time": end + 9 * ONE_DAY})
    assert len(page.json()["data"]) == 7 and page.json()["has_more"] is True
