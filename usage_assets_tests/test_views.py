"""The BI views add up (migration 0015): one priced/unpriced rule in every view, so per API key,
per model and per project the completions cost and unpriced tokens of an organization's day
are the same; money rounded to micro-dollars in the views (exact in the tables); `simulated`
from the day's loads. Migration 0017: every usage kind per API key, so the keys of a project's
day add up to the project's whole cost. Each migration's downgrade and upgrade again."""

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
from alembic.script import ScriptDirectory
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
from usage_assets.pricing.attribution import (
    PricingInputs,
    price_unit_usage,
    price_usage,
    summarize_costs,
)
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
    "v_cost_allocation_project_daily": ["billed_usd", "estimated_usd", "unallocated_usd"],
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
    "v_cost_allocation_project_daily",
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
        # The keys' completions (0017: a key's cost_usd is every kind's, see the 0017 tests).
        "keys": per_project(
            "SELECT organization, usage_date, project_id, "
            "sum((cost_by_kind ->> 'completions')::numeric) AS cost, "
            f"sum(unpriced_tokens) AS unpriced, count(*) AS n FROM {S}.v_api_key_daily_cost "
            "WHERE cost_by_kind ? 'completions' GROUP BY 1, 2, 3"
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
    # Per day and project (migration 0021): the finer view's sums, to the micro-dollar.
    fine = {
        (r.usage_date, r.project_id): (r.billed, r.estimated, r.unallocated, r.n)
        for r in rows(
            engine,
            "SELECT usage_date, project_id, sum(billed_usd) AS billed, "
            "round(sum(estimated_usd), 6) AS estimated, sum(unallocated_usd) AS unallocated, "
            f"sum(line_items) AS n FROM {S}.v_cost_allocation_daily GROUP BY 1, 2",
        )
    }
    coarse = {
        (r.usage_date, r.project_id): (r.billed_usd, r.estimated_usd, r.unallocated_usd, r.n)
        for r in rows(
            engine,
            "SELECT usage_date, project_id, billed_usd, estimated_usd, unallocated_usd, "
            f"line_items AS n FROM {S}.v_cost_allocation_project_daily",
        )
    }
    assert len(coarse) >= 3
    assert coarse.keys() == fine.keys()
    for key, (billed_usd, estimated_usd, unallocated_usd, n) in coarse.items():
        f_billed, f_estimated, f_unallocated, f_n = fine[key]
        assert (billed_usd, unallocated_usd, n) == (f_billed, f_unallocated, f_n), key
        assert abs(estimated_usd - f_estimated) <= f_n * MICRO, key


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


# ------------------------------------------------------- 0017: every usage kind, per API key

VIEW_0017 = "v_api_key_daily_cost"
#: A day row of a project: (organization, usage_date, project_id).
ProjectDay = tuple[str, dt.date, str | None]


def tables_per_kind(engine: Engine) -> dict[ProjectDay, dict[str, tuple[Decimal, Decimal]]]:
    """From the cost tables, not the views: per project day and usage kind, the exact priced
    amount and the unpriced quantity (completions: tokens of unpriced day rows; another kind:
    the quantity of its rows without a price, in its unit)."""
    truth: dict[ProjectDay, dict[str, tuple[Decimal, Decimal]]] = defaultdict(dict)
    for r in rows(
        engine,
        "SELECT organization, usage_date, project_id, usage_kind, "
        "coalesce(sum(cost_usd), 0) AS cost, "
        "coalesce(sum(quantity) FILTER (WHERE cost_usd IS NULL), 0) AS unpriced FROM ("
        "  SELECT organization, usage_date, project_id, usage_kind, cost_usd, "
        "         (input_tokens + output_tokens)::numeric AS quantity "
        f"  FROM {S}.project_daily_costs "
        "  UNION ALL "
        "  SELECT organization, usage_date, project_id, usage_kind, cost_usd, quantity "
        f"  FROM {S}.usage_daily_costs) x "
        "GROUP BY 1, 2, 3, 4",
    ):
        truth[(r.organization, r.usage_date, r.project_id)][r.usage_kind] = (r.cost, r.unpriced)
    return dict(truth)


def key_rows(engine: Engine) -> list[Any]:
    return rows(engine, f"SELECT * FROM {S}.{VIEW_0017}")


def key_kinds(
    engine: Engine,
) -> dict[tuple[ProjectDay, str | None], dict[str, tuple[Decimal, Decimal]]]:
    """Each key's day: kind -> (cost_by_kind, unpriced_quantity_by_kind), read as exact text
    (a jsonb number parsed as a float would lose digits)."""
    out: dict[tuple[ProjectDay, str | None], dict[str, tuple[Decimal, Decimal]]] = defaultdict(dict)
    for r in rows(
        engine,
        "SELECT v.organization, v.usage_date, v.project_id, v.api_key_id, c.key AS kind, "
        "c.value AS cost, q.value AS unpriced "
        f"FROM {S}.{VIEW_0017} v "
        "CROSS JOIN LATERAL jsonb_each_text(v.cost_by_kind) c "
        "LEFT JOIN LATERAL jsonb_each_text(v.unpriced_quantity_by_kind) q ON q.key = c.key",
    ):
        day = (r.organization, r.usage_date, r.project_id)
        unpriced = Decimal(r.unpriced) if r.unpriced is not None else Decimal("NaN")
        out[(day, r.api_key_id)][r.kind] = (Decimal(r.cost), unpriced)
    return dict(out)


def test_keys_add_up_to_their_project_on_a_simulated_day(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI, tmp_path: Path
) -> None:
    """The simulated organization's day, every endpoint, with the audio model's audio tokens
    unpriced (override without audio rates) and the web search rows made unpriced (as a price
    list without them would leave them): for every project day, the keys' cost_usd add up to
    the project's cost_usd (every kind), each kind's cost_by_kind to the kind's cost, their
    unpriced tokens to the project's, their unpriced quantity per kind to the rows' without a
    price; usage of the endpoints without a key is the NULL key's."""
    overrides = tmp_path / "prices.yaml"
    overrides.write_text(AUDIO_WITHOUT_AUDIO_RATES)
    run = dg.materialize(
        EVERYTHING,
        partition_key=DAY.isoformat(),
        resources=resources(simulator, database_url, overrides_file=str(overrides)),
    )
    assert run.success
    with engine.begin() as conn:
        unpriced_rows = conn.execute(
            text(
                f"UPDATE {S}.usage_daily_costs SET cost_usd = NULL, unit_price_id = NULL, "
                "free_quantity = 0, unpriced_reason = 'no price for web_search_calls (test)' "
                "WHERE usage_kind = 'web_search_calls'"
            )
        ).rowcount
    assert unpriced_rows > 0
    summarize_costs(engine, DAY, DAY + dt.timedelta(days=1))

    truth = tables_per_kind(engine)
    # The test means something: several projects, a non-token cost row shared by two keys,
    # unpriced tokens and unpriced non-token quantity.
    assert len(truth) >= 3
    [shared] = rows(
        engine,
        "SELECT count(*) FROM (SELECT 1 FROM ("
        "  SELECT project_id, model, context_level::text AS detail, api_key_id "
        f"  FROM {S}.web_search_calls_usage_hourly UNION "
        "  SELECT project_id, model, '', api_key_id "
        f"  FROM {S}.embeddings_usage_hourly) u "
        "GROUP BY project_id, model, detail HAVING count(DISTINCT api_key_id) >= 2) x",
    )
    assert shared[0] > 0
    assert sum(k["completions"][1] for k in truth.values() if "completions" in k) > 0
    assert sum(k["web_search_calls"][1] for k in truth.values() if "web_search_calls" in k) > 0

    keys = key_rows(engine)
    kinds = key_kinds(engine)
    projects = {
        (r.organization, r.usage_date, r.project_id): r
        for r in rows(engine, f"SELECT * FROM {S}.v_project_daily_cost")
    }
    per_project: dict[ProjectDay, list[Any]] = defaultdict(list)
    for r in keys:
        per_project[(r.organization, r.usage_date, r.project_id)].append(r)
    assert per_project.keys() == truth.keys() == projects.keys()
    for day, day_keys in per_project.items():
        exact = sum((cost for cost, _ in truth[day].values()), Decimal(0))
        n = len(day_keys)
        keys_usd = sum((r.cost_usd for r in day_keys), Decimal(0))
        # Each key row is rounded once (half a micro-dollar), the project row once.
        assert abs(keys_usd - exact) <= n * MICRO / 2, (day, keys_usd, exact)
        assert abs(projects[day].cost_usd - exact) <= MICRO / 2, day
        assert abs(keys_usd - projects[day].cost_usd) <= (n + 1) * MICRO / 2, day
        assert sum(r.unpriced_tokens for r in day_keys) == projects[day].unpriced_tokens
        assert projects[day].unpriced_tokens == truth[day].get("completions", (0, 0))[1]
        # Per kind: the keys' shares add up to the kind's cost and unpriced quantity.
        by_kind: dict[str, list[tuple[Decimal, Decimal]]] = defaultdict(list)
        for r in day_keys:
            for kind, values in kinds[(day, r.api_key_id)].items():
                by_kind[kind].append(values)
        assert by_kind.keys() == truth[day].keys(), day
        for kind, shares in by_kind.items():
            cost, unpriced = truth[day][kind]
            assert abs(sum(c for c, _ in shares) - cost) <= len(shares) * MICRO / 2, (day, kind)
            # Exact but for numeric division (seconds / 60, 16 significant digits or more).
            assert abs(sum(q for _, q in shares) - unpriced) <= Decimal("1e-12"), (day, kind)
            assert all(c == rounded(c) for c, _ in shares)
    for r in keys:
        row_kinds = kinds[((r.organization, r.usage_date, r.project_id), r.api_key_id)]
        assert r.cost_usd == rounded(r.cost_usd) and r.cost_usd is not None
        assert abs(r.cost_usd - sum(c for c, _ in row_kinds.values())) <= len(row_kinds) * MICRO
        assert r.unpriced_tokens == row_kinds.get("completions", (0, 0))[1]
        if r.api_key_id is not None:
            # The endpoints without an API key dimension are the NULL key's only.
            assert not {"vector_stores", "code_interpreter_sessions"} & row_kinds.keys(), r
    assert any("vector_stores" in k for (_, key), k in kinds.items() if key is None)
    assert any("code_interpreter_sessions" in k for (_, key), k in kinds.items() if key is None)
    assert any(r.unpriced_tokens > 0 and r.cost_usd > 0 for r in keys)  # partly priced keys
    # README's table of what adds up: the project views' estimates, each row rounded once.
    for view, column in (
        ("v_usage_daily_cost", "cost_usd"),
        ("v_reconciliation_daily", "estimated_usd"),
        ("v_estimated_vs_billed", "estimated_usd"),
    ):
        sums = {
            (r.organization, r.usage_date, r.project_id): (r.usd, r.n)
            for r in rows(
                engine,
                f"SELECT organization, usage_date, project_id, sum({column}) AS usd, "
                f"count(*) AS n FROM {S}.{view} GROUP BY 1, 2, 3",
            )
        }
        assert sums.keys() >= truth.keys(), view  # the bill may have days without usage
        for day in truth:
            usd, n = sums[day]
            exact = sum((cost for cost, _ in truth[day].values()), Decimal(0))
            assert abs(usd - exact) <= n * MICRO / 2, (view, day)
            if view == "v_estimated_vs_billed":
                assert usd == projects[day].cost_usd, day
    # The same unpriced quantities as v_usage_daily_cost, per kind.
    usage_view = dict(
        rows(
            engine,
            f"SELECT usage_kind, sum(unpriced_quantity) FROM {S}.v_usage_daily_cost GROUP BY 1",
        )
    )
    keys_unpriced: dict[str, Decimal] = defaultdict(Decimal)
    for row_kinds in kinds.values():
        for kind, (_, unpriced) in row_kinds.items():
            keys_unpriced[kind] += unpriced
    assert keys_unpriced.keys() == usage_view.keys()
    for kind, quantity in usage_view.items():
        assert abs(keys_unpriced[kind] - quantity) <= Decimal("1e-12"), kind


#: gpt-4.1 as above; embeddings, transcriptions and code interpreter at rates with more
#: decimals than the views show; no price for the web search model.
HAND_PRICES_0017 = (
    PRICES
    + """unit_prices:
  - usage_kind: embeddings
    model: text-embedding-3-small
    usd_per_1m: 0.013
  - usage_kind: audio_transcriptions
    model: whisper-1
    usd_per_unit: 0.0061
  - usage_kind: code_interpreter_sessions
    usd_per_unit: 0.0325
"""
)


def test_a_project_day_split_over_its_keys_by_hand(engine: Engine, tmp_path: Path) -> None:
    """One project: key_a has completions, embeddings, transcription seconds and unpriced web
    searches; key_b a third of key_a's embeddings tokens, transcription and web searches too;
    code interpreter sessions have no key. Each key's share of each cost row, by hand; before
    the other kinds are priced their usage is the keys' unpriced quantity."""
    from .test_unit_pricing import usage

    gpt = "gpt-4.1-2025-04-14"
    completions = keyed(gpt, "key_a", input_text_tokens=1_001, output_text_tokens=334)
    load_day(engine, DAY, [completions], simulated=False)
    project = {"project_id": "proj_a"}
    embeddings = "text-embedding-3-small"
    usage(
        engine,
        "embeddings",
        {**project, "api_key_id": "key_a", "model": embeddings, "input_tokens": 600_000},
        {**project, "api_key_id": "key_a", "model": embeddings, "input_tokens": 400_011,
         "hour": 11},
        {**project, "api_key_id": "key_b", "model": embeddings, "input_tokens": 333_337},
    )  # fmt: skip
    usage(
        engine,
        "audio_transcriptions",
        {**project, "api_key_id": "key_a", "model": "whisper-1", "seconds": 100},
        {**project, "api_key_id": "key_b", "model": "whisper-1", "seconds": 20},
    )
    usage(
        engine,
        "web_search_calls",
        {**project, "api_key_id": "key_a", "model": "acme-search-1", "context_level": "low",
         "num_requests": 10},
        {**project, "api_key_id": "key_b", "model": "acme-search-1", "context_level": "low",
         "num_requests": 5},
    )  # fmt: skip
    usage(engine, "code_interpreter_sessions", {**project, "num_sessions": 7})
    prices = tmp_path / "prices.yaml"
    prices.write_text(HAND_PRICES_0017)
    end = DAY + dt.timedelta(days=1)
    price_usage(engine, DAY, end, PricingInputs(prices))

    # Completions priced, the other kinds not yet: their quantity is unpriced, never zero.
    before = key_kinds(engine)
    day = (DEFAULT_ORGANIZATION, DAY, "proj_a")
    minutes_cost, minutes = before[(day, "key_b")].pop("audio_transcriptions")
    assert minutes_cost == 0 and abs(minutes - Decimal(20) / 60) < Decimal("1e-15")  # in minutes
    assert before[(day, "key_b")] == {"embeddings": (0, 333_337), "web_search_calls": (0, 5)}
    assert before[(day, None)] == {"code_interpreter_sessions": (0, 7)}

    price_unit_usage(engine, DAY, end, PricingInputs(prices))
    summarize_costs(engine, DAY, end)

    completions_a = 2 * (usd(1_001, "0.125") + usd(334, "0.375"))  # two hours
    embeddings_a = usd(1_000_011, "0.013")
    embeddings_b = usd(333_337, "0.013")
    assert embeddings_a == 3 * embeddings_b  # 3:1
    transcription_a = Decimal(100) / 60 * Decimal("0.0061")
    transcription_b = Decimal(20) / 60 * Decimal("0.0061")
    sessions = 7 * Decimal("0.0325")
    after = key_kinds(engine)
    assert after == {
        (day, "key_a"): {
            "completions": (rounded(completions_a), 0),
            "embeddings": (rounded(embeddings_a), 0),
            "audio_transcriptions": (rounded(transcription_a), 0),
            "web_search_calls": (0, 10),
        },
        (day, "key_b"): {
            "embeddings": (rounded(embeddings_b), 0),
            "audio_transcriptions": (rounded(transcription_b), 0),
            "web_search_calls": (0, 5),
        },
        (day, None): {"code_interpreter_sessions": (sessions, 0)},
    }
    per_key = {
        r.api_key_id: (r.cost_usd, r.unpriced_tokens, r.input_tokens, r.num_model_requests)
        for r in key_rows(engine)
    }
    assert per_key == {
        "key_a": (
            rounded(completions_a + embeddings_a + transcription_a),
            0,
            2 * 1_001,
            2 * completions["num_model_requests"],  # completions' requests only
        ),
        "key_b": (rounded(embeddings_b + transcription_b), 0, 0, 0),
        None: (sessions, 0, 0, 0),
    }
    [total] = rows(engine, f"SELECT cost_usd, unpriced_usage_rows FROM {S}.v_project_daily_cost")
    exact = completions_a + embeddings_a + embeddings_b + transcription_a + transcription_b
    exact += sessions
    assert total.cost_usd == rounded(exact)
    assert total.unpriced_usage_rows == 1  # the web search row, 15 calls over two keys
    assert abs(sum(c for c, *_ in per_key.values()) - total.cost_usd) <= 4 * MICRO / 2


def test_migration_0017_up_and_down(fresh_url: str) -> None:
    """0017 redefines the key view only (0015's columns, then cost_by_kind and
    unpriced_quantity_by_kind before `simulated`), readable by the BI role; its downgrade
    restores the previous revision's views exactly; upgrading again gives 0017's."""
    config = alembic_config(fresh_url)
    previous = ScriptDirectory.from_config(config).get_revision("0017").down_revision
    assert isinstance(previous, str)
    migrate(fresh_url, previous)
    engine = engine_for(fresh_url)
    before = schema_views(engine)
    migrate(fresh_url, "0017")
    after = schema_views(engine)
    assert after.keys() == before.keys()
    assert {view for view in after if after[view] != before[view]} == {VIEW_0017}
    _, columns, readable, comment = after[VIEW_0017]
    assert readable and comment == before[VIEW_0017][3]
    old_columns = before[VIEW_0017][1]
    assert columns == [
        *old_columns[:-1],
        "cost_by_kind jsonb",
        "unpriced_quantity_by_kind jsonb",
        old_columns[-1],
    ]
    assert old_columns[-1] == "simulated boolean"
    command.downgrade(config, previous)
    assert schema_views(engine) == before
    migrate(fresh_url, "0017")
    assert schema_views(engine) == after
