"""Several organizations in one database, the cost side: two organizations' usage of the same
day, with the same project ids and each its own default project (NULL), inserted straight into
the raw tables of a real PostgreSQL; each organization is priced, summarized, reconciled and
shown in the views on its own, and never mixed with the other."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from usage_assets.admin_api.endpoints import ENDPOINTS_BY_NAME
from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.attribution.checks import estimated_matches_billed, reconciliation_result
from usage_assets.defs.resources import PricingResource, UsageDatabase
from usage_assets.pricing.attribution import (
    PricingInputs,
    price_unit_usage,
    price_usage,
    recompute_costs,
    reconcile,
    summarize_costs,
)
from usage_assets.warehouse.database import alembic_config, engine_for, migrate

from .conftest import create_database, drop_database, libpq

S = "openai_usage"
DAY = dt.date(2025, 11, 20)
NEXT = DAY + dt.timedelta(days=1)
GIB = 2**30
A, B = "org-alpha", "org-beta"
M = Decimal(1_000_000)
#: USD 1 per million input tokens, 4 per million output tokens.
PRICES = """
- model: acme-org
  input_mtok: 1
  output_mtok: 4
"""


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    return path


def completions(
    engine: Engine, organization: str, project: str | None, input_tokens: int, day: dt.date = DAY
) -> None:
    """One hour of acme-org usage of `organization`'s `project` (text tokens only)."""
    start = dt.datetime.combine(day, dt.time(10), dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.completions_usage_hourly (organization, bucket_start, "
                "bucket_end, project_id, model, batch, service_tier, input_tokens, "
                "output_tokens, num_model_requests, input_text_tokens, input_cached_tokens, "
                "output_text_tokens, result) VALUES (:org, :start, :end, :project, 'acme-org', "
                "false, 'default', :input, 1000, 1, :input, 0, 1000, '{}')"
            ),
            {"org": organization, "start": start, "end": start + dt.timedelta(hours=1),
             "project": project, "input": input_tokens},
        )  # fmt: skip


def vector_storage(engine: Engine, organization: str, project: str | None, gib: int) -> None:
    """`gib` GiB stored by `organization`'s `project` every hour of DAY: `gib` GiB-days."""
    table = ENDPOINTS_BY_NAME["vector_stores"].table_name
    with engine.begin() as conn:
        for hour in range(24):
            start = dt.datetime.combine(DAY, dt.time(hour), dt.UTC)
            conn.execute(
                text(
                    f"INSERT INTO {S}.{table} (organization, bucket_start, bucket_end, "
                    "project_id, usage_bytes, result) VALUES (:org, :start, :end, :project, "
                    ":bytes, '{}')"
                ),
                {"org": organization, "start": start, "end": start + dt.timedelta(hours=1),
                 "project": project, "bytes": gib * GIB},
            )  # fmt: skip


def billed(
    engine: Engine, organization: str, project: str | None, amount: str, day: dt.date = DAY
) -> None:
    """A billed completions line item of `organization`'s `project`."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.costs_daily (organization, usage_date, project_id, line_item, "
                "line_item_model, line_item_kind, amount_usd, currency, result) VALUES "
                "(:org, :day, :project, 'acme-org, input', 'acme-org', 'input', :amount, 'usd', "
                "'{}')"
            ),
            {"org": organization, "day": day, "project": project, "amount": Decimal(amount)},
        )


def price_all(engine: Engine, organization: str, prices: Path, day: dt.date = DAY) -> None:
    inputs = PricingInputs(prices)
    end = day + dt.timedelta(days=1)
    price_usage(engine, day, end, inputs, organization=organization)
    price_unit_usage(engine, day, end, inputs, organization=organization)
    summarize_costs(engine, day, end, organization=organization)


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def completions_costs(engine: Engine) -> dict[tuple[str, str | None], tuple[int, Decimal]]:
    """project_daily_costs by (organization, project): (row id, cost)."""
    return {
        (org, project): (row_id, Decimal(cost))
        for org, project, row_id, cost in rows(
            engine,
            f"SELECT organization, project_id, id, cost_usd FROM {S}.project_daily_costs",
        )
    }


def cost(input_tokens: int) -> Decimal:
    """acme-org's cost of `input_tokens` text input and 1,000 output tokens."""
    return (input_tokens * 1 + 1000 * 4) / M


