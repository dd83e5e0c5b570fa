"""The BI views add up (migration 0015): one priced/unpriced rule in every view, so per API key,
per model and per project the completions cost and unpriced tokens of an organization's day
are the same; money rounded to micro-dollars in the views (exact in the tables); `simulated`
from the day's loads. Then the migration's downgrade and upgrade again."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from alembic import command
from sqlalchemy import Engine, text

from usage_assets.admin_api.rows import DaySummary
from usage_assets.admin_api.usage import UsageBucket
from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.chargeback.allocation import cost_allocation_daily
from usage_assets.defs.names.assets import NAMES_ASSETS
from usage_assets.defs.usage.assets import USAGE_ASSETS
from usage_assets.pricing.attribution import PricingInputs, price_usage, summarize_costs
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.database import alembic_config, engine_for, migrate
from usage_assets.warehouse.models import DEFAULT_ORGANIZATION
from usage_assets.warehouse.usage_days import LoadInfo, replace_day

from .conftest import create_database, drop_database
from .test_cost_assets import AUDIO_WITHOUT_AUDIO_RATES, resources
from .test_pricing import result

S = "openai_usage"
DAY = dt.date(2025, 11, 20)
MICRO = Decimal("0.000001")
EVERYTHING = [
    *USAGE_ASSETS,
    *NAMES_ASSETS,
    project_daily_costs,
    usage_daily_costs,
    project_daily_cost_summary,
    costs_daily,
    cost_allocation_daily,
]

#: Every money column of every view but FOCUS (exact on purpose) and the budget input
#: (`monthly_usd`, as the user wrote it).
MONEY = {
    "v_api_key_daily_cost": ["cost_usd"],
    "v_model_daily_cost": ["cost_usd"],
    "v_project_daily_cost": ["cost_usd"],
    "v_estimated_vs_billed": ["estimated_usd", "billed_usd", "difference_usd"],
    "v_usage_daily_cost": ["cost_usd"],
    "v_reconciliation_daily": ["estimated_usd", "billed_usd", "difference_usd"],
    "v_cost_allocation_daily": ["billed_usd", "estimated_usd", "unallocated_usd"],
    "v_budget_status": ["spend_to_date_usd", "remaining_usd", "forecast_usd"],
}
#: The views that show usage or cost rows: each has a boolean `simulated` (FOCUS: x_Simulated).
USAGE_VIEWS = [
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
    "v_cost_allocation_daily",
    "v_budget_status",
]


def rounded(value: Decimal) -> Decimal:
    """PostgreSQL's round(x, 6) of a positive amount: half away from zero."""
    return value.quantize(MICRO, rounding=ROUND_HALF_UP)


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def load_day(
    engine: Engine,
    day: dt.date,
    results: list[dict[str, Any]],
    *,
    simulated: bool,
    organization: str = DEFAULT_ORGANIZATION,
) -> None:
    """One day of completions usage (two hours of the same results), recorded in usage_loads
    as simulated or not."""
    start = int(dt.datetime.combine(day, dt.time(9), dt.UTC).timestamp())
    summary = DaySummary(day, organization=organization)
    buckets = [UsageBucket(start + h * 3600, start + (h + 1) * 3600, results) for h in (0, 1)]
    info = LoadInfo(["project_id", "api_key_id", "model"], simulated, "test", None, organization)
    replace_day(engine, summary, summary.rows(buckets), info)


def keyed(model: str, key: str | None, **tokens: int) -> dict[str, Any]:
    return {**result(model, "proj_a", **tokens), "api_key_id": key}


#: gpt-4.1 at rates with three decimals, so that costs have more than six.
PRICES = """prices:
  - model: gpt-4.1
    input_mtok: 0.125
    output_mtok: 0.375
"""


def usd(tokens: int, rate: str) -> Decimal:
    return tokens * Decimal(rate) / 1_000_000


