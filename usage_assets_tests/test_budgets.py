"""Budgets: the budget file (both forms, every error), v_budget_status's numbers and forecast
rule on planted allocation rows of two organizations, and the asset and its checks in Dagster."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from usage_assets import settings
from usage_assets.chargeback.budgets import (
    DEFAULT_THRESHOLDS,
    BudgetEntry,
    latest_budget_status,
    load_budgets,
)
from usage_assets.defs.chargeback.budgets import (
    AFTER_ALLOCATION,
    BUDGET_CHECKS,
    budget_forecast,
    budget_month_to_date,
    budgets,
)
from usage_assets.defs.resources import BudgetsResource, UsageDatabase
from usage_assets.errors import ConfigurationError
from usage_assets_tests.test_definitions import load_definitions

ORG = "org-a"
OTHER = "org-b"
NOVEMBER = dt.date(2025, 11, 1)


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


# --------------------------------------------------------------------------- the file


def test_yaml_budgets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "budgets.yaml",
        """
budgets:
  - project: proj_abc
    monthly_usd: 500.10
    thresholds: [50, 80, 100]
  - project: proj_abc
    api_key: key_xyz
    monthly_usd: 100
    thresholds: [75.5, 120]
  - user: user_123
    monthly_usd: "50"
""",
    )
    assert load_budgets(path) == [
        BudgetEntry("proj_abc", None, None, Decimal("500.1"), DEFAULT_THRESHOLDS,
                    f"{path} budget #1"),
        BudgetEntry("proj_abc", "key_xyz", None, Decimal(100), (Decimal("75.5"), Decimal(120)),
                    f"{path} budget #2"),
        BudgetEntry(None, None, "user_123", Decimal(50), DEFAULT_THRESHOLDS, f"{path} budget #3"),
    ]  # fmt: skip


def test_csv_budgets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "budgets.csv",
        "project_id,api_key_id,user_id,monthly_usd,thresholds\n"
        "proj_abc,,,500,\n"
        "\n"
        "proj_abc,key_xyz,,100.25,60;90\n"
        ",,user_123,50,50;80;100\n",
    )
    assert load_budgets(path) == [
        BudgetEntry("proj_abc", None, None, Decimal(500), DEFAULT_THRESHOLDS, f"{path}:2"),
        BudgetEntry("proj_abc", "key_xyz", None, Decimal("100.25"), (Decimal(60), Decimal(90)),
                    f"{path}:4"),
        BudgetEntry(None, None, "user_123", Decimal(50), DEFAULT_THRESHOLDS, f"{path}:5"),
    ]  # fmt: skip


def test_no_file_no_budgets_and_an_empty_file_none_either(tmp_path: Path) -> None:
    assert load_budgets(None) == []
    assert load_budgets(write(tmp_path, "empty.yaml", "")) == []
    assert load_budgets(write(tmp_path, "empty.yml", "budgets:\n")) == []


YAML_ERRORS = [
    ("- project: p\n  monthly_usd: -5\n", "budget #1: monthly_usd=-5 must be a positive amount"),
    ("- project: p\n  monthly_usd: 0\n", "budget #1: monthly_usd=0 must be a positive amount"),
    ("- project: p\n  monthly_usd: lots\n", "budget #1: monthly_usd='lots' is not a number"),
    ("- project: p\n  monthly_usd: .nan\n", "budget #1: monthly_usd=nan is not a number"),
    ("- project: p\n  monthly_usd: true\n", "budget #1: monthly_usd=True is not a number"),
    ("- project: p\n", "budget #1: monthly_usd is required"),
    ("- project: p\n  monthly_usd: 5\n- projct: q\n  monthly_usd: 5\n",
     "budget #2: unknown keys ['projct']; allowed: ['project', 'api_key', 'user', "),
    ("- monthly_usd: 5\n", "budget #1: the scope is empty; give at least one of project, "),
    ("- project: ''\n  user: ' '\n  monthly_usd: 5\n", "budget #1: the scope is empty"),
    ("- project: 123\n  monthly_usd: 5\n", "budget #1: project=123 must be an id (text)"),
    ("- project: p\n  monthly_usd: 5\n- project: q\n  monthly_usd: 5\n- project: p\n"
     "  monthly_usd: 9\n", "budget #3: duplicate scope (project=p), already budgeted by "),
    ("- project: p\n  monthly_usd: 5\n  thresholds: [80, 50]\n",
     "budget #1: thresholds=[80, 50] must be increasing"),
    ("- project: p\n  monthly_usd: 5\n  thresholds: [50, 50]\n", "must be increasing"),
    ("- project: p\n  monthly_usd: 5\n  thresholds: [0, 100]\n",
     "budget #1: thresholds=[0, 100] must be positive percentages"),
    ("- project: p\n  monthly_usd: 5\n  thresholds: [50, x]\n",
     "budget #1: thresholds='x' is not a number"),
    ("- project: p\n  monthly_usd: 5\n  thresholds: []\n", "budget #1: thresholds is empty"),
    ("- project p monthly_usd 5\n", "budget #1: expected a mapping"),
    ("budget:\n  - project: p\n", "unknown top-level keys ['budget']; allowed: ['budgets']"),
    ("budgets: {project: p}\n", "expected 'budgets:' with a list of budget entries"),
    ("budgets: [\n", "is not valid YAML"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "message"), YAML_ERRORS)
def test_yaml_errors_name_the_file_entry_and_field(
    tmp_path: Path, content: str, message: str
) -> None:
    path = write(tmp_path, "budgets.yaml", content)
    with pytest.raises(ConfigurationError) as excinfo:
        load_budgets(path)
    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)


HEADER = "project_id,api_key_id,user_id,monthly_usd,thresholds\n"
CSV_ERRORS = [
    (HEADER + "p,,,5,\nq,,,x,\n", ":3: monthly_usd='x' is not a number"),
    (HEADER + "p,,,-1,\n", ":2: monthly_usd='-1' must be a positive amount"),
    (HEADER + "p,,,,\n", ":2: monthly_usd is required"),
    (HEADER + ",,,5,\n", ":2: the scope is empty; give at least one of project_id, api_key_id"),
    (HEADER + "p,k,,5,\np,k,,6,\n", ":3: duplicate scope (project=p, api_key=k), already "),
    (HEADER + "p,,,5,80;50\n", ":2: thresholds='80;50' must be increasing"),
    (HEADER + "p,,,5,-10;50\n", ":2: thresholds='-10;50' must be positive percentages"),
    (HEADER + "p,,,5,50;;100\n", ":2: thresholds='' is not a number"),
    (HEADER + "p,,,5,,extra\n", ":2: more cells than the header's 5"),
    ("project,monthly_usd\np,5\n", ":1: unknown columns ['project']; the header is "),
    ("project_id,user_id\np,u\n", ":1: the header has no monthly_usd column"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "message"), CSV_ERRORS)
def test_csv_errors_name_the_file_line_and_field(
    tmp_path: Path, content: str, message: str
) -> None:
    path = write(tmp_path, "budgets.csv", content)
    with pytest.raises(ConfigurationError) as excinfo:
        load_budgets(path)
    assert f"{path}{message}" in str(excinfo.value)


def test_the_file_must_exist_and_be_yaml_or_csv(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"USAGE_BUDGETS=.*missing\.yaml does not exist"):
        load_budgets(tmp_path / "missing.yaml")
    with pytest.raises(ConfigurationError, match=r"use a \.yaml, \.yml or \.csv file"):
        load_budgets(write(tmp_path, "budgets.json", "{}"))


def test_the_example_file_is_valid() -> None:
    entries = load_budgets(settings.PROJECT_ROOT / "deploy" / "budgets.example.yaml")
    assert len(entries) == 4 and {e.project_id for e in entries} >= {"proj_research"}


# --------------------------------------------------------------------------- settings


def test_a_bad_budget_file_fails_the_load_with_its_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "budgets.yaml", "- project: p\n  monthly_usd: -5\n")
    monkeypatch.setenv("USAGE_BUDGETS", str(path))
    with pytest.raises(ConfigurationError) as excinfo:
        load_definitions(monkeypatch)
    message = str(excinfo.value)
    assert message.startswith("USAGE_BUDGETS: ")
    assert f"{path} budget #1: monthly_usd=-5 must be a positive amount" in message


def test_a_good_budget_file_reaches_the_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_BUDGETS", "deploy/budgets.example.yaml")  # relative: to the repo
    assert settings.load().budgets == "deploy/budgets.example.yaml"
    assert settings.budgets_path() == settings.PROJECT_ROOT / "deploy" / "budgets.example.yaml"
    defs = load_definitions(monkeypatch)
    resource = defs.resources["budget_file"]
    assert isinstance(resource, BudgetsResource)
    assert isinstance(resource.budgets_file, dg.EnvVar)  # resolved when a run starts
    with dg.build_resources({"budget_file": resource}) as built:
        resolved = built.budget_file.path()
    assert resolved == settings.PROJECT_ROOT / "deploy" / "budgets.example.yaml"
    assert defs.get_assets_def("budgets").group_names_by_key[dg.AssetKey("budgets")] == (
        "chargeback"
    )
    checks = {key.name for check in BUDGET_CHECKS for key in check.check_keys}
    assert checks == {"budget_month_to_date", "budget_forecast"}


def test_no_budget_file_is_no_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.load().budgets is None
    resource = load_definitions(monkeypatch).resources["budget_file"]
    assert isinstance(resource, BudgetsResource) and resource.path() is None


# --------------------------------------------------------------------------- the view


def allocate(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Plant cost_allocation_daily rows (defaults: org-a, project p1, no key or user)."""
    defaults = {"organization": ORG, "project_id": "p1", "api_key_id": None, "user_id": None}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO openai_usage.cost_allocation_daily (organization, usage_date, "
                "project_id, line_item, api_key_id, user_id, usage_kind, allocated_usd) "
                "VALUES (:organization, :usage_date, :project_id, :line_item, :api_key_id, "
                ":user_id, 'completions', :allocated_usd)"
            ),
            [{**defaults, "line_item": f"line {i}", **row} for i, row in enumerate(rows)],
        )