def two_organizations(engine: Engine) -> None:
    """The same project id and each organization's default project, different usage."""
    completions(engine, A, "proj_shared", 1_000_000)
    completions(engine, A, None, 3_000_000)
    completions(engine, B, "proj_shared", 2_000_000)
    completions(engine, B, None, 4_000_000)


def test_pricing_one_organization_leaves_the_other_untouched(engine: Engine, prices: Path) -> None:
    two_organizations(engine)
    price_all(engine, A, prices)
    first = completions_costs(engine)
    assert {k: c for k, (_, c) in first.items()} == {
        (A, "proj_shared"): cost(1_000_000),
        (A, None): cost(3_000_000),
    }  # only A's usage, and A's cost rows only

    price_all(engine, B, prices)
    both = completions_costs(engine)
    assert {k: c for k, (_, c) in both.items()} == {
        (A, "proj_shared"): cost(1_000_000),
        (A, None): cost(3_000_000),
        (B, "proj_shared"): cost(2_000_000),
        (B, None): cost(4_000_000),
    }
    assert {k: v for k, v in both.items() if k[0] == A} == first  # A's rows not rewritten

    # B's usage grows; re-pricing B replaces B's rows and leaves A's as they were.
    completions(engine, B, "proj_other", 5_000_000)
    price_all(engine, B, prices)
    again = completions_costs(engine)
    assert {k: v for k, v in again.items() if k[0] == A} == first
    assert again[(B, "proj_other")][1] == cost(5_000_000)
    # Re-pricing is idempotent: the same figures, never appended.
    price_all(engine, B, prices)
    price_all(engine, A, prices)
    assert {k: c for k, (_, c) in completions_costs(engine).items()} == {
        k: c for k, (_, c) in again.items()
    }
    summary = {
        (org, project): Decimal(c)
        for org, project, c in rows(
            engine, f"SELECT organization, project_id, cost_usd FROM {S}.project_daily_cost_summary"
        )
    }
    assert summary == {
        (A, "proj_shared"): cost(1_000_000),
        (A, None): cost(3_000_000),
        (B, "proj_shared"): cost(2_000_000),
        (B, None): cost(4_000_000),
        (B, "proj_other"): cost(5_000_000),
    }


def test_each_organization_has_its_own_vector_store_allowance(engine: Engine) -> None:
    """The first GiB-day of each organization and day is free, shared pro rata between that
    organization's projects: A's two projects of 1 GiB-day each share one free GiB-day, B's one
    project of 1 GiB-day has its own and pays nothing."""
    vector_storage(engine, A, "proj_shared", 1)
    vector_storage(engine, A, None, 1)
    vector_storage(engine, B, "proj_shared", 1)
    for org in (A, B):
        price_unit_usage(engine, DAY, NEXT, PricingInputs(None), organization=org)
    got = {
        (org, project): (Decimal(q), Decimal(free), Decimal(c))
        for org, project, q, free, c in rows(
            engine,
            "SELECT organization, project_id, quantity, free_quantity, cost_usd "
            f"FROM {S}.usage_daily_costs WHERE usage_kind = 'vector_stores'",
        )
    }
    half = Decimal("0.5")
    assert got == {
        (A, "proj_shared"): (Decimal(1), half, half * Decimal("0.10")),
        (A, None): (Decimal(1), half, half * Decimal("0.10")),
        (B, "proj_shared"): (Decimal(1), Decimal(1), Decimal(0)),
    }
    view = rows(
        engine,
        "SELECT organization, project_id, gib_days FROM "
        f"{S}.v_vector_store_storage_daily ORDER BY 1, 2",
    )
    assert view == [(A, "proj_shared", 1), (A, None, 1), (B, "proj_shared", 1)]


