"""Spend anomalies: the median/MAD rule on rows of cost_allocation_daily, and the check.

Histories are inserted into the real table; expected scores are computed here from the
inserted amounts with `statistics.median`, independently of the SQL.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import statistics
from collections.abc import Iterable
from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from usage_assets import settings
from usage_assets.chargeback.anomalies import AnomalyRule, AnomalyScan, find_anomalies
from usage_assets.defs.chargeback.anomalies import anomalies_result, spend_anomalies
from usage_assets.defs.partitions import daily_utc_partitions_from
from usage_assets.defs.resources import AnomalyResource, UsageDatabase, anomalies_from_env
from usage_assets.errors import ConfigurationError

ORG = "acme"
OTHER = "globex"
START = dt.date(2026, 3, 1)
DAY = START + dt.timedelta(days=28)  # the day under test: 28 days of history before it
SUPPORT, SEARCH, QUIET = "proj_support", "proj_search", "proj_quiet"
DEV_KEY, SERVICE_KEY, SEARCH_KEY = "key_dev", "key_service", "key_search"

#: (project, api key, model) -> a day's typical spend in USD.
STEADY = {
    (SUPPORT, DEV_KEY, "gpt-4o-2024-08-06"): 20.0,
    (SUPPORT, SERVICE_KEY, "gpt-4o-mini-2024-07-18"): 10.0,
    (SEARCH, SEARCH_KEY, "text-embedding-3-small"): 30.0,
}

Amounts = dict[tuple[dt.date, str | None, str | None, str | None], Decimal]


def days(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(count)]


def steady_history(
    first: dt.date = START, count: int = 28, noise: float = 0.10, seed: int = 7
) -> Amounts:
    """Every STEADY stream on each of `count` days from `first`, +-`noise` at random."""
    rng = random.Random(seed)
    return {
        (day, project, key, model): Decimal(f"{usd * rng.uniform(1 - noise, 1 + noise):.6f}")
        for day in days(first, count)
        for (project, key, model), usd in STEADY.items()
    }


def insert(engine: Engine, amounts: Amounts, organization: str = ORG) -> None:
    """One allocation row per (day, project, key, model), a line item per model."""
    rows = [
        {
            "organization": organization,
            "usage_date": day,
            "project_id": project,
            "line_item": f"{model}, input",
            "api_key_id": key,
            "model": model,
            "usd": usd,
        }
        for (day, project, key, model), usd in amounts.items()
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO openai_usage.cost_allocation_daily (organization, usage_date, "
                "project_id, line_item, api_key_id, user_id, model, usage_kind, allocated_usd) "
                "VALUES (:organization, :usage_date, :project_id, :line_item, :api_key_id, "
                "NULL, :model, 'completions', :usd)"
            ),
            rows,
        )


def insert_names(engine: Engine, organization: str = ORG) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO openai_usage.projects (organization, id, name) VALUES (:o, :id, :n)"),
            [
                {"o": organization, "id": SUPPORT, "n": "Support Copilot"},
                {"o": organization, "id": SEARCH, "n": "Search Ranking"},
            ],
        )
        conn.execute(
            text(
                "INSERT INTO openai_usage.api_keys (organization, id, project_id, name) "
                "VALUES (:o, :id, :p, :n)"
            ),
            [
                {"o": organization, "id": DEV_KEY, "p": SUPPORT, "n": "Support dev key"},
                {"o": organization, "id": SERVICE_KEY, "p": SUPPORT, "n": "Support batch key"},
                {"o": organization, "id": SEARCH_KEY, "p": SEARCH, "n": "Search key"},
            ],
        )


def project_spend(amounts: Amounts, project: str) -> dict[dt.date, Decimal]:
    """A project's spend per loaded day (0 on a day the organization has rows and it none)."""
    loaded = {day for day, *_ in amounts}
    spend: dict[dt.date, Decimal] = dict.fromkeys(loaded, Decimal(0))
    for (day, p, _key, _model), usd in amounts.items():
        if p == project:
            spend[day] += usd
    return spend


