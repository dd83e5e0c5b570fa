"""The UI's metadata tables name projects and API keys, the id beside the name: a FinOps reader
recognizes "Support Copilot (proj_…)", not the id alone. Checked on a simulated day against the
simulator's own directory (its projects' and keys' names), before and after the names assets
ran."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import dagster as dg
from sqlalchemy import Engine, text

from usage_assets.defs.attribution.checks import estimated_matches_billed
from usage_assets.defs.chargeback.allocation import cost_allocation_daily
from usage_assets.defs.names.assets import NAMES_ASSETS
from usage_assets.markdown import md_cell
from usage_assets.settings import PROJECT_ROOT
from usage_assets.simulator.server import SimulatedAdminAPI

from .test_allocation import EVERYTHING
from .test_cost_assets import check_results, resources

DAY = dt.date(2025, 11, 20)
DEFAULT_PROJECT = "(default project)"
NO_KEY = "(no key, or unallocated)"
WITHOUT_NAMES = [asset for asset in EVERYTHING if asset not in NAMES_ASSETS]


def column_cells(table: str, column: int = 0) -> list[str]:
    """The cells of a column (the first by default) of a Markdown table, under the header."""
    rows = table.strip().splitlines()[2:]
    return [re.split(r"(?<!\\)\|", row)[column + 1].strip() for row in rows]


def labels(
    ids: list[str | None], names: dict[str, str] | None, none: str = DEFAULT_PROJECT
) -> list[str]:
    """The expected cells, written from the simulator's directory: "name (id)", the id alone
    while no name is known, `none` for NULL; escaped as every metadata cell is."""
    return [none if i is None else md_cell(f"{names[i]} ({i})" if names else i) for i in ids]


def top(engine: Engine, sql: str) -> list[str | None]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text(sql), {"day": DAY})]


def materializations(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_metadata_tables_show_names_beside_ids(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    example = str(PROJECT_ROOT / "prices" / "overrides.example.yaml")
    project_names = {p.id: p.name for p in simulator.org.projects}
    key_names = {k.id: k.name for k in simulator.org.api_keys}

    def run(assets: list[Any]) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [*assets, estimated_matches_billed],
            partition_key=DAY.isoformat(),
            resources=resources(simulator, database_url, overrides_file=example),
        )
        assert result.success
        return result

    # First before the names assets ever ran (the ids alone), then after they ran.
    for projects, keys in ((None, None), (project_names, key_names)):
        if projects:
            names = dg.materialize(NAMES_ASSETS, resources=resources(simulator, database_url))
            assert names.success
        result = run(WITHOUT_NAMES)
        usage = materializations(result, "completions_usage_hourly")
        used = top(
            engine,
            "SELECT project_id FROM openai_usage.completions_usage_hourly "
            "GROUP BY 1 ORDER BY sum(input_tokens + output_tokens) DESC LIMIT 10",
        )
        assert None in used and len(used) >= 4  # the default project and named ones
        assert column_cells(usage["top_projects_by_tokens"]) == labels(used, projects)

        costs = materializations(result, "project_daily_costs")
        costed = top(
            engine,
            "SELECT project_id FROM openai_usage.project_daily_costs "
            "GROUP BY 1 ORDER BY coalesce(sum(cost_usd), 0) DESC NULLS LAST, 1 LIMIT 10",
        )
        assert column_cells(costs["top_projects_by_cost"]) == labels(costed, projects)

        allocation = materializations(result, "cost_allocation_daily")
        billed_projects = top(
            engine,
            "SELECT project_id FROM openai_usage.cost_allocation_daily "
            "GROUP BY 1 ORDER BY sum(allocated_usd) DESC, 1 LIMIT 10",
        )
        assert column_cells(allocation["top_projects"]) == labels(billed_projects, projects)
        billed_keys = top(
            engine,
            "SELECT api_key_id FROM openai_usage.cost_allocation_daily "
            "GROUP BY 1 ORDER BY sum(allocated_usd) DESC, 1 LIMIT 10",
        )
        assert len([k for k in billed_keys if k]) >= 5
        assert column_cells(allocation["top_api_keys"]) == labels(billed_keys, keys, NO_KEY)

        check = check_results(result)["estimated_matches_billed"]
        worst = str(check.metadata["worst_projects"].value)
        known = set(labels([None, *project_names], projects))
        shown = column_cells(worst, column=1)
        assert shown and set(shown) <= known, shown

    # Only the names assets' tables supply the names: a project renamed there is shown so.
    renamed = next(project for project in billed_projects if project)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE openai_usage.projects SET name = 'Renamed | <b>' WHERE id = :id"),
            {"id": renamed},
        )
    again = dg.materialize(
        [cost_allocation_daily],
        partition_key=DAY.isoformat(),
        resources=resources(simulator, database_url, overrides_file=example),
    )
    shown = column_cells(materializations(again, "cost_allocation_daily")["top_projects"])
    assert f"Renamed \\| &lt;b&gt; ({renamed})" in shown