def test_reconciliation_compares_an_organization_with_its_own_bill(
    engine: Engine, prices: Path
) -> None:
    """A billed row of B never counts for A: not for the same project id, not for the default
    project (NULL)."""
    completions(engine, A, "proj_shared", 1_000_000)
    completions(engine, A, None, 3_000_000)
    price_all(engine, A, prices)
    billed(engine, A, "proj_shared", str(cost(1_000_000)))
    billed(engine, A, None, str(cost(3_000_000)))
    billed(engine, B, "proj_shared", "50")
    billed(engine, B, None, "70")

    a = reconcile(engine, DAY, NEXT, 0.01, organization=A)
    assert a.organization == A
    assert {(g.project_id, g.estimated_usd, g.billed_usd) for g in a.projects} == {
        ("proj_shared", cost(1_000_000), cost(1_000_000)),
        (None, cost(3_000_000), cost(3_000_000)),
    }
    assert not a.failing_projects
    assert {(g.project_id, g.what, g.billed_usd) for g in a.families} == {
        ("proj_shared", "completions", cost(1_000_000)),
        (None, "completions", cost(3_000_000)),
    }
    assert sum(g.billed_usd for g in a.line_items) == cost(1_000_000) + cost(3_000_000)

    b = reconcile(engine, DAY, NEXT, 0.01, organization=B)
    assert {(g.project_id, g.estimated_usd, g.billed_usd) for g in b.projects} == {
        ("proj_shared", 0, 50),
        (None, 0, 70),
    }
    assert reconciliation_result(engine, DAY, NEXT, 0.01, organization=A).passed
    failing = reconciliation_result(engine, DAY, NEXT, 0.01, organization=B)
    assert not failing.passed
    assert failing.metadata["organization"] == dg.MetadataValue.text(B)

    view = rows(
        engine,
        "SELECT organization, project_id, family, estimated_usd, billed_usd "
        f"FROM {S}.v_reconciliation_daily ORDER BY 1, 2",
    )
    assert view == [
        (A, "proj_shared", "completions", cost(1_000_000), cost(1_000_000)),
        (A, None, "completions", cost(3_000_000), cost(3_000_000)),
        (B, "proj_shared", "completions", 0, 50),
        (B, None, "completions", 0, 70),
    ]
    vs_billed = rows(
        engine,
        "SELECT organization, project_id, estimated_usd, billed_usd "
        f"FROM {S}.v_estimated_vs_billed ORDER BY 1, 2",
    )
    assert vs_billed == [
        (A, "proj_shared", cost(1_000_000), cost(1_000_000)),
        (A, None, cost(3_000_000), cost(3_000_000)),
        # Billed without usage: nothing priced, an estimate of 0 (the views' rule, 0015).
        (B, "proj_shared", 0, 50),
        (B, None, 0, 70),
    ]


def test_views_keep_the_organizations_and_their_default_projects_apart(
    engine: Engine, prices: Path
) -> None:
    two_organizations(engine)
    with engine.begin() as conn:
        for org, name in ((A, "Alpha's"), (B, "Beta's")):
            conn.execute(
                text(
                    f"INSERT INTO {S}.projects (organization, id, name) "
                    "VALUES (:org, 'proj_shared', :name)"
                ),
                {"org": org, "name": name},
            )
        conn.execute(
            text(
                f"UPDATE {S}.completions_usage_hourly SET api_key_id = 'key_shared' "
                "WHERE project_id = 'proj_shared'"
            )
        )
        for org, name in ((A, "alpha key"), (B, "beta key")):
            conn.execute(
                text(
                    f"INSERT INTO {S}.api_keys (organization, id, project_id, name) "
                    "VALUES (:org, 'key_shared', 'proj_shared', :name)"
                ),
                {"org": org, "name": name},
            )
    price_all(engine, A, prices)
    price_all(engine, B, prices)
    expected = [
        (A, "proj_shared", "Alpha's", cost(1_000_000)),
        (A, None, "(default project)", cost(3_000_000)),
        (B, "proj_shared", "Beta's", cost(2_000_000)),
        (B, None, "(default project)", cost(4_000_000)),
    ]
    for view in ("v_project_daily_cost", "v_model_daily_cost", "v_usage_daily_cost"):
        assert (
            rows(
                engine,
                f"SELECT organization, project_id, project_name, cost_usd FROM {S}.{view} "
                "ORDER BY 1, 2",
            )
            == expected
        ), view
    keys = rows(
        engine,
        "SELECT organization, project_id, project_name, api_key_name, cost_usd "
        f"FROM {S}.v_api_key_daily_cost ORDER BY 1, 2",
    )
    assert keys == [
        (A, "proj_shared", "Alpha's", "alpha key", cost(1_000_000)),
        (A, None, "(default project)", None, cost(3_000_000)),
        (B, "proj_shared", "Beta's", "beta key", cost(2_000_000)),
        (B, None, "(default project)", None, cost(4_000_000)),
    ]
    tokens = rows(
        engine,
        f"SELECT organization, project_id, input_text_uncached_tokens FROM {S}.v_usage_token_kinds "
        "ORDER BY 1, 2",
    )
    assert tokens == [
        (A, "proj_shared", 1_000_000),
        (A, None, 3_000_000),
        (B, "proj_shared", 2_000_000),
        (B, None, 4_000_000),
    ]


