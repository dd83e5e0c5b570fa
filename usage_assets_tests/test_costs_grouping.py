"""Billed costs by every grouping the organization allows: project, line item, API key, user and
API source, with quantity and unit; the fallback to a coarser grouping on a group_by 400, the
grouping recorded per row; reconciliation over the finer rows; unknown line items kept."""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
import requests
import responses
from sqlalchemy import Engine, text

from usage_assets.admin_api.costs import COSTS_PATH, CostsQuery, iter_costs
from usage_assets.admin_api.transport import AdminAPIClient, RetrySettings
from usage_assets.defs.billing.ingest import COSTS_GROUPINGS, fetch_cost_days
from usage_assets.errors import AdminAPIError, PayloadError
from usage_assets.pricing.attribution import reconcile
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets_tests.test_billing import (
    BASE_URL,
    DAY,
    DAY_START,
    FULL_GROUPING,
    ONE_DAY,
    billed_by_project,
    cost_rows,
    db_billed_by_project,
    http_costs,
    materialize,
)
from usage_assets_tests.test_ingest import ADMIN_KEY, admin_for, failure_message

THE_DAY = dt.date(2025, 11, 20)
WITHOUT_USER = ["project_id", "line_item", "api_key_id", "api_source"]


def sent_groupings(sim: SimulatedAdminAPI) -> list[list[str]]:
    return [sent.get("group_by", []) for path, sent in sim.requests if path.endswith(COSTS_PATH)]


# ---------------------------------------------------------------------------- the fallback


def test_an_organization_without_user_grouping_gets_the_next_grouping_recorded(
    engine: Engine, database_url: str
) -> None:
    org = SyntheticOrganization(costs_user_grouping=False)
    with SimulatedAdminAPI(org=org) as sim:
        refused = requests.get(
            sim.base_url + COSTS_PATH,
            params={"start_time": DAY_START, "group_by": FULL_GROUPING},
            timeout=10,
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "group_by"
        assert "user_id together with project_id" in refused.json()["error"]["message"]
        sim.requests.clear()

        with dg.DagsterInstance.ephemeral() as instance:
            result = materialize(admin_for(sim), database_url, instance=instance)
            messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
        assert result.success
        assert sent_groupings(sim) == [FULL_GROUPING, WITHOUT_USER]
        assert any("refused group_by" in m and str(WITHOUT_USER) in m for m in messages)
        rows = cost_rows(engine)
        assert rows and all(row[13] == WITHOUT_USER for row in rows)
        assert all(row[9] is None for row in rows)  # no user: not grouped by it
        assert any(row[8] is not None for row in rows)  # still split by API key
        truth = billed_by_project(
            http_costs(sim, DAY_START, DAY_START + ONE_DAY, group_by=WITHOUT_USER)
        )
        assert db_billed_by_project(engine) == truth
        [materialization] = list(result.asset_materializations_for_node("costs_daily"))
        assert materialization.metadata["group_by"].value == ",".join(WITHOUT_USER)

        # Re-running the day gives the same content, fallback and all.
        assert materialize(admin_for(sim), database_url).success
        assert cost_rows(engine) == rows


def test_a_400_not_about_grouping_fails_at_once(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        assert materialize(admin_for(sim), database_url).success
        good = cost_rows(engine, with_ids=True)
        sim.requests.clear()
        sim.faults.add("status", status=400, path=COSTS_PATH)
        result = materialize(admin_for(sim), database_url)
        assert not result.success
        message = failure_message(result)
        assert "AdminAPIError" in message and "400" in message, message
        assert sent_groupings(sim) == [FULL_GROUPING]  # no coarser grouping asked
        assert cost_rows(engine, with_ids=True) == good


def _refusal(message: str, param: str | None = "group_by") -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param}}


def _empty_day() -> dict[str, Any]:
    bucket = {"object": "bucket", "start_time": DAY_START, "end_time": DAY_START + ONE_DAY}
    return {"object": "page", "data": [bucket | {"results": []}], "has_more": False}