def budget(engine: Engine, organization: str = ORG, thresholds: str = "{50,80,100}",
           monthly_usd: str = "500", **scope: str) -> None:  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO openai_usage.budgets (organization, project_id, api_key_id, user_id, "
                "monthly_usd, thresholds, source) VALUES (:organization, :project_id, "
                ":api_key_id, :user_id, CAST(:monthly_usd AS numeric), "
                "CAST(:thresholds AS numeric[]), 'test')"
            ),
            {
                "organization": organization,
                "project_id": scope.get("project_id"),
                "api_key_id": scope.get("api_key_id"),
                "user_id": scope.get("user_id"),
                "monthly_usd": monthly_usd,
                "thresholds": thresholds,
            },
        )


def status_rows(engine: Engine, month: dt.date = NOVEMBER) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(row)
            for row in conn.execute(
                text(
                    "SELECT * FROM openai_usage.v_budget_status WHERE month = :month "
                    "ORDER BY organization, project_id NULLS FIRST, api_key_id NULLS FIRST, "
                    "user_id NULLS FIRST"
                ),
                {"month": month},
            ).mappings()
        ]


def close(stored: Decimal, expected: Decimal) -> bool:
    """PostgreSQL divides numerics to 16+ decimal places, Python to 28 digits."""
    return abs(stored - expected) < Decimal("1e-12")