def expected_score(amounts: Amounts, project: str, day: dt.date, window: int = 28) -> float:
    """The rule's score, from the amounts: median and MAD of the loaded days before `day`."""
    spend = project_spend(amounts, project)
    past = [float(v) for d, v in spend.items() if day - dt.timedelta(days=window) <= d < day]
    median = statistics.median(past)
    mad = statistics.median(abs(v - median) for v in past)
    scale = max(1.4826 * mad, 0.10 * abs(median), 1.0)
    return (float(spend[day]) - median) / scale


def scan(engine: Engine, rule: AnomalyRule | None = None, organization: str = ORG) -> AnomalyScan:
    return find_anomalies(engine, DAY, DAY + dt.timedelta(days=1), rule, organization=organization)


def flagged(result: AnomalyScan) -> set[tuple[dt.date, str | None, str]]:
    return {(a.usage_date, a.project_id, a.direction) for a in result.anomalies}


def with_day(amounts: Amounts, extra: Iterable[tuple[str, str | None, str, float]]) -> Amounts:
    """`amounts` plus the steady streams on DAY (without noise), plus `extra` on DAY."""
    out = dict(amounts)
    for (project, key, model), usd in STEADY.items():
        out[(DAY, project, key, model)] = Decimal(str(usd))
    for project, key, model, usd in extra:
        out[(DAY, project, key, model)] = out.get((DAY, project, key, model), 0) + Decimal(str(usd))
    return out


# ---------------------------------------------------------------------------- the rule


def test_a_spike_is_flagged_with_the_key_and_model_that_drove_it(engine: Engine) -> None:
    amounts = with_day(steady_history(), [(SUPPORT, SERVICE_KEY, "gpt-5-2025-08-07", 60.0)])
    insert(engine, amounts)
    insert_names(engine)
    result = scan(engine)
    assert flagged(result) == {(DAY, SUPPORT, "spike")}
    (spike,) = result.anomalies
    assert spike.project_name == "Support Copilot"
    assert spike.spend_usd == sum(
        v for (d, p, *_), v in amounts.items() if d == DAY and p == SUPPORT
    )
    assert spike.baseline_days == 28
    assert spike.score == pytest.approx(expected_score(amounts, SUPPORT, DAY), rel=1e-9)
    assert spike.score > 3.5
    top_key, top_model = spike.api_keys[0], spike.models[0]
    assert (top_key.id, top_key.name) == (SERVICE_KEY, "Support batch key")
    assert top_key.change_usd > Decimal(50)  # +60 on the new model, about 0 on its usual one
    assert top_model.id == "gpt-5-2025-08-07" and top_model.baseline_usd == 0
    assert top_model.change_usd == Decimal(60)
    # Only members that moved up are drivers of a spike, the largest first.
    assert all(d.change_usd > 0 for d in (*spike.api_keys, *spike.models))
    assert [d.change_usd for d in spike.models] == sorted(
        (d.change_usd for d in spike.models), reverse=True
    )
    assert len(spike.api_keys) <= 3 and len(spike.models) <= 3


def test_a_project_that_stops_is_a_drop(engine: Engine) -> None:
    amounts = {k: v for k, v in with_day(steady_history(), []).items() if k[:2] != (DAY, SEARCH)}
    insert(engine, amounts)
    result = scan(engine)
    assert flagged(result) == {(DAY, SEARCH, "drop")}
    (drop,) = result.anomalies
    assert drop.spend_usd == 0 and drop.median_usd > 25
    assert drop.score == pytest.approx(expected_score(amounts, SEARCH, DAY), rel=1e-9)
    assert [(d.id, d.spend_usd) for d in drop.api_keys] == [(SEARCH_KEY, 0)]
    assert drop.api_keys[0].change_usd == -drop.api_keys[0].baseline_usd
    assert [d.id for d in drop.models] == ["text-embedding-3-small"]


