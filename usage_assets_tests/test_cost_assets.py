"""Cost assets in Dagster: checks, metadata, views, and following upstream re-materializations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy import Engine, text

from usage_assets.assets import completions_usage_hourly
from usage_assets.cost_assets import project_daily_cost_summary, project_daily_costs
from usage_assets.resources import OpenAIAdminResource, PricingResource, UsageDatabase
from usage_assets.settings import PROJECT_ROOT
from usage_assets.simulator.server import SimulatedAdminAPI

from .conftest import day_reports

DAY = "2025-11-20"
ASSETS = [completions_usage_hourly, project_daily_costs, project_daily_cost_summary]


def resources(sim: SimulatedAdminAPI, database_url: str, **pricing: Any) -> dict[str, Any]:
    return {
        "openai_admin": OpenAIAdminResource(base_url=sim.base_url, admin_key="sk-admin-test-1"),
        "usage_db": UsageDatabase(url=database_url),
        "pricing": PricingResource(**pricing),
    }


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_costs_for_a_simulated_day(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    result = dg.materialize(ASSETS, partition_key=DAY, resources=resources(simulator, database_url))
    assert result.success
    checks = check_results(result)
    assert checks["tokens_match_usage"].passed
    assert checks["no_negative_values"].passed
    # The simulated org uses an audio model (no audio rates in genai-prices) and o3-mini flex.
    unpriced = checks["all_usage_priced"]
    assert not unpriced.passed and unpriced.severity == dg.AssetCheckSeverity.WARN
    table = str(unpriced.metadata["unpriced_models"].value)
    assert "gpt-4o-audio-preview-2024-12-17" in table and "no audio input rate" in table

    [costs] = day_reports(result, "project_daily_costs")
    with engine.connect() as conn:
        total = conn.execute(
            text("SELECT sum(cost_usd) FROM openai_usage.project_daily_costs")
        ).scalar()
        view = conn.execute(
            text(
                "SELECT sum(cost_usd), count(*) FILTER (WHERE project_name IS NULL) "
                "FROM openai_usage.v_project_daily_cost"
            )
        ).one()
        per_key = conn.execute(
            text("SELECT sum(cost_usd) FROM openai_usage.v_api_key_daily_cost")
        ).scalar()
        priced_keys = conn.execute(
            text(
                "SELECT sum(cost_usd) FROM openai_usage.project_daily_costs c WHERE NOT EXISTS "
                "(SELECT 1 FROM openai_usage.project_daily_costs u WHERE u.cost_usd IS NULL "
                "AND u.project_id IS NOT DISTINCT FROM c.project_id)"
            )
        ).scalar()
    assert Decimal(total) > 0
    assert costs.metadata["cost_usd"].value == float(total)
    assert view == (total, 0)  # the summary adds up; every row has a display name
    # Per key, a key that touched unpriced usage has a NULL cost; the rest adds up exactly.
    assert per_key is not None and per_key <= total
    assert priced_keys is not None


def test_overrides_price_everything(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    example = PROJECT_ROOT / "prices" / "overrides.example.yaml"
    result = dg.materialize(
        ASSETS,
        partition_key=DAY,
        resources=resources(simulator, database_url, overrides_file=str(example)),
    )
    assert result.success
    assert check_results(result)["all_usage_priced"].passed
    with engine.connect() as conn:
        unpriced = conn.execute(
            text("SELECT count(*) FROM openai_usage.project_daily_costs WHERE cost_usd IS NULL")
        ).scalar()
    assert unpriced == 0


def test_cost_partitions_follow_upstream(database_url: str, simulator: SimulatedAdminAPI) -> None:
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=ASSETS, resources=resources(simulator, database_url))
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    # Nothing upstream has changed yet: nothing is requested.
    assert first.total_requested == 0

    dg.materialize(
        [completions_usage_hourly],
        partition_key=DAY,
        instance=instance,
        resources=resources(simulator, database_url),
    )
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(dg.AssetKey("project_daily_costs")) == {DAY}
    # The rollup waits for the cost partition it depends on (requested in the same tick).
    summary = second.get_requested_partitions(dg.AssetKey("project_daily_cost_summary"))
    assert summary in (set(), {DAY})


def test_raw_backfill_can_include_downstream(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    """One run materializes raw, cost and rollup partitions together (a UI backfill does too)."""
    for day in ("2025-11-19", "2025-11-20"):
        assert dg.materialize(
            ASSETS, partition_key=day, resources=resources(simulator, database_url)
        ).success
    with engine.connect() as conn:
        days = conn.execute(
            text("SELECT DISTINCT usage_date FROM openai_usage.v_project_daily_cost ORDER BY 1")
        ).scalars()
        assert list(days) == [dt.date(2025, 11, 19), dt.date(2025, 11, 20)]


def test_readme_example_queries_run_as_the_readonly_role(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    import re

    assert dg.materialize(
        ASSETS, partition_key=DAY, resources=resources(simulator, database_url)
    ).success
    readme = (PROJECT_ROOT / "README.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", readme, flags=re.S)
    assert len(queries) >= 5
    with engine.connect() as conn:
        conn.execute(text("SET ROLE usage_readonly"))
        for query in queries:
            conn.execute(text(query))  # raises on a typo or a missing grant
        weekly = conn.execute(text(queries[3])).all()
        conn.execute(text("RESET ROLE"))
    assert weekly and {mode for _, mode, _, _ in weekly} <= {"batch", "interactive"}


def test_estimated_vs_billed_reconciliation(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    from usage_assets.checks import estimated_matches_billed
    from usage_assets.organization_assets import costs_daily

    example = str(PROJECT_ROOT / "prices" / "overrides.example.yaml")
    everything = [*ASSETS, costs_daily, estimated_matches_billed]

    def run(tolerance: float, overrides: str | None) -> dg.AssetCheckEvaluation:
        result = dg.materialize(
            everything,
            partition_key=DAY,
            resources=resources(
                simulator,
                database_url,
                overrides_file=overrides,
                reconciliation_tolerance=tolerance,
            ),
        )
        assert result.success
        return check_results(result)["estimated_matches_billed"]

    # Everything priced: the simulated bill is within its ±0.5% noise of the estimate.
    within = run(0.01, example)
    assert within.passed, within.metadata["worst_projects"].value
    assert within.metadata["projects_compared"].value >= 5
    # A zero tolerance shows the gaps, worst first, per project and per line item.
    strict = run(0.0, example)
    assert not strict.passed and strict.severity == dg.AssetCheckSeverity.WARN
    assert "cached input" in str(strict.metadata["worst_line_items"].value) or "output" in str(
        strict.metadata["worst_line_items"].value
    )
    # Without the audio rates, the audio model's project is estimated too low.
    unpriced = run(0.01, None)
    assert not unpriced.passed
    assert "gpt-4o-audio-preview" in str(unpriced.metadata["worst_line_items"].value)