def test_a_partly_priced_key_keeps_its_priced_spend(engine: Engine, tmp_path: Path) -> None:
    """key_a uses a priced model and a model no price list knows: its day is the priced part
    plus the unknown model's tokens as unpriced_tokens (before 0015: NULL, the whole day). Keys,
    models and the project agree, to the micro-dollar, with a hand computation; the day came
    from a load that was not simulated."""
    gpt, mystery = "gpt-4.1-2025-04-14", "acme-mystery-1"
    load_day(engine, DAY, [
        keyed(gpt, "key_a", input_text_tokens=1_001, output_text_tokens=334),
        keyed(mystery, "key_a", input_text_tokens=5_000, output_text_tokens=100),
        keyed(gpt, "key_b", input_text_tokens=9, output_text_tokens=3),
        keyed(gpt, None, input_text_tokens=10, output_text_tokens=1),
    ], simulated=False)  # fmt: skip
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    price_usage(engine, DAY, DAY + dt.timedelta(days=1), PricingInputs(prices))
    summarize_costs(engine, DAY, DAY + dt.timedelta(days=1))

    # Two hours of each result.
    key_a = 2 * (usd(1_001, "0.125") + usd(334, "0.375"))
    key_b = 2 * (usd(9, "0.125") + usd(3, "0.375"))
    no_key = 2 * (usd(10, "0.125") + usd(1, "0.375"))
    unpriced = 2 * (5_000 + 100)
    assert key_a != rounded(key_a)  # the tables' amounts have more than 6 decimals

    per_key = {
        key: (cost, tokens, simulated)
        for key, cost, tokens, simulated in rows(
            engine,
            f"SELECT api_key_id, cost_usd, unpriced_tokens, simulated "
            f"FROM {S}.v_api_key_daily_cost",
        )
    }
    assert per_key == {
        "key_a": (rounded(key_a), unpriced, False),
        "key_b": (rounded(key_b), 0, False),
        None: (rounded(no_key), 0, False),
    }
    per_model = {
        model: (cost, tokens, reason is not None)
        for model, cost, tokens, reason in rows(
            engine,
            f"SELECT model, cost_usd, unpriced_tokens, unpriced_reason FROM {S}.v_model_daily_cost",
        )
    }
    assert per_model == {
        gpt: (rounded(key_a + key_b + no_key), 0, False),
        mystery: (0, unpriced, True),  # nothing priced: 0, and the tokens say what is missing
    }
    [project] = rows(
        engine,
        f"SELECT cost_usd, unpriced_tokens, cost_by_kind, simulated FROM {S}.v_project_daily_cost",
    )
    assert project.cost_usd == rounded(key_a + key_b + no_key)
    assert project.unpriced_tokens == unpriced and project.simulated is False
    assert Decimal(str(project.cost_by_kind["completions"])) == project.cost_usd
    # Every kind side by side: the unpriced model's quantity is in unpriced_quantity.
    usage = rows(
        engine,
        f"SELECT model, cost_usd, quantity, unpriced_quantity FROM {S}.v_usage_daily_cost "
        "ORDER BY model",
    )
    assert [(r.model, r.cost_usd, r.unpriced_quantity) for r in usage] == [
        (mystery, 0, unpriced),
        (gpt, rounded(key_a + key_b + no_key), 0),
    ]
    # Per key, per model and per project: the same priced amount (to the rounding of the
    # rows summed) and the same unpriced tokens.
    assert abs(sum(c for c, _, _ in per_key.values()) - project.cost_usd) <= 3 * MICRO / 2
    assert sum(t for _, t, _ in per_key.values()) == project.unpriced_tokens


def test_simulated_is_the_day_of_its_loads(engine: Engine, tmp_path: Path) -> None:
    """A day loaded from the simulator is simulated in every view, the same usage loaded for
    real the next day is not, billed rows of a day without any load are not, and the late
    arrival of reloads keeps the two apart."""
    real_day = DAY + dt.timedelta(days=1)
    usage = [keyed("gpt-4.1-2025-04-14", "key_a", input_text_tokens=100, output_text_tokens=10)]
    for _ in range(2):  # reloaded: a late-arrival row for each
        load_day(engine, DAY, [dict(r) for r in usage], simulated=True)
        load_day(engine, real_day, [dict(r) for r in usage], simulated=False)
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    end = real_day + dt.timedelta(days=1)
    price_usage(engine, DAY, end, PricingInputs(prices))
    summarize_costs(engine, DAY, end)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.costs_daily (usage_date, project_id, line_item, amount_usd, "
                "currency, result) VALUES (:day, 'proj_a', 'gpt-4.1, input', 0.5, 'usd', '{}')"
            ),
            [{"day": d} for d in (DAY, real_day, DAY - dt.timedelta(days=1))],
        )
    for view in ("v_usage_token_kinds", "v_api_key_daily_cost", "v_model_daily_cost",
                 "v_project_daily_cost", "v_usage_daily_cost", "v_usage_day_revisions",
                 "v_estimated_vs_billed", "v_reconciliation_daily"):  # fmt: skip
        by_day = {
            (day, simulated)
            for day, simulated in rows(engine, f"SELECT usage_date, simulated FROM {S}.{view}")
        }
        expected = {(DAY, True), (real_day, False)}
        if view in ("v_estimated_vs_billed", "v_reconciliation_daily"):
            expected.add((DAY - dt.timedelta(days=1), False))  # billed, never loaded
        assert by_day == expected, view
    # Reloads of simulated days apart from real ones.
    late = rows(engine, f"SELECT simulated, reloads FROM {S}.v_usage_late_arrival ORDER BY 1")
    assert [tuple(r) for r in late] == [(False, 1), (True, 1)]