@responses.activate
def test_the_fallback_order_and_when_even_project_and_line_item_are_refused() -> None:
    client = AdminAPIClient(BASE_URL, ADMIN_KEY, retry=RetrySettings(max_attempts=1))
    for _ in COSTS_GROUPINGS:
        responses.get(BASE_URL + COSTS_PATH, status=400, json=_refusal("Unsupported grouping"))
    with pytest.raises(AdminAPIError, match="refused every grouping") as caught:
        fetch_cost_days(client, THE_DAY, THE_DAY + dt.timedelta(days=1))
    assert caught.value.status == 400
    asked = [
        tuple(parse_qs(urlsplit(call.request.url or "").query)["group_by"])
        for call in responses.calls
    ]
    assert asked == list(COSTS_GROUPINGS)
    assert COSTS_GROUPINGS[0] == tuple(FULL_GROUPING)
    assert COSTS_GROUPINGS[-1] == ("project_id", "line_item")

    # Accepted on the third grouping: the days carry it.
    responses.reset()
    for _ in range(2):
        responses.get(BASE_URL + COSTS_PATH, status=400, json=_refusal("no user grouping"))
    responses.get(BASE_URL + COSTS_PATH, json=_empty_day())
    [day] = fetch_cost_days(client, THE_DAY, THE_DAY + dt.timedelta(days=1))
    assert day.group_by == COSTS_GROUPINGS[2]

    # A 400 about something else is not retried with another grouping.
    responses.reset()
    responses.get(
        BASE_URL + COSTS_PATH, status=400, json=_refusal("end_time is too far", "end_time")
    )
    with pytest.raises(AdminAPIError, match="end_time is too far"):
        fetch_cost_days(client, THE_DAY, THE_DAY + dt.timedelta(days=1))
    assert len(responses.calls) == 1