def _revision(engine: Engine, org: str, revision: int, previous: int | None, new: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.usage_day_revisions (organization, endpoint, usage_date, "
                "revision, loaded_at, day_closed, bucket_count, previous_row_count, "
                "new_row_count, previous_volume, new_volume) VALUES (:org, 'completions', :day, "
                ":revision, :loaded, true, 24, :prev_rows, :new_rows, :previous, :new)"
            ),
            {"org": org, "day": DAY, "revision": revision,
             "loaded": dt.datetime.combine(NEXT, dt.time(revision), dt.UTC),
             "prev_rows": None if previous is None else 1, "new_rows": 1,
             "previous": previous, "new": new},
        )  # fmt: skip


def test_revisions_are_numbered_per_organization(engine: Engine) -> None:
    """Both organizations' first load of a day is revision 1: the windows of
    v_usage_day_revisions and the late-arrival rollup are per organization."""
    _revision(engine, A, 1, None, 100)
    _revision(engine, A, 2, 100, 150)
    _revision(engine, B, 1, None, 1_000)
    _revision(engine, B, 2, 1_000, 1_010)
    got = rows(
        engine,
        "SELECT organization, revision, volume_change, volume_change_vs_first "
        f"FROM {S}.v_usage_day_revisions ORDER BY 1, 2",
    )
    assert got == [(A, 1, None, 0), (A, 2, 50, 50), (B, 1, None, 0), (B, 2, 10, 10)]
    late = rows(
        engine,
        "SELECT organization, reloads, volume_added, pct_of_latest_volume "
        f"FROM {S}.v_usage_late_arrival ORDER BY 1",
    )
    assert late == [(A, 1, 50, Decimal("33.3333")), (B, 1, 10, Decimal("0.9901"))]