def test_normal_noise_is_never_flagged(engine: Engine) -> None:
    amounts = steady_history(count=60, noise=0.15)
    insert(engine, amounts)
    result = find_anomalies(engine, START + dt.timedelta(days=7), START + dt.timedelta(days=60),
                            organization=ORG)  # fmt: skip
    assert result.anomalies == ()
    assert result.scored == 53 * 2  # every day of both projects had a baseline of 7 days or more


def test_sensitivity_changes_the_outcome(engine: Engine) -> None:
    # A moderate rise of Search Ranking (30 -> 42 a day), against +-10% noise.
    amounts = with_day(steady_history(), [(SEARCH, SEARCH_KEY, "text-embedding-3-small", 12.0)])
    insert(engine, amounts)
    score = expected_score(amounts, SEARCH, DAY)
    assert 3.5 < score < 20
    assert flagged(scan(engine)) == {(DAY, SEARCH, "spike")}
    assert flagged(scan(engine, AnomalyRule(sensitivity=score - 0.01))) == {(DAY, SEARCH, "spike")}
    assert flagged(scan(engine, AnomalyRule(sensitivity=score + 0.01))) == set()
    # The minimum change in USD is a separate gate: $12 is below a $15 minimum.
    assert flagged(scan(engine, AnomalyRule(min_usd=Decimal(15)))) == set()


def test_a_flat_history_has_a_floor_not_a_zero_division(engine: Engine) -> None:
    def flat(project: str, usd: str, today: str) -> Amounts:
        history: Amounts = {(d, project, None, "m"): Decimal(usd) for d in days(START, 28)}
        return {**history, (DAY, project, None, "m"): Decimal(today)}

    # MAD 0 everywhere: a cent off $5 (below min_usd), $4 above $100 (within 10% of the
    # median), $5 above $5 (5 x the $1 floor: flagged), from $0 spend to $10 (flagged).
    insert(engine, {**flat("p_cent", "5", "5.01"), **flat("p_pct", "100", "104"),
                    **flat("p_five", "5", "10"), **flat("p_new", "0", "10")})  # fmt: skip
    result = scan(engine)
    by_project = {a.project_id: a for a in result.anomalies}
    assert set(by_project) == {"p_five", "p_new"}
    assert by_project["p_five"].mad_usd == 0 and by_project["p_five"].score == pytest.approx(5.0)
    assert by_project["p_new"].score == pytest.approx(10.0)
    assert result.scored == 4


def test_too_short_a_history_is_not_scored(engine: Engine) -> None:
    amounts = with_day(steady_history(first=DAY - dt.timedelta(days=5), count=5),
                       [(SUPPORT, SERVICE_KEY, "gpt-5-2025-08-07", 500.0)])  # fmt: skip
    insert(engine, amounts)
    result = scan(engine)
    assert result.anomalies == ()
    assert (result.loaded_days, result.short_baseline_days, result.scored) == (1, 1, 0)
    # The minimum (7 days) is a parameter of the rule.
    assert flagged(scan(engine, AnomalyRule(min_baseline_days=5))) == {(DAY, SUPPORT, "spike")}


def test_days_not_loaded_are_not_zeros(engine: Engine) -> None:
    """Ten days of the window were never loaded (the organization has no rows): the baseline
    is the 18 others, not 28 days with ten zeros; a day not loaded is not scored at all."""
    history = {k: v for k, v in steady_history().items() if not 5 <= (k[0] - START).days < 15}
    amounts = with_day(history, [(SUPPORT, SERVICE_KEY, "gpt-5-2025-08-07", 60.0)])
    insert(engine, amounts)
    result = scan(engine)
    assert flagged(result) == {(DAY, SUPPORT, "spike")}
    assert result.anomalies[0].baseline_days == 18
    expected_median = statistics.median(
        float(v) for d, v in project_spend(history, SUPPORT).items()
    )
    assert float(result.anomalies[0].median_usd) == pytest.approx(expected_median)
    empty = find_anomalies(engine, START + dt.timedelta(days=5), START + dt.timedelta(days=15),
                           organization=ORG)  # fmt: skip
    assert (empty.loaded_days, empty.scored, empty.anomalies) == (0, 0, ())


