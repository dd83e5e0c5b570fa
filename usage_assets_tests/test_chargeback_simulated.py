"""Chargeback end to end on the simulated organization, over real loopback HTTP: twenty days
backfilled in one run, two anomalies planted in the simulator (a spike and a stop), the bill
allocated exactly, the FOCUS export summing to the bill, the anomaly check naming what moved,
and budgets set from the month's real spend firing by threshold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.chargeback.allocation import cost_allocation_daily
from usage_assets.defs.chargeback.anomalies import ANOMALY_CHECKS
from usage_assets.defs.chargeback.budgets import BUDGET_ASSETS, BUDGET_CHECKS
from usage_assets.defs.names.assets import NAMES_ASSETS
from usage_assets.defs.resources import AnomalyResource, BudgetsResource
from usage_assets.defs.usage.assets import USAGE_ASSETS
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI

from .test_cost_assets import check_results, resources

FIRST, LAST = dt.date(2025, 11, 1), dt.date(2025, 11, 20)
SPIKE, SPIKE_FACTOR = "Support Copilot", 6.0
STOP = "Search Ranking"
PARTITIONED = [
    *USAGE_ASSETS,
    project_daily_costs,
    usage_daily_costs,
    project_daily_cost_summary,
    costs_daily,
    cost_allocation_daily,
]
S = "openai_usage"


@pytest.fixture
def planted() -> Iterator[SimulatedAdminAPI]:
    org = SyntheticOrganization(
        anomalies={(LAST.isoformat(), SPIKE): SPIKE_FACTOR, (LAST.isoformat(), STOP): 0.0}
    )
    with SimulatedAdminAPI(org=org) as sim:
        yield sim


def project_ids(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT name, id FROM {S}.projects")).all()
    return {name: id_ for name, id_ in rows}


def test_twenty_simulated_days_add_up_and_the_planted_cases_fire(
    engine: Engine, database_url: str, planted: SimulatedAdminAPI, tmp_path: Path
) -> None:
    base = resources(planted, database_url)
    assert dg.materialize(NAMES_ASSETS, resources=base).success
    ids = project_ids(engine)

    defs = dg.Definitions(
        assets=PARTITIONED,
        asset_checks=ANOMALY_CHECKS,
        jobs=[dg.define_asset_job("chargeback_backfill", selection=PARTITIONED)],
        resources={**base, "anomalies": AnomalyResource()},
    )
    run = defs.resolve_job_def("chargeback_backfill").execute_in_process(
        tags={
            "dagster/asset_partition_range_start": FIRST.isoformat(),
            "dagster/asset_partition_range_end": LAST.isoformat(),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert run.success
    checks = check_results(run)

    # 1. Allocation: the bill, every day, project and line item, exactly.
    allocation = checks["allocation_matches_bill"]
    assert allocation.passed, allocation.metadata
    with engine.connect() as conn:
        days = conn.execute(
            text(f"SELECT count(DISTINCT usage_date) FROM {S}.cost_allocation_daily")
        ).scalar_one()
        # Bill minus allocation per day, project and line item (GROUP BY: NULLs are equal).
        mismatched = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT usage_date, project_id, line_item FROM ("
                f"  SELECT usage_date, project_id, line_item, amount_usd AS usd "
                f"  FROM {S}.costs_daily UNION ALL "
                f"  SELECT usage_date, project_id, line_item, -allocated_usd "
                f"  FROM {S}.cost_allocation_daily) d "
                "GROUP BY 1, 2, 3 HAVING sum(usd) <> 0) g"
            )
        ).scalar_one()
        billed, allocated, focus, keyed = conn.execute(
            text(
                f"SELECT (SELECT sum(amount_usd) FROM {S}.costs_daily), "
                f"(SELECT sum(allocated_usd) FROM {S}.cost_allocation_daily), "
                f'(SELECT sum("BilledCost") FROM {S}.v_focus_1_2), '
                f"(SELECT count(DISTINCT api_key_id) FROM {S}.cost_allocation_daily)"
            )
        ).one()
    assert days == (LAST - FIRST).days + 1
    assert mismatched == 0
    assert billed > 0 and allocated == billed
    # 4. The FOCUS export is the same bill, row for row in sum.
    assert focus == billed
    assert keyed > 1  # shared out to API keys, not left at project level

    # 3. Anomalies: the spike and the stop on the last day, and nothing else in twenty days.
    anomalies = checks["spend_anomalies"]
    assert not anomalies.passed
    assert anomalies.severity == dg.AssetCheckSeverity.WARN
    assert anomalies.metadata["spikes"].value == 1, anomalies.metadata["flagged"].value
    assert anomalies.metadata["drops"].value == 1
    flagged = anomalies.metadata["flagged"].value
    assert isinstance(flagged, str)
    spike_row = next(line for line in flagged.splitlines() if SPIKE in line)
    stop_row = next(line for line in flagged.splitlines() if STOP in line)
    assert LAST.isoformat() in spike_row and "spike" in spike_row
    assert LAST.isoformat() in stop_row and "drop" in stop_row
    # The spike names the keys that drove it: the spiked project's keys, by name or id.
    with engine.connect() as conn:
        spike_keys = conn.execute(
            text(
                f"SELECT coalesce(k.name, a.api_key_id) FROM {S}.cost_allocation_daily a "
                f"LEFT JOIN {S}.api_keys k ON k.organization = a.organization "
                "AND k.id = a.api_key_id "
                "WHERE a.project_id = :p AND a.usage_date = :d AND a.api_key_id IS NOT NULL "
                "GROUP BY 1 ORDER BY sum(a.allocated_usd) DESC LIMIT 1"
            ),
            {"p": ids[SPIKE], "d": LAST},
        ).scalar_one()
    assert spike_keys in spike_row

    # 2. Budgets set from the month's real spend: one over, one warned, one at risk by forecast
    # (three of the biggest spenders, the planted ones left out).
    with engine.connect() as conn:
        spenders = conn.execute(
            text(
                f"SELECT p.name, sum(a.allocated_usd) FROM {S}.cost_allocation_daily a "
                f"JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id "
                "WHERE p.name NOT IN (:spike, :stop) GROUP BY 1 ORDER BY 2 DESC LIMIT 3"
            ),
            {"spike": SPIKE, "stop": STOP},
        ).all()
    (over, over_usd), (warned, warned_usd), (forecast, forecast_usd) = spenders
    assert forecast_usd > 0
    budget_file = tmp_path / "budgets.yaml"
    budget_file.write_text(
        "budgets:\n"
        + "".join(
            f"  - project: {ids[name]}\n    monthly_usd: {(spend / ratio):.2f}\n"
            for name, spend, ratio in (
                (over, over_usd, 2),
                (warned, warned_usd, Decimal("0.6")),
                (forecast, forecast_usd, Decimal("0.45")),
            )
        )
    )
    budget_run = dg.materialize(
        [*BUDGET_ASSETS, *BUDGET_CHECKS],
        resources={**base, "budget_file": BudgetsResource(budgets_file=str(budget_file))},
    )
    assert budget_run.success
    budget_checks = check_results(budget_run)
    month_to_date = budget_checks["budget_month_to_date"]
    assert not month_to_date.passed
    assert month_to_date.severity == dg.AssetCheckSeverity.ERROR
    assert month_to_date.metadata["projects_at_risk"].value == f"{over}, {warned}"
    forecast_check = budget_checks["budget_forecast"]
    assert not forecast_check.passed
    assert forecast in str(forecast_check.metadata["projects_at_risk"].value)
    with engine.connect() as conn:
        status = dict(
            conn.execute(
                text(f"SELECT project_name, status FROM {S}.v_budget_status WHERE month = :m"),
                {"m": FIRST.replace(day=1)},
            ).all()
        )
    assert status[over] == "over"
    assert status[warned] == "warn"
    assert status[forecast] in ("forecast_warn", "forecast_over")
