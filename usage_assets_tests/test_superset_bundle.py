"""The dashboard bundle (deploy/superset/dashboard), read as the YAML Superset imports, without
Superset: which view each chart reads, that every column and metric a chart names is in its
dataset, that every dataset matches its view in the migrated database, and which charts each
native filter of the dashboard filters (test_superset.py checks the same in a browser).

Charts that need only the day and the project read `v_cost_allocation_project_daily` (migration
0021: a large organization's month in 0.35 s, against 2.6 s over `v_cost_allocation_daily`);
only charts that need an API key, a model or a usage kind read the finer view."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, text

from usage_assets.bi import superset

S = "openai_usage"
FINE = "v_cost_allocation_daily"
PER_PROJECT = "v_cost_allocation_project_daily"
ESTIMATE = "v_estimated_vs_billed"
BUDGETS = "v_budget_status"

#: The view each chart of the dashboard reads.
CHART_VIEWS = {
    "Billed spend": PER_PROJECT,
    "Spend by project and day": PER_PROJECT,
    "Spend per project": PER_PROJECT,
    "Top models": FINE,
    "Spend per API key": FINE,
    "Estimated spend": ESTIMATE,
    "Estimated vs billed per day": ESTIMATE,
    "Estimated vs billed per project": ESTIMATE,
    "Budget status": BUDGETS,
}
#: The charts each native filter filters (by its name): every chart, before and after the
#: per-project charts moved to their view.
FILTERED = {"Days": set(CHART_VIEWS), "Project": set(CHART_VIEWS)}
#: Superset's types of a dataset's columns, by PostgreSQL's (information_schema.data_type).
TYPES = {
    "date": "DATE",
    "text": "TEXT",
    "numeric": "NUMERIC",
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
}


@dataclass(frozen=True)
class Dataset:
    view: str
    schema: str
    columns: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]

    def physical_columns(self) -> dict[str, dict[str, Any]]:
        return {name: c for name, c in self.columns.items() if not c.get("expression")}


@dataclass(frozen=True)
class Chart:
    name: str
    uuid: str
    dataset: Dataset
    params: dict[str, Any]


@dataclass(frozen=True)
class Bundle:
    datasets: dict[str, Dataset]  # by uuid
    charts: dict[str, Chart]  # by name
    dashboard: dict[str, Any]


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


@cache
def bundle(root: Path = superset.BUNDLE) -> Bundle:
    datasets = {}
    for path in sorted((root / "datasets").glob("*/*.yaml")):
        d = _yaml(path)
        datasets[d["uuid"]] = Dataset(
            view=d["table_name"],
            schema=d["schema"],
            columns={c["column_name"]: c for c in d["columns"]},
            metrics={m["metric_name"]: m for m in d.get("metrics") or []},
        )
    charts = {}
    for path in sorted((root / "charts").glob("*.yaml")):
        c = _yaml(path)
        assert c["dataset_uuid"] in datasets, f"{path.name}: no dataset {c['dataset_uuid']}"
        charts[c["slice_name"]] = Chart(
            c["slice_name"], c["uuid"], datasets[c["dataset_uuid"]], c["params"]
        )
    [dashboard] = [_yaml(path) for path in (root / "dashboards").glob("*.yaml")]
    return Bundle(datasets, charts, dashboard)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def referenced(chart: Chart) -> tuple[set[str], set[str]]:
    """The columns and the saved metrics a chart's params name (a metric given as an ad-hoc
    SQL expression would name no saved metric; the charts here use saved ones only)."""
    p = chart.params
    columns = {
        *_list(p.get("x_axis")),
        *_list(p.get("groupby")),
        *_list(p.get("all_columns")),
        *(f["subject"] for f in _list(p.get("adhoc_filters"))),
        *(json.loads(order)[0] for order in _list(p.get("order_by_cols"))),
        *(p.get("temporal_columns_lookup") or {}),
    }
    metrics = {
        *_list(p.get("metric")),
        *_list(p.get("metrics")),
        *_list(p.get("percent_metrics")),
        *_list(p.get("timeseries_limit_metric")),
    }
    assert all(isinstance(name, str) for name in columns | metrics), (chart.name, p)
    # A table's column_config formats columns and metrics alike.
    for name in p.get("column_config") or {}:
        (metrics if name in chart.dataset.metrics else columns).add(name)
    return columns, metrics


def test_each_chart_reads_its_view() -> None:
    shown = {name: chart.dataset.view for name, chart in bundle().charts.items()}
    assert shown == CHART_VIEWS


def test_every_column_and_metric_a_chart_names_is_in_its_dataset() -> None:
    for chart in bundle().charts.values():
        columns, metrics = referenced(chart)
        assert columns <= chart.dataset.columns.keys(), (chart.name, chart.dataset.view)
        assert metrics <= chart.dataset.metrics.keys(), (chart.name, chart.dataset.view)
        for subject in (f["subject"] for f in _list(chart.params.get("adhoc_filters"))):
            if any(f["operator"] == "TEMPORAL_RANGE" for f in chart.params["adhoc_filters"]):
                assert chart.dataset.columns[subject]["is_dttm"], (chart.name, subject)


def test_only_charts_that_need_the_finer_grain_read_the_finer_view() -> None:
    """A chart whose columns and metrics the per-project dataset has reads that dataset; the
    ones left on v_cost_allocation_daily each need a key, a model or a usage kind."""
    charts = bundle().charts
    [per_project] = [d for d in bundle().datasets.values() if d.view == PER_PROJECT]
    answerable = set()
    for chart in charts.values():
        if chart.dataset.view not in (FINE, PER_PROJECT):
            continue
        columns, metrics = referenced(chart)
        if columns <= per_project.columns.keys() and metrics <= per_project.metrics.keys():
            answerable.add(chart.name)
    assert answerable == {name for name, c in charts.items() if c.dataset.view == PER_PROJECT}
    assert answerable == {"Billed spend", "Spend by project and day", "Spend per project"}
    # ... and the two left are the ones the brief names: a key, a model.
    assert {n for n, c in charts.items() if c.dataset.view == FINE} == {
        "Top models",
        "Spend per API key",
    }


def test_the_per_project_dataset_sums_like_the_finer_one() -> None:
    """The same metric names and expressions, so a chart moves by its dataset_uuid alone."""
    by_view = {d.view: d for d in bundle().datasets.values()}
    fine, per_project = by_view[FINE], by_view[PER_PROJECT]
    sums = {"billed_usd", "estimated_usd", "unallocated_usd"}
    assert per_project.metrics.keys() == fine.metrics.keys() == sums
    for name, metric in per_project.metrics.items():
        assert metric["expression"] == fine.metrics[name]["expression"] == f"SUM({name})"
    assert len({d.view for d in bundle().datasets.values()}) == len(bundle().datasets)


def _view_columns(engine: Engine, dataset: Dataset) -> dict[str, str]:
    with engine.connect() as conn:
        return {
            name: data_type
            for name, data_type in conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = :schema AND table_name = :view ORDER BY ordinal_position"
                ),
                {"schema": dataset.schema, "view": dataset.view},
            )
        }


def test_every_dataset_matches_its_view(engine: Engine) -> None:
    """Each dataset's columns are its view's (with the view's types), and every metric and
    computed column is SQL the view answers."""
    for dataset in bundle().datasets.values():
        view = _view_columns(engine, dataset)
        assert view, f"{dataset.schema}.{dataset.view} does not exist"
        physical = dataset.physical_columns()
        assert physical.keys() <= view.keys(), (dataset.view, physical.keys() - view.keys())
        for name, column in physical.items():
            assert column["type"] == TYPES[view[name]], (dataset.view, name, view[name])
            assert not column["is_dttm"] or view[name] == "date", (dataset.view, name)
        if dataset.view == PER_PROJECT:  # the new dataset: every column of the view
            assert physical.keys() == view.keys()
        expressions = [m["expression"] for m in dataset.metrics.values()]
        computed = [c["expression"] for c in dataset.columns.values() if c.get("expression")]
        with engine.connect() as conn:
            conn.execute(text(f"SELECT {', '.join(expressions)} FROM {S}.{dataset.view}"))
            if computed:
                conn.execute(text(f"SELECT {', '.join(computed)} FROM {S}.{dataset.view}"))


def _chart_ids(node_id: str, position: dict[str, Any]) -> Iterator[int]:
    node = position[node_id]
    if node["type"] == "CHART":
        yield node["meta"]["chartId"]
    for child in node.get("children", []):
        yield from _chart_ids(child, position)


def filtered_charts(native_filter: dict[str, Any]) -> set[str]:
    """The charts a native filter filters, by Superset's rules: every chart in its scope (the
    layout below its root paths, less the excluded chart ids); a filter on a column (a select
    filter) is applied to a chart whose dataset has that column and rejected by any other, a
    time filter to a chart with a time-range filter on a time column of its dataset."""
    b = bundle()
    position = b.dashboard["position"]
    names = {
        node["meta"]["chartId"]: node["meta"]["sliceName"]
        for node in position.values()
        if isinstance(node, dict) and node.get("type") == "CHART"
    }
    scope = native_filter["scope"]
    in_scope = {
        names[chart_id]
        for root in scope["rootPath"]
        for chart_id in _chart_ids(root, position)
        if chart_id not in scope["excluded"]
    }
    if native_filter["filterType"] == "filter_time":
        return {
            name
            for name in in_scope
            if any(
                f["operator"] == "TEMPORAL_RANGE"
                and b.charts[name].dataset.columns[f["subject"]]["is_dttm"]
                for f in _list(b.charts[name].params.get("adhoc_filters"))
            )
        }
    [target] = native_filter["targets"]  # Superset reads only the first
    column = target["column"]["name"]
    return {name for name in in_scope if column in b.charts[name].dataset.columns}


def test_the_dashboard_lays_out_every_chart_once() -> None:
    b = bundle()
    placed = [
        (node["meta"]["uuid"], node["meta"]["sliceName"])
        for node in b.dashboard["position"].values()
        if isinstance(node, dict) and node.get("type") == "CHART"
    ]
    assert sorted(placed) == sorted((c.uuid, c.name) for c in b.charts.values())


def test_the_native_filters_filter_every_chart() -> None:
    b = bundle()
    filters = b.dashboard["metadata"]["native_filter_configuration"]
    assert {f["name"]: filtered_charts(f) for f in filters} == FILTERED
    for native_filter in filters:
        for target in native_filter["targets"]:
            if "datasetUuid" not in target:
                continue
            dataset = b.datasets[target["datasetUuid"]]
            assert target["column"]["name"] in dataset.columns, native_filter["name"]
    # The Project filter lists its names from the per-project view (a few rows per day).
    [project] = [f for f in filters if f["name"] == "Project"]
    assert b.datasets[project["targets"][0]["datasetUuid"]].view == PER_PROJECT


def test_a_chart_outside_a_filters_reach_is_seen() -> None:
    """The rules above can fail: a chart whose dataset lacks the filter's column is not
    filtered, and neither is one excluded from the filter's scope."""
    b = bundle()
    [project] = [
        f for f in b.dashboard["metadata"]["native_filter_configuration"] if f["name"] == "Project"
    ]
    narrowed = {**project, "targets": [{**project["targets"][0], "column": {"name": "model"}}]}
    assert filtered_charts(narrowed) == {"Top models", "Spend per API key"}
    budget_id = next(
        node["meta"]["chartId"]
        for node in b.dashboard["position"].values()
        if isinstance(node, dict) and node.get("meta", {}).get("sliceName") == "Budget status"
    )
    excluded = {**project, "scope": {**project["scope"], "excluded": [budget_id]}}
    assert filtered_charts(excluded) == set(CHART_VIEWS) - {"Budget status"}