def day(n: int) -> dt.date:
    return NOVEMBER + dt.timedelta(days=n - 1)


def test_forecast_rule_with_exact_numbers(engine: Engine) -> None:
    """Ten days at $10 then seven at $30 in 30-day November: $310 spent, the trailing 7 days'
    mean is $30 (not diluted by day 10's $10), 13 days remain: forecast 310 + 13 x 30 = 700.
    Another organization's spend in the same project id, later in the month, counts for
    neither its spend nor its as_of."""
    allocate(engine, [{"usage_date": day(n), "allocated_usd": 10} for n in range(1, 11)])
    allocate(engine, [{"usage_date": day(n), "allocated_usd": 30} for n in range(11, 18)])
    allocate(engine, [{"organization": OTHER, "usage_date": day(25), "allocated_usd": 9999}])
    budget(engine, project_id="p1")
    budget(engine, OTHER, project_id="p1", monthly_usd="20000")

    mine, theirs = status_rows(engine)
    assert mine["organization"] == ORG
    assert mine["as_of"] == day(17)
    assert (mine["days_elapsed"], mine["days_in_month"]) == (17, 30)
    assert mine["spend_to_date_usd"] == Decimal("310.00")
    assert mine["spend_to_date_exact_usd"] == Decimal(310)
    assert mine["forecast_usd"] == Decimal("700.00")
    assert mine["forecast_exact_usd"] == Decimal(700)
    assert mine["remaining_usd"] == Decimal("190.00")
    assert (mine["percent_used"], mine["forecast_percent"]) == (Decimal(62), Decimal(140))
    assert (mine["threshold_reached"], mine["forecast_threshold_reached"]) == (50, 100)
    assert mine["last_threshold"] == 100
    assert mine["forecast_at_risk"] is True
    assert mine["status"] == "warn"

    assert theirs["organization"] == OTHER and theirs["as_of"] == day(25)
    assert theirs["spend_to_date_exact_usd"] == Decimal(9999)
    # 9999 over 7 days (19..25) of which 6 are zero, 5 days left.
    assert close(theirs["forecast_exact_usd"], Decimal(9999) + Decimal(9999) * 5 / 7)
    # Rounded to the micro-dollar, as every view's USD (the exact figure beside it).
    assert theirs["forecast_usd"] == (Decimal(9999) + Decimal(9999) * 5 / 7).quantize(
        Decimal("0.000001")
    )