def test_fallback_warns(caplog: pytest.LogCaptureFixture) -> None:
    org = SyntheticOrganization(costs_user_grouping=False)
    with SimulatedAdminAPI(org=org) as sim:
        client = AdminAPIClient(sim.base_url, ADMIN_KEY)
        with caplog.at_level(logging.WARNING, logger=client.log.name):
            [day] = fetch_cost_days(client, THE_DAY, THE_DAY + dt.timedelta(days=1))
    assert day.group_by == tuple(WITHOUT_USER)
    assert any("refused group_by" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------------------- the client


def _result(**fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "object": "organization.costs.result",
        "amount": {"value": "1.25", "currency": "usd"},
        "line_item": "gpt-4o, input",
        "project_id": "proj_a",
    }
    result.update(fields)
    return result


def _costs(results: list[dict[str, Any]]) -> list[Any]:
    page = _empty_day()
    page["data"][0]["results"] = results
    responses.get(BASE_URL + COSTS_PATH, body=json.dumps(page))
    client = AdminAPIClient(BASE_URL, ADMIN_KEY, retry=RetrySettings(max_attempts=1))
    query = CostsQuery(DAY_START, DAY_START + ONE_DAY, group_by=tuple(FULL_GROUPING))
    [bucket] = iter_costs(client, query)
    return bucket.results


@responses.activate
def test_client_parses_quantity_unit_and_the_finer_key() -> None:
    a, b, c, d = _costs(
        [
            _result(quantity="1.5", quantity_unit="gibibyte_hours", api_key_id="key_1"),
            _result(quantity=1200, quantity_unit="tokens", user_id="user-1", api_source="x"),
            _result(quantity=None, quantity_unit=None, user_id="user-2"),
            _result(quantity=0.25, quantity_unit="a unit nobody documented"),
        ]
    )
    assert (a.quantity, a.quantity_unit, a.api_key_id, a.user_id) == (
        Decimal("1.5"),
        "gibibyte_hours",
        "key_1",
        None,
    )
    assert (b.quantity, b.quantity_unit, b.user_id, b.api_source) == (
        Decimal(1200),
        "tokens",
        "user-1",
        "x",
    )
    assert (c.quantity, c.quantity_unit, c.user_id) == (None, None, "user-2")
    assert (d.quantity, d.quantity_unit) == (Decimal("0.25"), "a unit nobody documented")
    assert len({r.key for r in (a, b, c, d)}) == 4  # same line item, different key/user


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([_result(user_id="u"), _result(user_id="u")], "user_id='u', api_source=None is listed"),
        ([_result(quantity="lots")], "quantity='lots' is not a decimal"),
        ([_result(quantity=True)], "quantity=True is not a decimal"),
        ([_result(quantity_unit=7)], "quantity_unit=7 is not a string"),
        ([_result(api_key_id="key_\x00")], "api_key_id='key_\\\\x00' contains a NUL"),
        ([_result(user_id="u\x00")], "user_id='u\\\\x00' contains a NUL"),
        ([_result(api_source=3)], "api_source=3 is not a string"),
    ],
)
@responses.activate
def test_client_refuses_bad_finer_fields(results: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(PayloadError, match=expected):
        _costs(results)


# ---------------------------------------------------------------------------- kept and summed


def test_line_items_of_unknown_kinds_are_kept(engine: Engine, database_url: str) -> None:
    # An organization that uses completions only, so that the odd line items alone make up
    # their families' bill.
    later = dt.date.fromisoformat(DAY) + dt.timedelta(days=1)
    others = ("images", "web_search_calls", "vector_stores", "code_interpreter_sessions")
    org = SyntheticOrganization(endpoint_since=dict.fromkeys(others, later))
    project = org.projects[0].id
    odd = {
        "web search tool calls": (None, None),
        "vector store storage": (None, None),
        "gpt-image-1, image generation": ("gpt-image-1", "image generation"),
        "code interpreter sessions": (None, None),
    }
    org.billed_amount_overrides = {
        (DAY, project, line_item): {"value": "0.75", "currency": "usd"} for line_item in odd
    }
    with SimulatedAdminAPI(org=org) as sim:
        assert materialize(admin_for(sim), database_url).success
    with engine.connect() as conn:
        stored = {
            line_item: (model, kind, amount)
            for line_item, model, kind, amount in conn.execute(
                text(
                    "SELECT line_item, line_item_model, line_item_kind, amount_usd "
                    "FROM openai_usage.costs_daily WHERE project_id = :p"
                ),
                {"p": project},
            )
        }
    for line_item, parsed in odd.items():
        assert stored[line_item] == (*parsed, Decimal("0.75")), line_item
    # ...and the reconciliation bills them to their project, like any other line item.
    result = reconcile(engine, THE_DAY, THE_DAY + dt.timedelta(days=1), 0.01)
    [gap] = [g for g in result.projects if g.project_id == project]
    assert gap.billed_usd == db_billed_by_project(engine)[project]
    # Each in its line-item family (not compared as a completions model and token kind).
    families = {g.what: g.billed_usd for g in result.families if g.project_id == project}
    for family in others:
        assert families[family] == Decimal("0.75"), family
    line_gaps = {g.what for g in result.line_items if g.project_id == project}
    assert "gpt-image-1, image generation" not in line_gaps and "None, None" not in line_gaps


SPLIT_ROWS = [
    # (project, line item, key, user, source, amount)
    ("proj_a", "gpt-4o, output", "key_1", "user-1", "unlabeled", "1.10"),
    ("proj_a", "gpt-4o, output", "key_1", "user-2", "unlabeled", "2.20"),
    ("proj_a", "gpt-4o, output", "key_2", None, "agents_api", "0.30"),
    ("proj_a", "gpt-4o, input", "key_2", None, "unlabeled", "0.40"),
    (None, "gpt-4o, output", None, "user-3", "unlabeled", "5.00"),
    (None, "gpt-4o, output", None, None, "unlabeled", "0.05"),
]


def test_reconciliation_and_the_bi_view_sum_finer_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        for project, line_item, key, user, source, amount in SPLIT_ROWS:
            model, kind = line_item.split(", ")
            conn.execute(
                text(
                    "INSERT INTO openai_usage.costs_daily (usage_date, project_id, line_item, "
                    "line_item_model, line_item_kind, amount_usd, currency, result, api_key_id, "
                    "user_id, api_source, group_by) VALUES (:d, :p, :li, :m, :k, :a, 'usd', "
                    "'{}', :key, :user, :source, :g)"
                ),
                {
                    "d": THE_DAY,
                    "p": project,
                    "li": line_item,
                    "m": model,
                    "k": kind,
                    "a": Decimal(amount),
                    "key": key,
                    "user": user,
                    "source": source,
                    "g": FULL_GROUPING,
                },
            )
    result = reconcile(engine, THE_DAY, THE_DAY + dt.timedelta(days=1), 0.01)
    assert {(g.project_id, g.billed_usd) for g in result.projects} == {
        ("proj_a", Decimal("4.00")),
        (None, Decimal("5.05")),
    }
    assert {(g.project_id, g.what, g.billed_usd) for g in result.line_items} == {
        ("proj_a", "gpt-4o, output", Decimal("3.60")),
        ("proj_a", "gpt-4o, input", Decimal("0.40")),
        (None, "gpt-4o, output", Decimal("5.05")),
    }
    with engine.connect() as conn:
        view = set(
            conn.execute(
                text(
                    "SELECT project_id, billed_usd FROM openai_usage.v_estimated_vs_billed "
                    "WHERE usage_date = :d"
                ),
                {"d": THE_DAY},
            )
        )
    assert view == {("proj_a", Decimal("4.00")), (None, Decimal("5.05"))}


def test_finer_and_coarser_groupings_reconcile_to_the_same_totals(
    engine: Engine, database_url: str
) -> None:
    totals = []
    for org in (SyntheticOrganization(), SyntheticOrganization(costs_user_grouping=False)):
        with SimulatedAdminAPI(org=org) as sim:
            assert materialize(admin_for(sim), database_url).success
            coarse = billed_by_project(http_costs(sim, DAY_START, DAY_START + ONE_DAY))
        result = reconcile(engine, THE_DAY, THE_DAY + dt.timedelta(days=1), 0.01)
        totals.append({g.project_id: g.billed_usd for g in result.projects})
        assert totals[-1].keys() == coarse.keys()
        for project, billed in coarse.items():  # the bill by project and line item, in total
            assert abs(totals[-1][project] - billed) < Decimal("1e-12"), project
    finer, without_user = totals
    assert sum(finer.values()) != 0
    assert abs(sum(finer.values()) - sum(without_user.values())) < Decimal("1e-12")


# ---------------------------------------------------------------------------- the simulator


def test_simulator_splits_the_bill_by_key_user_and_source(simulator: SimulatedAdminAPI) -> None:
    """Quantities are the usage's tokens (computed here from the usage itself), per key, user
    and source; a grouping without line_item has no quantity; every grouping adds up."""
    output_tokens: dict[tuple[Any, ...], int] = {}
    for hour in range(DAY_START, DAY_START + ONE_DAY, 3600):
        for r in simulator.org.hour_results(hour):
            key = (
                r["project_id"],
                f"{r['model']}, output",
                r["api_key_id"],
                r["user_id"],
                r["api_source"],
            )
            output_tokens[key] = output_tokens.get(key, 0) + r["output_tokens"]
    [bucket] = http_costs(simulator, DAY_START, DAY_START + ONE_DAY, group_by=FULL_GROUPING)
    served = {
        tuple(r[name] for name in FULL_GROUPING): r
        for r in bucket["results"]
        if r["line_item"].endswith(", output")
    }
    assert served.keys() == {key for key, tokens in output_tokens.items() if tokens > 0}
    for key, result in served.items():
        assert (result["quantity"], result["quantity_unit"]) == (output_tokens[key], "tokens")
    assert len({key[3] for key in served}) > 3 and len({key[4] for key in served}) == 2

    total = sum(billed_by_project([bucket]).values(), Decimal(0))
    [by_user] = http_costs(simulator, DAY_START, DAY_START + ONE_DAY, group_by=["user_id"])
    assert all(
        (r["project_id"], r["line_item"], r["api_key_id"], r["quantity"]) == (None,) * 4
        for r in by_user["results"]
    )
    users = {r["user_id"] for r in by_user["results"]}
    assert None in users and len(users) == len({key[3] for key in served})
    by_user_total = sum((Decimal(r["amount"]["value"]) for r in by_user["results"]), Decimal(0))
    assert abs(by_user_total - total) < Decimal("1e-12")