def test_another_organizations_rows_never_count(engine: Engine) -> None:
    insert(engine, with_day(steady_history(), []))
    insert_names(engine)
    # The other organization: the same project ids, a huge day, and rows on a day acme has
    # not loaded (which must not make acme's projects drop to 0 on it).
    other = with_day(steady_history(seed=99), [(SUPPORT, DEV_KEY, "gpt-5-2025-08-07", 9000.0)])
    later = DAY + dt.timedelta(days=1)
    other[(later, "proj_globex", None, "gpt-5-2025-08-07")] = Decimal(5)
    insert(engine, other, organization=OTHER)
    assert scan(engine).anomalies == () and scan(engine).scored == 2
    acme_later = find_anomalies(engine, later, later + dt.timedelta(days=1), organization=ORG)
    assert (acme_later.loaded_days, acme_later.anomalies) == (0, ())
    globex = scan(engine, organization=OTHER)
    assert flagged(globex) == {(DAY, SUPPORT, "spike")}
    (spike,) = globex.anomalies
    # acme's names are not globex's: globex has no names loaded.
    assert spike.project_name is None and spike.api_keys[0].id == DEV_KEY
    assert spike.api_keys[0].name is None
    assert spike.organization == OTHER


def test_the_default_project_is_a_project(engine: Engine) -> None:
    """The default project (NULL project_id) has a baseline like any other."""
    history: Amounts = {(d, None, None, "gpt-4o"): Decimal("8.00") for d in days(START, 28)}
    insert(engine, {**history, (DAY, None, None, "gpt-4o"): Decimal("80.00")})
    insert(engine, {(d, SUPPORT, DEV_KEY, "gpt-4o"): Decimal(3) for d in days(START, 29)})
    (spike,) = scan(engine).anomalies
    assert (spike.project_id, spike.project_label, spike.direction) == (
        None,
        "(default project)",
        "spike",
    )
    assert [(d.label, d.change_usd) for d in spike.api_keys] == [("(no key)", Decimal(72))]


# ---------------------------------------------------------------------------- the check


def test_the_check_result_lists_the_flagged_days_with_their_drivers(engine: Engine) -> None:
    amounts = with_day(steady_history(), [(SUPPORT, SERVICE_KEY, "gpt-5-2025-08-07", 60.0)])
    amounts = {k: v for k, v in amounts.items() if k[:2] != (DAY, SEARCH)}
    insert(engine, amounts)
    insert_names(engine)
    result = anomalies_result(engine, DAY, DAY + dt.timedelta(days=1), AnomalyRule(),
                              organization=ORG)  # fmt: skip
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    meta = {name: value.value for name, value in result.metadata.items()}
    assert (meta["anomalies"], meta["spikes"], meta["drops"]) == (2, 1, 1)
    assert meta["sensitivity"] == 3.5 and meta["baseline_days"] == 28 and meta["min_usd"] == 1.0
    table = str(meta["flagged"])
    rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
    assert set(rows) == {"Support Copilot", "Search Ranking"}
    assert SUPPORT in rows["Support Copilot"] and "spike" in rows["Support Copilot"]
    assert "Support batch key (key_service) +$" in rows["Support Copilot"]
    assert "gpt-5-2025-08-07 +$60.0000" in rows["Support Copilot"]
    assert (
        "drop" in rows["Search Ranking"] and "Search key (key_search) -$" in rows["Search Ranking"]
    )
    assert "1.4826 x MAD" in str(meta["rule"])


def test_the_check_passes_without_anomalies(engine: Engine) -> None:
    insert(engine, with_day(steady_history(), []))
    result = anomalies_result(engine, DAY, DAY + dt.timedelta(days=1), AnomalyRule(),
                              organization=ORG)  # fmt: skip
    assert result.passed
    assert result.metadata["project_days_scored"].value == 2
    assert result.metadata["flagged"].value == "_no anomalies_"


