"""Names end to end: projects, users and API keys from the simulator's list endpoints over
loopback HTTP into a real PostgreSQL; paging edge cases with HTTP faked at the transport."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import dagster as dg
import pytest
import requests
import responses
from sqlalchemy import Engine, text

from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.names.assets import openai_api_keys, openai_projects, openai_users
from usage_assets.defs.resources import OpenAIAdminResource, PricingResource, UsageDatabase
from usage_assets.errors import PayloadError
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets_tests.test_ingest import ADMIN_KEY, admin_for, failure_message

from .conftest import day_reports

NAMES = [openai_projects, openai_users, openai_api_keys]
BASE_URL = "https://api.test.example/v1"


def materialize(
    admin: OpenAIAdminResource,
    database_url: str,
    assets: list[dg.AssetsDefinition] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets or NAMES,
        resources={"openai_admin": admin, "usage_db": UsageDatabase(url=database_url)},
        raise_on_error=False,
        instance=instance,
    )


def rows(engine: Engine, sql: str) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        return {tuple(row) for row in conn.execute(text(sql))}


def utc(seconds: int | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def expected_projects(org: SyntheticOrganization) -> set[tuple[Any, ...]]:
    return {(p.id, p.name, p.status, utc(p.created_at), utc(p.archived_at)) for p in org.projects}


PROJECTS_SQL = "SELECT id, name, status, created_at, archived_at FROM openai_usage.projects"
USERS_SQL = "SELECT id, name, email, role FROM openai_usage.users"
KEYS_SQL = "SELECT id, project_id, name, redacted_value FROM openai_usage.api_keys"


# ---------------------------------------------------------------------------- end to end


def test_names_land_archived_projects_included(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    result = materialize(admin_for(simulator), database_url)
    assert result.success
    org = simulator.org
    archived = [p for p in org.projects if p.status == "archived"]
    assert len(archived) == 1 and archived[0].archived_at is not None

    assert rows(engine, PROJECTS_SQL) == expected_projects(org)
    assert rows(engine, USERS_SQL) == {(u.id, u.name, u.email, u.role) for u in org.users}
    keys = {(k.id, k.project_id, k.name, k.redacted_value) for k in org.api_keys}
    assert rows(engine, KEYS_SQL) == keys
    assert any(k[1] == archived[0].id for k in keys)  # the archived project's key too

    counts = {
        m.asset_key.path[-1]: m.metadata["dagster/row_count"].value
        for node in ("openai_projects", "openai_users", "openai_api_keys")
        for m in result.asset_materializations_for_node(node)
    }
    assert counts == {
        "openai_projects": len(org.projects),
        "openai_users": len(org.users),
        "openai_api_keys": len(org.api_keys),
    }
    [projects] = result.asset_materializations_for_node("openai_projects")
    assert projects.metadata["archived_projects"].value == 1
    assert projects.metadata["simulated"].value is False
    assert projects.metadata["dagster/table_name"].value == "openai_usage.projects"

    sent = [q for path, q in simulator.requests if path == "/v1/organization/projects"]
    assert sent and all(q["include_archived"] == ["true"] for q in sent)
    key_paths = {p for p, _ in simulator.requests if p.endswith("/api_keys")}
    assert key_paths == {f"/v1/organization/projects/{p.id}/api_keys" for p in org.projects}


def test_api_keys_table_keeps_only_id_project_name_and_redacted_value(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    assert materialize(admin_for(simulator), database_url, [openai_api_keys]).success
    with engine.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "'openai_usage' AND table_name = 'api_keys' ORDER BY ordinal_position"
            )
        ).scalars()
        assert sorted(columns) == sorted(
            ["organization", "id", "project_id", "name", "redacted_value", "fetched_at"]
        )
        dump = conn.execute(text("SELECT string_agg(k::text, '') FROM openai_usage.api_keys k"))
        text_dump = dump.scalar()
    assert text_dump
    for user in simulator.org.users:  # owners (ids, names, emails) are never stored
        assert user.id not in text_dump and user.email not in text_dump
    assert "svc_acct" not in text_dump and "service_account" not in text_dump


def test_a_rerun_replaces_the_tables(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        assert materialize(admin_for(sim), database_url).success
        assert materialize(admin_for(sim), database_url).success
        assert rows(engine, PROJECTS_SQL) == expected_projects(sim.org)
    other = SyntheticOrganization(seed=99, project_count=3, user_count=4)
    with SimulatedAdminAPI(org=other) as sim:
        assert materialize(admin_for(sim), database_url).success
    assert rows(engine, PROJECTS_SQL) == expected_projects(other)  # nothing of the old org
    assert len(rows(engine, USERS_SQL)) == 4
    assert {k[0] for k in rows(engine, KEYS_SQL)} == {k.id for k in other.api_keys}


def test_a_paging_loop_fails_the_run_and_keeps_the_previous_names(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    assert materialize(admin_for(simulator), database_url).success
    before = rows(engine, PROJECTS_SQL)
    loop = _list(["proj_a", "proj_b"], has_more=True, last_id="proj_b")
    with responses.RequestsMock() as http:
        http.get(BASE_URL + "/organization/projects", body=loop)
        admin = OpenAIAdminResource(base_url=BASE_URL, admin_key=ADMIN_KEY)
        result = materialize(admin, database_url, [openai_projects])
    assert not result.success
    message = failure_message(result)
    assert "repeats cursor after='proj_b'" in message and "paging loop" in message
    assert rows(engine, PROJECTS_SQL) == before


def test_admin_key_appears_nowhere(engine: Engine, database_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        sim.faults.add("status", status=429, retry_after=0, path="/organization/users")
        sim.faults.add("status", status=429, retry_after=0, path="/organization/costs")
        admin = admin_for(sim)
        instance = dg.DagsterInstance.ephemeral()
        names = materialize(admin, database_url, instance=instance)
        costs = dg.materialize(
            [costs_daily],
            partition_key="2025-11-20",
            resources={
                "openai_admin": admin,
                "usage_db": UsageDatabase(url=database_url),
                "pricing": PricingResource(),
            },
            instance=instance,
        )
    assert names.success and costs.success
    [billed] = day_reports(costs, "costs_daily")
    top = str(billed.metadata["top_projects_by_billed_usd"].value)
    assert "Support Copilot" in top  # names from openai_usage.projects, not only ids
    for run in (names, costs):
        logs = instance.all_logs(run.run_id)
        assert any("429" in entry.user_message for entry in logs)  # the retry was logged
        assert all(ADMIN_KEY not in str(entry) for entry in logs)
        assert ADMIN_KEY not in str(instance.get_run_by_id(run.run_id))
    with engine.connect() as conn:
        dump = conn.execute(
            text(
                "SELECT string_agg(t, '') FROM ("
                " SELECT c::text AS t FROM openai_usage.costs_daily c"
                " UNION ALL SELECT p::text FROM openai_usage.projects p"
                " UNION ALL SELECT u::text FROM openai_usage.users u"
                " UNION ALL SELECT k::text FROM openai_usage.api_keys k) s"
            )
        ).scalar()
    assert dump and ADMIN_KEY not in dump


# ---------------------------------------------------------------------------- the client


def test_list_paging_follows_after_while_has_more(simulator: SimulatedAdminAPI) -> None:
    client = AdminAPIClient(simulator.base_url, None)
    users = list(client.iter_list("/organization/users", [("limit", "3")]))
    assert [u["id"] for u in users] == [u.id for u in simulator.org.users]
    assert client.request_count == 4  # 10 users, 3 a page
    afters = [q.get("after") for _, q in simulator.requests]
    org_ids = [u.id for u in simulator.org.users]
    assert afters == [None, [org_ids[2]], [org_ids[5]], [org_ids[8]]]

    active = list(client.iter_list("/organization/projects", [("limit", "2")]))
    every = list(
        client.iter_list("/organization/projects", [("limit", "2"), ("include_archived", "true")])
    )
    assert [p["id"] for p in every] == [p.id for p in simulator.org.projects]
    assert [p["id"] for p in active] == [
        p.id for p in simulator.org.projects if p.status == "active"
    ]


def _list(ids: list[str], *, has_more: bool, last_id: str | None = "default") -> str:
    page: dict[str, Any] = {
        "object": "list",
        "data": [{"object": "organization.project", "id": i, "name": i} for i in ids],
        "first_id": ids[0] if ids else None,
        "has_more": has_more,
    }
    if last_id is not None:
        page["last_id"] = ids[-1] if last_id == "default" and ids else last_id
    return json.dumps(page)


@responses.activate
def test_a_repeated_after_cursor_is_a_loop() -> None:
    url = BASE_URL + "/organization/projects"
    responses.get(url, body=_list(["a", "b"], has_more=True))
    responses.get(url, body=_list(["c"], has_more=True, last_id="b"))
    client = AdminAPIClient(BASE_URL, ADMIN_KEY)
    with pytest.raises(PayloadError, match="page 2 repeats cursor after='b': a paging loop"):
        list(client.iter_list("/organization/projects"))
    assert len(responses.calls) == 2


@responses.activate
def test_without_last_id_the_last_objects_id_is_the_cursor() -> None:
    url = BASE_URL + "/organization/users"
    responses.get(url, body=_list(["a", "b"], has_more=True, last_id=None))
    responses.get(url, body=_list(["c"], has_more=False, last_id=None))
    client = AdminAPIClient(BASE_URL, ADMIN_KEY)
    assert [u["id"] for u in client.iter_list("/organization/users", [("limit", "2")])] == [
        "a",
        "b",
        "c",
    ]
    assert responses.calls[1].request.url == url + "?limit=2&after=b"


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (_list([], has_more=True, last_id=None), "has_more=true but gives no last_id"),
        ('{"object": "page", "data": [], "has_more": false}', "expected 'list'"),
        ('{"object": "list", "data": [], "has_more": "no"}', "'has_more' is missing"),
        ('{"object": "list", "data": ["proj_a"], "has_more": false}', "item #0 is a str"),
    ],
)
@responses.activate
def test_malformed_list_pages_fail_clearly(page: str, expected: str) -> None:
    responses.get(BASE_URL + "/organization/projects", body=page)
    client = AdminAPIClient(BASE_URL, ADMIN_KEY)
    with pytest.raises(PayloadError, match=expected):
        list(client.iter_list("/organization/projects"))


# ---------------------------------------------------------------------------- the simulator


def test_simulated_list_endpoints_validate(simulator: SimulatedAdminAPI) -> None:
    base = simulator.base_url + "/organization"
    for path, params, status, message in [
        ("/projects", {"limit": 101}, 400, "between 1 and 100"),
        ("/users", {"limit": 0}, 400, "between 1 and 100"),
        ("/users", {"after": "user-nobody"}, 400, "Invalid 'after'"),
        ("/projects", {"include_archived": "maybe"}, 400, "include_archived"),
        ("/projects/proj_nope/api_keys", {}, 404, "No such project"),
    ]:
        response = requests.get(base + path, params=params, timeout=10)
        assert response.status_code == status, (path, params)
        assert message in response.json()["error"]["message"]
    page = requests.get(base + "/users", timeout=10).json()
    assert len(page["data"]) == 10 and page["has_more"] is False  # default limit 20
    assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
    key = simulator.org.api_keys[1]
    [served] = [
        k
        for k in requests.get(f"{base}/projects/{key.project_id}/api_keys", timeout=10).json()[
            "data"
        ]
        if k["id"] == key.id
    ]
    assert served["object"] == "organization.project.api_key"
    assert served["owner"]["type"] == ("user" if key.owner_user_id else "service_account")


@pytest.mark.parametrize(("kind", "expected"), [("drift", "id"), ("repeat_cursor", "paging loop")])
def test_simulator_list_faults_fail_clearly_and_keep_rows(
    engine: Engine, database_url: str, kind: str, expected: str
) -> None:
    with SimulatedAdminAPI() as sim:
        admin = admin_for(sim)
        assert materialize(admin, database_url, [openai_projects]).success
        before = rows(engine, PROJECTS_SQL)
        sim.faults.add(kind, times=5, path="/organization/projects")
        result = materialize(admin, database_url, [openai_projects])
    assert not result.success
    assert expected in failure_message(result)
    assert rows(engine, PROJECTS_SQL) == before