def test_a_young_month_and_days_without_spend(engine: Engine) -> None:
    """On the 3rd, the trailing mean is over 3 days, day 2 (no spend) counting as zero; as_of is
    the organization's last allocated day even when this budget's project spent nothing."""
    allocate(engine, [{"usage_date": day(1), "allocated_usd": Decimal("7.5")}])
    allocate(engine, [{"usage_date": day(3), "project_id": "p2", "allocated_usd": 1}])
    budget(engine, project_id="p1", monthly_usd="100")
    [row] = [r for r in status_rows(engine) if r["project_id"] == "p1"]
    assert row["as_of"] == day(3) and row["days_elapsed"] == 3
    # 7.5 + 7.5 / 3 x 27 = 7.5 + 67.5
    assert row["forecast_exact_usd"] == Decimal(75)
    assert row["percent_used"] == Decimal("7.50") and row["forecast_percent"] == Decimal(75)
    assert row["threshold_reached"] is None and row["forecast_threshold_reached"] == 50
    assert row["status"] == "forecast_warn" and row["forecast_at_risk"] is True


def test_scopes_match_their_ids_and_names_come_from_the_organization(engine: Engine) -> None:
    rows = [
        {"project_id": "p1", "api_key_id": "k1", "user_id": "u1", "allocated_usd": 40},
        {"project_id": "p1", "api_key_id": "k2", "user_id": "u1", "allocated_usd": 2},
        {"project_id": "p2", "api_key_id": "k3", "user_id": "u1", "allocated_usd": 300},
        {"project_id": "p2", "api_key_id": None, "user_id": None, "allocated_usd": 5},
        {"project_id": None, "api_key_id": None, "user_id": None, "allocated_usd": 1000},
    ]
    allocate(engine, [{"usage_date": day(30), **row} for row in rows])
    budget(engine, project_id="p1", api_key_id="k1", monthly_usd="50")
    budget(engine, user_id="u1", monthly_usd="1000")
    budget(engine, project_id="p2", user_id="u1", monthly_usd="250", thresholds="{75,90,110}")
    budget(engine, api_key_id="k2", monthly_usd="4")
    with engine.begin() as conn:
        for org, suffix in ((ORG, ""), (OTHER, " (other org)")):
            conn.execute(
                text(
                    "INSERT INTO openai_usage.projects (organization, id, name) "
                    "VALUES (:o, 'p1', :p), (:o, 'p2', :q)"
                ),
                {"o": org, "p": f"Research{suffix}", "q": f"Chatbot{suffix}"},
            )
            conn.execute(
                text("INSERT INTO openai_usage.api_keys (organization, id, project_id, name) "
                     "VALUES (:o, 'k1', 'p1', :n)"),
                {"o": org, "n": f"batch key{suffix}"},
            )  # fmt: skip
            conn.execute(
                text("INSERT INTO openai_usage.users (organization, id, name, email) "
                     "VALUES (:o, 'u1', :n, 'ada@example.com')"),
                {"o": org, "n": f"Ada{suffix}"},
            )  # fmt: skip

    by_scope = {(r["project_id"], r["api_key_id"], r["user_id"]): r for r in status_rows(engine)}
    key = by_scope[("p1", "k1", None)]
    assert key["spend_to_date_exact_usd"] == 40 and key["percent_used"] == 80
    assert (key["project_name"], key["api_key_name"]) == ("Research", "batch key")
    assert key["threshold_reached"] == 80 and key["status"] == "warn"
    user = by_scope[(None, None, "u1")]
    assert user["spend_to_date_exact_usd"] == 342
    assert (user["user_name"], user["user_email"]) == ("Ada", "ada@example.com")
    assert user["project_name"] is None and user["status"] == "ok"
    # 300 of 250 is 120%: past the last threshold, 110.
    project_user = by_scope[("p2", None, "u1")]
    assert project_user["spend_to_date_exact_usd"] == 300 and project_user["percent_used"] == 120
    assert project_user["threshold_reached"] == 110 and project_user["status"] == "over"
    assert project_user["project_name"] == "Chatbot"
    # The last day of the month: nothing left to forecast.
    assert project_user["forecast_exact_usd"] == 300 and project_user["forecast_at_risk"] is False
    only_key = by_scope[(None, "k2", None)]
    assert only_key["spend_to_date_exact_usd"] == 2 and only_key["threshold_reached"] == 50