def test_views_add_up_on_a_simulated_day(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI, tmp_path: Path
) -> None:
    """The simulated organization's day, every kind, with the audio model's audio unpriced (a
    price override with text rates only): for each project, the keys' and the models'
    completions cost equal the project's (and the table's priced amount) to the rounding of
    the rows summed, their unpriced tokens are equal; no cost column is NULL or has more than
    six decimals; every row's `simulated` is its day's loads'; the allocation view sums to the
    bill per billed amount rounded to the micro-dollar, exactly."""
    overrides = tmp_path / "prices.yaml"
    overrides.write_text(AUDIO_WITHOUT_AUDIO_RATES)
    run = dg.materialize(
        EVERYTHING,
        partition_key=DAY.isoformat(),
        resources=resources(simulator, database_url, overrides_file=str(overrides)),
    )
    assert run.success

    # The table's priced amount and unpriced tokens per project: the truth the views round.
    truth = {
        (r.organization, r.usage_date, r.project_id): (r.cost, r.unpriced)
        for r in rows(
            engine,
            "SELECT organization, usage_date, project_id, coalesce(sum(cost_usd), 0) AS cost, "
            "coalesce(sum(input_tokens + output_tokens) FILTER (WHERE cost_usd IS NULL), 0) "
            f"AS unpriced FROM {S}.project_daily_costs GROUP BY 1, 2, 3",
        )
    }
    assert sum(unpriced for _, unpriced in truth.values()) > 0  # the override left some
    assert len(truth) >= 3

    def per_project(sql: str) -> dict[tuple[Any, ...], tuple[Decimal, int, int]]:
        return {
            (r.organization, r.usage_date, r.project_id): (r.cost, r.unpriced, r.n)
            for r in rows(engine, sql)
        }

    views = {
        "keys": per_project(
            "SELECT organization, usage_date, project_id, sum(cost_usd) AS cost, "
            f"sum(unpriced_tokens) AS unpriced, count(*) AS n FROM {S}.v_api_key_daily_cost "
            "GROUP BY 1, 2, 3"
        ),
        "models": per_project(
            "SELECT organization, usage_date, project_id, sum(cost_usd) AS cost, "
            f"sum(unpriced_tokens) AS unpriced, count(*) AS n FROM {S}.v_model_daily_cost "
            "GROUP BY 1, 2, 3"
        ),
        "projects": per_project(
            "SELECT organization, usage_date, project_id, "
            "(cost_by_kind ->> 'completions')::numeric AS cost, unpriced_tokens AS unpriced, "
            f"1 AS n FROM {S}.v_project_daily_cost"
        ),
    }
    for name, sums in views.items():
        assert sums.keys() == truth.keys(), name
        for project, (cost, unpriced, n) in sums.items():
            assert unpriced == truth[project][1], (name, project)
            assert abs(cost - truth[project][0]) <= n * MICRO / 2, (name, project, cost)
    # The case: keys with priced spend beside unpriced tokens (a NULL day before 0015).
    [partly] = rows(
        engine,
        f"SELECT count(*) FROM {S}.v_api_key_daily_cost WHERE unpriced_tokens > 0 AND cost_usd > 0",
    )
    assert partly[0] > 0

    for view, columns in MONEY.items():
        if view == "v_budget_status":
            continue  # no budgets here: test_budgets reads its numbers
        for column in columns:
            # NULL only where nothing is billed yet (the bill lags), never for pricing.
            nullable = (view, column) == ("v_estimated_vs_billed", "billed_usd")
            [(count, bad)] = rows(
                engine,
                f"SELECT count(*), count(*) FILTER (WHERE {column} <> round({column}, 6) "
                f"OR ({column} IS NULL AND NOT :nullable)) FROM {S}.{view}",
                nullable=nullable,
            )
            assert count > 0 and bad == 0, (view, column)
    [(kinds, bad_kinds)] = rows(
        engine,
        "SELECT count(*), count(*) FILTER (WHERE k.value::numeric <> round(k.value::numeric, 6)) "
        f"FROM {S}.v_project_daily_cost v, jsonb_each_text(v.cost_by_kind) k",
    )
    assert kinds > 3 and bad_kinds == 0
    # The test's simulator is reached with an admin key, as a real API would be: its loads are
    # recorded as not simulated. Every view follows usage_loads, both ways.
    for flag in (False, True):
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {S}.usage_loads SET simulated = :flag"), {"flag": flag})
        for view in USAGE_VIEWS:
            if view in ("v_budget_status", "v_usage_late_arrival"):
                continue  # no budgets, no reloads here (see the test above)
            [(count, simulated)] = rows(
                engine, f"SELECT count(*), count(*) FILTER (WHERE simulated) FROM {S}.{view}"
            )
            assert count > 0 and simulated == (count if flag else 0), (view, flag)
        [(focus_rows, focus_simulated)] = rows(
            engine,
            f'SELECT count(*), count(*) FILTER (WHERE "x_Simulated") FROM {S}.v_focus_1_2',
        )
        assert focus_rows > 0 and focus_simulated == (focus_rows if flag else 0)

    # The bill, each billed amount (what the allocation shares out) rounded to the micro-dollar.
    billed: dict[str | None, Decimal] = defaultdict(Decimal)
    for r in rows(
        engine,
        f"SELECT project_id, sum(amount_usd) AS usd FROM {S}.costs_daily "
        "GROUP BY usage_date, project_id, line_item, api_key_id, user_id",
    ):
        billed[r.project_id] += rounded(r.usd)
    exact: dict[str | None, Decimal] = defaultdict(Decimal)
    for r in rows(engine, f"SELECT project_id, amount_usd FROM {S}.costs_daily"):
        exact[r.project_id] += r.amount_usd
    allocated = dict(
        rows(
            engine,
            f"SELECT project_id, sum(billed_usd) FROM {S}.v_cost_allocation_daily GROUP BY 1",
        )
    )
    assert allocated == billed
    assert allocated != exact  # the simulator bills with 16 decimals: rounding mattered