def test_the_check_runs_on_its_partition_in_dagster(engine: Engine, database_url: str) -> None:
    """The check beside a stand-in for the allocation asset, in a run of one partition: the
    partition's day is scored (the spike), not the latest days."""
    amounts = with_day(steady_history(), [(SUPPORT, SERVICE_KEY, "gpt-5-2025-08-07", 60.0)])
    later = steady_history(first=DAY + dt.timedelta(days=1), count=3)
    insert(engine, {**amounts, **later})

    @dg.asset(key="cost_allocation_daily", partitions_def=daily_utc_partitions_from(START))
    def allocation_stand_in() -> None:
        """The rows are already there."""

    resources = {
        "usage_db": UsageDatabase(url=database_url, organization=ORG),
        "anomalies": AnomalyResource(),
    }
    run = dg.materialize(
        [allocation_stand_in, spend_anomalies], partition_key=DAY.isoformat(), resources=resources
    )
    (evaluation,) = run.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["days"].value == f"{DAY} .. {DAY}"
    assert evaluation.metadata["spikes"].value == 1
    # Another partition's day has nothing to report.
    run = dg.materialize(
        [allocation_stand_in, spend_anomalies],
        partition_key=(DAY + dt.timedelta(days=2)).isoformat(),
        resources={**resources, "anomalies": AnomalyResource(sensitivity=3.5)},
    )
    (evaluation,) = run.get_asset_check_evaluations()
    assert evaluation.passed


# ---------------------------------------------------------------------------- settings


def test_the_rule_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert anomalies_from_env().rule() == AnomalyRule()
    monkeypatch.setenv("USAGE_ANOMALY_SENSITIVITY", "5")
    monkeypatch.setenv("USAGE_ANOMALY_BASELINE_DAYS", "14")
    monkeypatch.setenv("USAGE_ANOMALY_MIN_USD", "0.25")
    assert anomalies_from_env().rule() == AnomalyRule(
        sensitivity=5.0, baseline_days=14, min_usd=Decimal("0.25")
    )
    loaded = settings.load()
    assert (loaded.anomaly_sensitivity, loaded.anomaly_baseline_days) == (5.0, 14)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USAGE_ANOMALY_SENSITIVITY", "-1"),
        ("USAGE_ANOMALY_SENSITIVITY", "high"),
        ("USAGE_ANOMALY_SENSITIVITY", "inf"),
        ("USAGE_ANOMALY_BASELINE_DAYS", "91"),
        ("USAGE_ANOMALY_BASELINE_DAYS", "28.5"),
        ("USAGE_ANOMALY_MIN_USD", "one"),
        ("USAGE_ANOMALY_MIN_USD", "NaN"),
    ],
)
def test_a_bad_anomaly_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        settings.load()


def test_the_readme_baseline_query_has_the_checks_median(engine: Engine) -> None:
    """The README's BI query (run as the read-only role) gives the rule's median and baseline
    days, gaps in the loads included."""
    readme = (settings.PROJECT_ROOT / "README.md").read_text()
    section = readme.split("\n### Anomalies\n", 1)[1].split("\n### ", 1)[0]
    (query,) = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    history = {k: v for k, v in steady_history().items() if not 5 <= (k[0] - START).days < 15}
    insert(engine, with_day(history, [(SUPPORT, SERVICE_KEY, "gpt-5-2025-08-07", 60.0)]))
    insert_names(engine)
    insert(engine, with_day(steady_history(seed=5), []), organization=OTHER)
    (spike,) = scan(engine).anomalies
    as_of = query.replace("current_date", f"DATE '{DAY + dt.timedelta(days=1)}'")
    with engine.connect() as conn:
        conn.execute(text("SET ROLE usage_readonly"))
        rows = conn.execute(text(as_of)).mappings().all()
    mine = [r for r in rows if r["organization"] == ORG and r["usage_date"] == DAY]
    assert rows[0]["organization"] == ORG and rows[0]["project_id"] == SUPPORT  # largest first
    support = next(r for r in mine if r["project_id"] == SUPPORT)
    assert support["project_name"] == "Support Copilot"
    assert support["median_usd"] == spike.median_usd
    assert support["baseline_days"] == spike.baseline_days == 18
    assert support["change_usd"] == spike.change_usd