@pytest.mark.parametrize(
    ("thresholds", "spend", "threshold", "forecast_threshold", "status"),
    [
        ("{50,80,100}", 30, None, None, "ok"),
        ("{50,80,100}", 49, None, 50, "forecast_warn"),
        ("{50,80,100}", 50, 50, 50, "warn"),  # exactly at a threshold reaches it
        ("{50,80,100}", 99, 80, 100, "warn"),
        ("{50,80,100}", 100, 100, 100, "over"),
        ("{75,90,110}", 100, 90, 110, "warn"),  # a custom last threshold: 100% only warns
        ("{120}", 100, None, 120, "forecast_over"),
        ("{100}", 150, 100, 100, "over"),
    ],
)
def test_thresholds_and_status(
    engine: Engine,
    thresholds: str,
    spend: int,
    threshold: int | None,
    forecast_threshold: int | None,
    status: str,
) -> None:
    """Spend on day 28 of November only: the trailing mean is spend / 7 over 2 days left, so
    the forecast is spend x 9/7 (30 -> 38.6, 49 -> 63, 50 -> 64.3, 99 -> 127.3, 100 -> 128.6)."""
    allocate(engine, [{"usage_date": day(28), "allocated_usd": spend}])
    budget(engine, project_id="p1", monthly_usd="100", thresholds=thresholds)
    [row] = status_rows(engine)
    assert close(row["forecast_exact_usd"], spend + Decimal(spend) * 2 / 7)
    assert row["threshold_reached"] == threshold
    assert row["forecast_threshold_reached"] == forecast_threshold
    assert row["status"] == status
    at_risk = forecast_threshold is not None and forecast_threshold > (threshold or 0)
    assert row["forecast_at_risk"] is at_risk


def test_the_current_month_shows_before_any_allocation(engine: Engine) -> None:
    budget(engine, project_id="p1")
    current = dt.datetime.now(dt.UTC).date().replace(day=1)
    [row] = status_rows(engine, current)
    assert row["as_of"] is None and row["days_elapsed"] == 0
    assert row["spend_to_date_exact_usd"] == 0 and row["forecast_exact_usd"] == 0
    assert row["status"] == "ok"
    [latest] = latest_budget_status(engine, ORG)
    assert latest.month == current and latest.status == "ok"
    assert latest_budget_status(engine, OTHER) == []  # no budgets, no rows


def test_the_checks_look_at_the_month_of_the_last_allocated_day(engine: Engine) -> None:
    """October's allocation is complete, November's has started: the checks read November,
    not October's final numbers, and not the (later) current month."""
    allocate(engine, [{"usage_date": dt.date(2025, 10, 31), "allocated_usd": 900}])
    allocate(engine, [{"usage_date": day(2), "allocated_usd": 1}])
    budget(engine, project_id="p1")
    [row] = latest_budget_status(engine, ORG)
    assert row.month == NOVEMBER and row.spend_to_date_usd == 1 and row.as_of == day(2)


# --------------------------------------------------------------------------- in Dagster


