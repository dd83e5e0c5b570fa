"""Two organizations in one database: every raw table carries `organization`, and each code
location replaces only its own organization's days and names (simulator over HTTP, a real
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from sqlalchemy import Engine, text

from usage_assets import settings
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.names.assets import openai_projects
from usage_assets.defs.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.defs.usage.assets import USAGE_ASSETS
from usage_assets.errors import ConfigurationError
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.models import Base

DAY = "2025-11-20"
#: Two organizations and their simulators' seeds.
ORGS = {"org-prod": 11, "org-research": 22}
ASSETS = [
    *(
        a
        for a in USAGE_ASSETS
        if a.key.path[0] in ("completions_usage_hourly", "images_usage_hourly")
    ),
    costs_daily,
    openai_projects,
]


def land(sim: SimulatedAdminAPI, database_url: str, organization: str) -> None:
    result = dg.materialize(
        ASSETS,
        partition_key=DAY,
        resources={
            "openai_admin": OpenAIAdminResource(base_url=sim.base_url, admin_key="sk-admin-x"),
            "usage_db": UsageDatabase(url=database_url, organization=organization),
        },
    )
    assert result.success


def counts(engine: Engine, table: str) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(f"SELECT organization, count(*) FROM openai_usage.{table} GROUP BY 1")
            ).all()
        )


def snapshot(engine: Engine, table: str, organization: str) -> list[tuple[Any, ...]]:
    columns = list(Base.metadata.tables[f"openai_usage.{table}"].columns.keys())
    kept = [c for c in columns if c not in ("id", "ingested_at", "fetched_at")]
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {', '.join(kept)} FROM openai_usage.{table} WHERE organization = :o"),
            {"o": organization},
        )
        return sorted((tuple(map(str, row)) for row in rows), key=repr)


TABLES = ["completions_usage_hourly", "images_usage_hourly", "costs_daily", "projects"]


def test_each_organization_replaces_only_its_own_rows(engine: Engine, database_url: str) -> None:
    sims = {
        org: SimulatedAdminAPI(org=SyntheticOrganization(seed=seed)) for org, seed in ORGS.items()
    }
    with sims["org-prod"] as prod, sims["org-research"] as research:
        land(prod, database_url, "org-prod")
        land(research, database_url, "org-research")
        before = {table: counts(engine, table) for table in TABLES}
        for table in TABLES:
            assert set(before[table]) == set(ORGS), table  # both landed, side by side
        research_rows = {t: snapshot(engine, t, "org-research") for t in TABLES}
        # Both organizations have a default project (NULL project_id) on the day: kept apart.
        with engine.connect() as conn:
            defaults = dict(
                conn.execute(
                    text(
                        "SELECT organization, sum(input_tokens) FROM "
                        "openai_usage.completions_usage_hourly WHERE project_id IS NULL GROUP BY 1"
                    )
                ).all()
            )
        assert set(defaults) == set(ORGS)
        # Prod reloads its day with more usage: research's rows are untouched, prod's replaced.
        prod.org.extra_result_fields = {"reloaded": True}
        land(prod, database_url, "org-prod")
        for table in TABLES:
            assert snapshot(engine, table, "org-research") == research_rows[table], table
            assert counts(engine, table) == before[table], table
    with engine.connect() as conn:
        reloaded = conn.execute(
            text(
                "SELECT organization, bool_and((result ->> 'reloaded')::boolean) FROM "
                "openai_usage.completions_usage_hourly GROUP BY 1"
            )
        ).all()
        loads = conn.execute(
            text(
                "SELECT organization, endpoint, max(revision) "
                "FROM openai_usage.usage_day_revisions GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ).all()
    assert dict(reloaded) == {"org-prod": True, "org-research": None}
    assert [tuple(r) for r in loads] == [
        ("org-prod", "completions", 2),
        ("org-prod", "images", 2),
        ("org-research", "completions", 1),
        ("org-research", "images", 1),
    ]


def test_the_organization_comes_from_openai_organization_or_the_label(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.organization_label() == "default"
    monkeypatch.setenv("USAGE_ORGANIZATION_LABEL", "acme-research")
    assert settings.organization_label() == "acme-research"
    monkeypatch.setenv("OPENAI_ORGANIZATION", "org-abc123")
    assert settings.organization_label() == "org-abc123"  # the real id wins over a label
    from usage_assets.definitions import defs

    resources = defs().resources
    assert resources is not None and resources["usage_db"].organization == "org-abc123"
    monkeypatch.delenv("OPENAI_ORGANIZATION")
    monkeypatch.setenv("USAGE_ORGANIZATION_LABEL", "acme research; drop table")
    with pytest.raises(ConfigurationError, match="USAGE_ORGANIZATION_LABEL"):
        settings.load()


def test_the_two_organization_workspace_names_two_locations() -> None:
    workspace = yaml.safe_load(
        (Path(settings.PROJECT_ROOT) / "deploy" / "workspace.two-organizations.yaml").read_text()
    )
    servers = [entry["grpc_server"] for entry in workspace["load_from"]]
    assert len({s["location_name"] for s in servers}) == 2
    assert len({s["port"] for s in servers}) == 2


def test_a_day_cannot_be_written_under_another_organizations_load(engine: Engine) -> None:
    """The rows carry the day's organization; a load record of another one would misfile it."""
    import datetime as dt

    from usage_assets.admin_api.rows import DaySummary
    from usage_assets.warehouse.usage_days import LoadInfo, replace_day

    info = LoadInfo(group_by=(), simulated=True, source_url="t", dagster_run_id=None)
    summary = DaySummary(dt.date(2025, 11, 20), organization="org-prod")
    with pytest.raises(ValueError, match="org-prod"):
        replace_day(engine, summary, [], info)
    assert counts(engine, "usage_loads") == {}