# ---------------------------------------------------------------------------- migration 0015

VIEWS_0015 = [
    "v_usage_token_kinds", "v_api_key_daily_cost", "v_model_daily_cost", "v_project_daily_cost",
    "v_estimated_vs_billed", "v_usage_daily_cost", "v_reconciliation_daily",
    "v_vector_store_storage_daily", "v_usage_day_revisions", "v_usage_late_arrival",
    "v_cost_allocation_daily", "v_budget_status", "v_focus_1_2", "v_focus_1_2_csv",
]  # fmt: skip


@pytest.fixture
def fresh_url(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


def schema_views(engine: Engine) -> dict[str, tuple[Any, ...]]:
    """Each view: its definition, columns with types, whether the BI role may read it, and
    its comment."""
    return {
        r.viewname: (r.definition, r.columns, r.readable, r.comment)
        for r in rows(
            engine,
            "SELECT v.viewname, v.definition, "
            "  (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) "
            "                    ORDER BY a.attnum) "
            "   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0) AS columns, "
            "  has_table_privilege('usage_readonly', c.oid, 'SELECT') AS readable, "
            "  obj_description(c.oid, 'pg_class') AS comment "
            "FROM pg_views v JOIN pg_class c ON c.relname = v.viewname "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = v.schemaname "
            "WHERE v.schemaname = :s",
            s=S,
        )
    }


def test_migration_0015_up_and_down(fresh_url: str) -> None:
    """0015 redefines every view (with `simulated`, rounded money, the priced/unpriced rule),
    readable by the BI role; its downgrade restores 0014's views exactly (definitions, column
    types, grants, the FOCUS comment); upgrading again gives 0015's."""
    migrate(fresh_url, "0014")
    engine = engine_for(fresh_url)
    before = schema_views(engine)
    assert sorted(before) == sorted(VIEWS_0015)
    migrate(fresh_url, "0015")
    after = schema_views(engine)
    assert after.keys() == before.keys()
    for view in VIEWS_0015:
        definition, columns, readable, comment = after[view]
        assert readable, view
        assert definition != before[view][0], view
        assert comment == before[view][3], view
        simulated = "x_Simulated" if view.startswith("v_focus") else "simulated"
        kind = "text" if view == "v_focus_1_2_csv" else "boolean"
        assert columns[-1] == f"{simulated} {kind}", view
        assert [c for c in columns[:-1] if "simulated" in c.lower()] == [], view
    command.downgrade(alembic_config(fresh_url), "0014")
    assert schema_views(engine) == before
    migrate(fresh_url, "0015")
    assert schema_views(engine) == after