def run_budgets(database_url: str, budgets_file: Path | None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [budgets, budget_month_to_date, budget_forecast],
        resources={
            "usage_db": UsageDatabase(url=database_url, organization=ORG),
            "budget_file": BudgetsResource(
                budgets_file=str(budgets_file) if budgets_file else None
            ),
        },
        raise_on_error=False,
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def md(evaluation: dg.AssetCheckEvaluation, key: str) -> str:
    value = evaluation.metadata[key]
    assert isinstance(value, dg.MarkdownMetadataValue)
    return value.md_str


def meta(evaluation: dg.AssetCheckEvaluation, key: str) -> Any:
    return evaluation.metadata[key].value


BUDGET_FILE = """
budgets:
  - project: p1        # 600 of 500: over
    monthly_usd: 500
  - project: p2        # 60 of 100: warns at 50%
    monthly_usd: 100
  - project: p3        # 5 of 100, on the last allocated day: fine
    monthly_usd: 100
  - project: p4        # 1 of 1000: fine
    monthly_usd: 1000
"""


def plant_month(engine: Engine) -> None:
    """November up to the 20th: p1 600, p2 60, p3 5 (all on the 20th), p4 1; org-b far over."""
    allocate(
        engine,
        [
            {"usage_date": day(1), "project_id": "p1", "allocated_usd": 600},
            {"usage_date": day(2), "project_id": "p2", "allocated_usd": 60},
            {"usage_date": day(20), "project_id": "p3", "allocated_usd": 5},
            {"usage_date": day(3), "project_id": "p4", "allocated_usd": 1},
            {"organization": OTHER, "usage_date": day(20), "project_id": "p4",
             "allocated_usd": 100000},
        ],
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO openai_usage.projects (organization, id, name) VALUES "
                "(:o, 'p1', 'Research'), (:o, 'p2', 'Chat|bot'), (:o, 'p3', 'Search')"
            ),
            {"o": ORG},
        )


def test_over_budget_fails_with_error_and_names_the_projects(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    plant_month(engine)
    budget(engine, OTHER, project_id="p4", monthly_usd="10")  # org-b's own budget stays
    result = run_budgets(database_url, write(tmp_path, "budgets.yaml", BUDGET_FILE))
    assert result.success  # failing checks fail no step

    [materialization] = result.asset_materializations_for_node("budgets")
    assert materialization.metadata["budgets"].value == 4
    assert materialization.metadata["budget_file"].value == str(tmp_path / "budgets.yaml")
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT organization, project_id, monthly_usd, thresholds, source "
                 "FROM openai_usage.budgets ORDER BY organization, project_id")
        ).all()  # fmt: skip
    assert [(r[0], r[1], r[2]) for r in stored] == [
        (ORG, "p1", 500), (ORG, "p2", 100), (ORG, "p3", 100), (ORG, "p4", 1000), (OTHER, "p4", 10),
    ]  # fmt: skip
    assert stored[0][3] == [50, 80, 100]
    assert stored[0][4] == f"{tmp_path / 'budgets.yaml'} budget #1"

    checks = evaluations(result)
    mtd = checks["budget_month_to_date"]
    assert not mtd.passed and mtd.severity == dg.AssetCheckSeverity.ERROR
    assert meta(mtd, "month") == "2025-11" and meta(mtd, "as_of") == "2025-11-20"
    assert meta(mtd, "budgets") == 4 and meta(mtd, "budgets_at_risk") == 2
    assert (meta(mtd, "budgets_over"), meta(mtd, "budgets_warned")) == (1, 1)
    assert meta(mtd, "projects_at_risk") == "Research, Chat|bot"
    table = md(mtd, "at_risk")
    assert "| Research (p1) | (any) | (any) | 500.00 | 600.00 | 120% |" in table
    assert "Chat\\|bot (p2)" in table and "| 60% |" in table and "Search" not in table

    # The forecast check adds nothing here: p1 and p2 spent outside the trailing week (their
    # forecasts are their spend: no threshold beyond the one reached), p3's 5 on the 20th
    # forecasts 5 + 5/7 x 10 = 12.14 (12%).
    forecast = checks["budget_forecast"]
    assert forecast.passed and meta(forecast, "budgets_at_risk") == 0