def test_recompute_costs_by_organization(
    engine: Engine,
    database_url: str,
    prices: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`recompute_costs` re-prices every organization by default, or the one named; the CLI's
    --organization likewise."""
    from usage_assets.cli import db_main

    two_organizations(engine)
    price_all(engine, A, prices)
    price_all(engine, B, prices)
    stale = f"UPDATE {S}.project_daily_costs SET cost_usd = 99"
    with engine.begin() as conn:
        conn.execute(text(stale))

    done = recompute_costs(engine, DAY, NEXT, PricingInputs(prices), organization=A)
    assert (done.days, done.organizations) == ([DAY], [A])
    costs = {k: c for k, (_, c) in completions_costs(engine).items()}
    assert costs[(A, None)] == cost(3_000_000)
    assert costs[(B, None)] == costs[(B, "proj_shared")] == 99  # B's rows not touched

    done = recompute_costs(engine, DAY, NEXT, PricingInputs(prices))
    assert (done.days, done.organizations) == ([DAY], [A, B])
    assert done.cost_after_usd == sum(
        (cost(n) for n in (1_000_000, 3_000_000, 2_000_000, 4_000_000)), Decimal(0)
    )
    assert {k: c for k, (_, c) in completions_costs(engine).items()} == {
        (A, "proj_shared"): cost(1_000_000),
        (A, None): cost(3_000_000),
        (B, "proj_shared"): cost(2_000_000),
        (B, None): cost(4_000_000),
    }

    monkeypatch.setenv("USAGE_DATABASE_URL", libpq(database_url))
    monkeypatch.setenv("USAGE_PRICE_OVERRIDES", str(prices))
    monkeypatch.setenv("USAGE_AUTO_MIGRATE", "false")
    with engine.begin() as conn:
        conn.execute(text(stale))
    assert db_main(["recompute-costs", "--organization", B]) == 0
    assert f"recomputed 1 days (2025-11-20 .. 2025-11-20) of {B} on" in capsys.readouterr().out
    costs = {k: c for k, (_, c) in completions_costs(engine).items()}
    assert costs[(B, None)] == cost(4_000_000)
    assert costs[(A, None)] == 99
    assert db_main(["recompute-costs", "--organization", "org-nobody"]) == 0
    assert "no usage or cost rows of organization org-nobody" in capsys.readouterr().out
    assert db_main(["recompute-costs"]) == 0
    assert f"of {A}, {B} on" in capsys.readouterr().out
    assert completions_costs(engine)[(A, None)][1] == cost(3_000_000)


def test_cost_assets_price_their_code_locations_organization(
    engine: Engine, database_url: str, prices: Path
) -> None:
    """The assets and estimated_matches_billed use `UsageDatabase.organization`."""
    two_organizations(engine)
    vector_storage(engine, B, None, 2)
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    completions(engine, B, None, 6_000_000, day)
    billed(engine, B, None, str(cost(6_000_000)), day)
    billed(engine, A, None, "1000", day)  # A's: never compared with B's estimate
    resources = {
        "usage_db": UsageDatabase(url=database_url, organization=B),
        "pricing": PricingResource(overrides_file=str(prices)),
    }
    for partition in (DAY, day):
        result = dg.materialize(
            [project_daily_costs, usage_daily_costs, project_daily_cost_summary],
            partition_key=partition.isoformat(),
            resources=resources,
        )
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        # Tokens and quantities add up against B's usage only (A's would not match).
        assert checks["tokens_match_usage"] and checks["quantities_match_usage"], checks
    assert set(rows(engine, f"SELECT DISTINCT organization FROM {S}.project_daily_costs")) == {(B,)}
    assert rows(
        engine,
        f"SELECT project_id, cost_usd FROM {S}.project_daily_cost_summary "
        "WHERE usage_date = :day ORDER BY 1",
        day=DAY,
    ) == [
        ("proj_shared", cost(2_000_000)),
        (None, cost(4_000_000) + (2 - 1) * Decimal("0.10")),
    ]
    evaluation = estimated_matches_billed(
        dg.build_asset_check_context(), resources["usage_db"], resources["pricing"]
    )
    assert evaluation.passed  # B's bill of the day matches B's estimate; A's bill is not B's
    assert evaluation.metadata["organization"] == dg.MetadataValue.text(B)


# ---------------------------------------------------------------------------- migration 0010

VIEWS_0010 = (
    "v_usage_token_kinds",
    "v_api_key_daily_cost",
    "v_model_daily_cost",
    "v_project_daily_cost",
    "v_estimated_vs_billed",
    "v_usage_daily_cost",
    "v_reconciliation_daily",
    "v_vector_store_storage_daily",
    "v_usage_day_revisions",
    "v_usage_late_arrival",
)


def _view_columns(engine: Engine) -> dict[str, list[str]]:
    inspector = inspect(engine)
    return {view: [c["name"] for c in inspector.get_columns(view, S)] for view in VIEWS_0010}


def test_migration_0010_up_and_down(pg_server_url: str) -> None:
    """0010 puts `organization` first in every view that groups or joins by project; its
    downgrade restores the views as they were (same columns, in order), readable by the BI
    role both ways."""
    url = create_database(pg_server_url)
    try:
        migrate(url, "0009")
        engine = engine_for(url)
        before = _view_columns(engine)
        assert not any("organization" in columns for columns in before.values())
        migrate(url, "0010")
        after = _view_columns(engine)
        for view, columns in after.items():
            assert columns[0] == "organization", view
            assert columns[1:] == before[view], view
        with engine.connect() as conn:
            conn.execute(text("SET ROLE usage_readonly"))
            for view in VIEWS_0010:
                conn.execute(text(f"SELECT * FROM {S}.{view}")).all()
            conn.execute(text("RESET ROLE"))
        command.downgrade(alembic_config(url), "0009")
        assert _view_columns(engine) == before
        with engine.connect() as conn:
            conn.execute(text("SET ROLE usage_readonly"))
            for view in VIEWS_0010:
                conn.execute(text(f"SELECT * FROM {S}.{view}")).all()
            conn.execute(text("RESET ROLE"))
        migrate(url, "0010")  # (0015 adds `simulated` and more)
        assert _view_columns(engine) == after
    finally:
        drop_database(pg_server_url, url)