def test_warn_only_below_the_last_threshold_and_the_forecast_warns(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    allocate(
        engine,
        [
            *({"usage_date": day(n), "project_id": "p2", "allocated_usd": 3} for n in (1, 2)),
            *({"usage_date": day(n), "project_id": "p3", "allocated_usd": 4} for n in range(8, 15)),
        ],
    )
    path = write(
        tmp_path,
        "budgets.csv",
        HEADER + "p2,,,10,\np3,,,100,\n",
    )
    checks = evaluations(run_budgets(database_url, path))
    mtd = checks["budget_month_to_date"]
    # p2: 6 of 10 = 60%, past 50 only: WARN. p3: 28 of 100, below 50.
    assert not mtd.passed and mtd.severity == dg.AssetCheckSeverity.WARN
    assert meta(mtd, "budgets_at_risk") == 1 and meta(mtd, "projects_at_risk") == "p2"
    forecast = checks["budget_forecast"]
    # p3: 28 + 4 x 16 days left = 92 (92%): crosses 50 and 80 before month end.
    assert not forecast.passed and forecast.severity == dg.AssetCheckSeverity.WARN
    assert meta(forecast, "projects_at_risk") == "p3"
    assert "| 28.00 | 28% | 92.00 | 92% | — | 80% | forecast_warn |" in md(forecast, "at_risk")
    assert meta(forecast, "budgets_forecast_over") == 0


def test_under_budget_passes(engine: Engine, database_url: str, tmp_path: Path) -> None:
    plant_month(engine)
    path = write(tmp_path, "budgets.yaml", "budgets:\n  - project: p4\n    monthly_usd: 1000\n")
    checks = evaluations(run_budgets(database_url, path))
    assert checks["budget_month_to_date"].passed and checks["budget_forecast"].passed
    assert meta(checks["budget_month_to_date"], "budgets") == 1
    assert meta(checks["budget_month_to_date"], "projects_at_risk") == "none"


def test_without_a_file_the_asset_writes_zero_budgets(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    plant_month(engine)
    assert run_budgets(database_url, write(tmp_path, "b.yaml", BUDGET_FILE)).success
    budget(engine, OTHER, project_id="p4", monthly_usd="10")
    result = run_budgets(database_url, None)
    assert result.success
    [materialization] = result.asset_materializations_for_node("budgets")
    assert materialization.metadata["budgets"].value == 0
    assert "USAGE_BUDGETS is unset" in str(materialization.metadata["budget_file"].value)
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT organization, count(*) FROM openai_usage.budgets GROUP BY 1")
        ).all()
    assert left == [(OTHER, 1)]  # this organization's rows gone, the other's kept
    checks = evaluations(result)
    assert checks["budget_month_to_date"].passed and checks["budget_forecast"].passed
    assert meta(checks["budget_month_to_date"], "budgets") == 0


def test_a_bad_file_fails_the_asset_and_keeps_the_previous_budgets(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "budgets.yaml", BUDGET_FILE)
    assert run_budgets(database_url, path).success
    path.write_text("- project: p1\n  monthly_usd: nope\n")
    result = run_budgets(database_url, path)
    assert not result.success
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM openai_usage.budgets")).scalar() == 4


def test_budgets_follow_any_day_of_the_allocation() -> None:
    """An unpartitioned asset downstream of a daily one: one allocated day re-runs it, even
    though most days were never allocated (which would hold `eager()` back for good)."""
    partitions = dg.DailyPartitionsDefinition("2025-11-01", end_date="2025-11-30")

    @dg.asset(name="cost_allocation_daily", partitions_def=partitions)
    def allocation() -> None: ...

    @dg.asset(name="budgets", deps=[allocation], automation_condition=AFTER_ALLOCATION)
    def stand_in() -> None: ...

    @dg.asset(name="eager_budgets", deps=[allocation],
              automation_condition=dg.AutomationCondition.eager())  # fmt: skip
    def eager_stand_in() -> None: ...

    defs = dg.Definitions(assets=[allocation, stand_in, eager_stand_in])
    instance = dg.DagsterInstance.ephemeral()
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.get_num_requested(dg.AssetKey("budgets")) == 0  # nothing has happened yet
    dg.materialize([allocation], instance=instance, partition_key="2025-11-20")
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(dg.AssetKey("budgets")) == 1
    assert second.get_num_requested(dg.AssetKey("eager_budgets")) == 0  # 28 days missing
    dg.materialize([stand_in, eager_stand_in], instance=instance, selection=["budgets"])
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.get_num_requested(dg.AssetKey("budgets")) == 0  # handled: until the next day
    dg.materialize([allocation], instance=instance, partition_key="2025-11-21")
    fourth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=third.cursor)
    assert fourth.get_num_requested(dg.AssetKey("budgets")) == 1
