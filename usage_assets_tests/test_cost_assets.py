"""Cost assets in Dagster: checks, metadata, views, and following upstream re-materializations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import Engine, text

from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.resources import OpenAIAdminResource, PricingResource, UsageDatabase
from usage_assets.defs.usage.assets import USAGE_ASSETS, completions_usage_hourly
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
    # The simulated org uses an audio model and o3-mini flex, which genai-prices lacks: the
    # shipped prices (usage_assets/pricing/model_prices.yaml) price them out of the box.
    assert checks["all_usage_priced"].passed

    [costs] = day_reports(result, "project_daily_costs")
    with engine.connect() as conn:
        total = conn.execute(
            text("SELECT sum(cost_usd) FROM openai_usage.project_daily_costs")
        ).scalar()
        view = conn.execute(
            text(
                "SELECT sum(cost_usd), count(*), count(*) FILTER (WHERE project_name IS NULL) "
                "FROM openai_usage.v_project_daily_cost"
            )
        ).one()
        per_key = conn.execute(
            text(
                "SELECT sum(cost_usd), count(*), count(*) FILTER (WHERE cost_usd IS NULL) "
                "FROM openai_usage.v_api_key_daily_cost"
            )
        ).one()
    assert Decimal(total) > 0
    assert costs.metadata["cost_usd"].value == float(total)
    # The views round each row to the micro-dollar: their sums are the table's to within half
    # a micro-dollar per row summed.
    micro = Decimal("0.000001")
    assert abs(view[0] - total) <= view[1] * micro / 2  # the summary adds up
    assert view[2] == 0  # every row has a display name
    # Everything is priced, so the keys add up to the same total; no key's cost is NULL.
    assert abs(per_key[0] - total) <= per_key[1] * micro / 2 and per_key[2] == 0


AUDIO_WITHOUT_AUDIO_RATES = """prices:
  - model: gpt-4o-audio-preview
    input_mtok: 2.5
    output_mtok: 10
"""


def test_an_override_row_replaces_the_shipped_one(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI, tmp_path: Path
) -> None:
    """The user's row for the audio model (text rates only) replaces the shipped row with its
    audio rates: the audio tokens are then unpriced, with the reason, never priced at zero."""
    overrides = tmp_path / "prices.yaml"
    overrides.write_text(AUDIO_WITHOUT_AUDIO_RATES)
    result = dg.materialize(
        ASSETS,
        partition_key=DAY,
        resources=resources(simulator, database_url, overrides_file=str(overrides)),
    )
    assert result.success
    unpriced = check_results(result)["all_usage_priced"]
    assert not unpriced.passed and unpriced.severity == dg.AssetCheckSeverity.WARN
    table = str(unpriced.metadata["unpriced_models"].value)
    assert "gpt-4o-audio-preview-2024-12-17" in table and "no audio input rate" in table
    assert "o3-mini" not in table  # the shipped flex row still applies


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


def test_summary_follows_completions_costs_without_the_other_kinds(
    database_url: str, simulator: SimulatedAdminAPI
) -> None:
    """usage_daily_costs (the other endpoints' costs) never materialized for the day: the
    rollup still follows project_daily_costs."""
    from usage_assets.defs.attribution.assets import usage_daily_costs

    instance = dg.DagsterInstance.ephemeral()
    assets = [*ASSETS, usage_daily_costs]
    defs = dg.Definitions(assets=assets, resources=resources(simulator, database_url))
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    dg.materialize(
        [completions_usage_hourly, project_daily_costs],
        partition_key=DAY,
        instance=instance,
        resources=resources(simulator, database_url),
    )
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(dg.AssetKey("project_daily_cost_summary")) == {DAY}
    assert second.get_requested_partitions(dg.AssetKey("usage_daily_costs")) == set()


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
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI, tmp_path: Path
) -> None:
    from usage_assets.defs.attribution.checks import estimated_matches_billed
    from usage_assets.defs.billing.assets import costs_daily

    example = str(PROJECT_ROOT / "prices" / "overrides.example.yaml")
    # Every kind of usage, so that the estimate covers the whole bill.
    everything = [
        *USAGE_ASSETS,
        *ASSETS[1:],
        usage_daily_costs,
        costs_daily,
        estimated_matches_billed,
    ]

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
    # Out of the box (no override file), the shipped prices cover the demo: green.
    assert run(0.01, None).passed
    # Without the audio rates, the audio model's project is estimated too low.
    without_audio = tmp_path / "prices.yaml"
    without_audio.write_text(AUDIO_WITHOUT_AUDIO_RATES)
    unpriced = run(0.01, str(without_audio))
    assert not unpriced.passed
    assert "gpt-4o-audio-preview" in str(unpriced.metadata["worst_line_items"].value)


# ---------------------------------------------------------------------------- a day priced by hand

#: Every rate of every override row, USD per 1M tokens. gpt-4.1 is in genai-prices (the override
#: wins on its tiers); acme-omni is known only here. Distinct rates for every kind, so a token
#: counted in the wrong kind, or twice, changes the figure.
HAND_PRICES = """
prices:
  - model: gpt-4.1
    input_mtok: 2.0
    cache_read_mtok: 0.5
    cache_write_mtok: 2.5
    cache_write_12h_mtok: 4.0
    input_audio_mtok: 40
    cache_audio_read_mtok: 2.5
    input_image_mtok: 3.0
    cache_image_read_mtok: 0.75
    output_mtok: 8.0
    output_audio_mtok: 80
    output_image_mtok: 32
  - model: gpt-4.1
    batch: true
    input_mtok: 1.0
    cache_read_mtok: 0.25
    cache_write_mtok: 1.25
    cache_write_12h_mtok: 2.0
    input_audio_mtok: 20
    cache_audio_read_mtok: 1.25
    input_image_mtok: 1.5
    cache_image_read_mtok: 0.375
    output_mtok: 4.0
    output_audio_mtok: 40
    output_image_mtok: 16
  - model: acme-omni
    input_mtok: 1.1
    cache_read_mtok: 0.11
    cache_write_mtok: 1.375
    cache_write_12h_mtok: 2.2
    input_audio_mtok: 33
    cache_audio_read_mtok: 3.3
    input_image_mtok: 1.7
    cache_image_read_mtok: 0.17
    output_mtok: 4.4
    output_audio_mtok: 66
    output_image_mtok: 13
  - model: acme-omni
    service_tier: flex
    input_mtok: 0.55
    cache_read_mtok: 0.055
    cache_write_mtok: 0.6875
    cache_write_12h_mtok: 1.1
    input_audio_mtok: 16.5
    cache_audio_read_mtok: 1.65
    input_image_mtok: 0.85
    cache_image_read_mtok: 0.085
    output_mtok: 2.2
    output_audio_mtok: 33
    output_image_mtok: 6.5
"""


def usd(tokens: int, rate: str) -> Decimal:
    return tokens * Decimal(rate) / Decimal(1_000_000)


def load_hours(engine: Engine, day: dt.date, hours: dict[int, list[dict[str, Any]]]) -> None:
    from usage_assets.admin_api.rows import DaySummary
    from usage_assets.admin_api.usage import UsageBucket
    from usage_assets.warehouse.usage_days import LoadInfo, replace_day

    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    summary = DaySummary(day)
    buckets = [
        UsageBucket(start + h * 3600, start + (h + 1) * 3600, results)
        for h, results in sorted(hours.items())
    ]
    info = LoadInfo(group_by=["project_id"], simulated=True, source_url="test", dagster_run_id=None)
    replace_day(engine, summary, summary.rows(buckets), info)


def test_a_fixed_day_priced_by_hand(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """Three projects, two models, batch, flex, scale and a NULL tier, rows with and without the
    30-minute cache-write field and one older row priced by the fallback: the cost assets'
    figures per project equal a hand computation of the README rules."""
    from .test_pricing import result

    overrides = tmp_path / "prices.yaml"
    overrides.write_text(HAND_PRICES)
    gpt, omni = "gpt-4.1-2025-04-14", "acme-omni"
    legacy = {
        # No breakdown by modality (older data), but the cache-write total and its 12h part.
        "object": "organization.usage.completions.result", "project_id": "proj_gamma",
        "user_id": None, "api_key_id": None, "model": gpt, "batch": False,
        "service_tier": "default", "api_source": None, "input_tokens": 20_000,
        "output_tokens": 2_000, "num_model_requests": 4, "input_cached_tokens": 6_000,
        "input_cache_write_tokens": 3_000, "input_cache_write_12h_tokens": 1_000,
    }  # fmt: skip
    load_hours(engine, dt.date.fromisoformat(DAY), {
        10: [
            result(gpt, "proj_alpha", input_text_tokens=12_000, input_cached_text_tokens=30_000,
                   input_cache_write_30m_tokens=5_000, input_cache_write_12h_tokens=2_000,
                   input_image_tokens=1_500, input_cached_image_tokens=800,
                   output_text_tokens=4_000, output_image_tokens=300),
            result(gpt, "proj_alpha", batch=True, input_text_tokens=50_000,
                   input_cached_text_tokens=20_000, input_cache_write_12h_tokens=4_000,
                   output_text_tokens=9_000),
            result(omni, "proj_beta", input_text_tokens=3_000, input_audio_tokens=6_000,
                   input_cached_audio_tokens=2_000, input_cache_write_30m_tokens=700,
                   input_cache_write_12h_tokens=300, output_text_tokens=1_000,
                   output_audio_tokens=5_000),
            legacy,
        ],
        11: [
            result(gpt, "proj_alpha", with_30m=False, input_text_tokens=8_000,
                   input_cached_text_tokens=10_000, input_cache_write_30m_tokens=3_000,
                   input_cache_write_12h_tokens=1_000, output_text_tokens=2_500),
        ],
        12: [
            result(omni, "proj_beta", tier="flex", with_30m=False, input_text_tokens=20_000,
                   input_cached_text_tokens=5_000, input_cache_write_30m_tokens=1_200,
                   input_cache_write_12h_tokens=800, input_image_tokens=900,
                   output_text_tokens=6_000, output_image_tokens=100),
        ],
        13: [
            result(omni, "proj_beta", tier="scale", input_text_tokens=4_000,
                   input_cache_write_30m_tokens=400, output_text_tokens=700),
            result(omni, "proj_beta", tier=None, input_text_tokens=1_000,
                   input_cached_text_tokens=500, output_text_tokens=200),
        ],
    })  # fmt: skip

    alpha = (
        # gpt-4.1, default tier, hours 10 and 11 (hour 11 without the 30m field: 4,000 - 1,000).
        usd(12_000 + 8_000, "2.0") + usd(30_000 + 10_000, "0.5")
        + usd(5_000 + 3_000, "2.5") + usd(2_000 + 1_000, "4.0")
        + usd(1_500, "3.0") + usd(800, "0.75") + usd(4_000 + 2_500, "8.0") + usd(300, "32")
        # gpt-4.1 batch: only 12-hour writes (the 30m part is 0).
        + usd(50_000, "1.0") + usd(20_000, "0.25") + usd(4_000, "2.0") + usd(9_000, "4.0")
    )  # fmt: skip
    beta = (
        # acme-omni default: audio in, cached audio, writes, audio out.
        usd(3_000, "1.1") + usd(6_000, "33") + usd(2_000, "3.3") + usd(700, "1.375")
        + usd(300, "2.2") + usd(1_000, "4.4") + usd(5_000, "66")
        # acme-omni flex, no 30m field: 2,000 written, 800 of them for 12 hours.
        + usd(20_000, "0.55") + usd(5_000, "0.055") + usd(1_200, "0.6875") + usd(800, "1.1")
        + usd(900, "0.85") + usd(6_000, "2.2") + usd(100, "6.5")
        # scale: prepaid capacity, at the default rates.
        + usd(4_000, "1.1") + usd(400, "1.375") + usd(700, "4.4")
        # a NULL tier is the default tier.
        + usd(1_000, "1.1") + usd(500, "0.11") + usd(200, "4.4")
    )  # fmt: skip
    gamma = (
        # Fallback: uncached text = 20,000 - 6,000 cached - 3,000 written = 11,000; of the
        # 3,000 written, 1,000 for 12 hours.
        usd(11_000, "2.0") + usd(6_000, "0.5") + usd(2_000, "2.5") + usd(1_000, "4.0")
        + usd(2_000, "8.0")
    )  # fmt: skip

    pricing = PricingResource(overrides_file=str(overrides))
    result_ = dg.materialize(
        [project_daily_costs, project_daily_cost_summary],
        partition_key=DAY,
        resources={"usage_db": UsageDatabase(url=database_url), "pricing": pricing},
    )
    assert result_.success
    checks = check_results(result_)
    assert checks["tokens_match_usage"].passed, checks["tokens_match_usage"].metadata
    assert checks["all_usage_priced"].passed
    assert checks["no_negative_values"].passed
    with engine.connect() as conn:
        per_project = dict(
            conn.execute(
                text(
                    "SELECT project_id, sum(cost_usd) FROM openai_usage.project_daily_costs "
                    "GROUP BY project_id"
                )
            ).all()
        )
        summary = dict(
            conn.execute(
                text("SELECT project_id, cost_usd FROM openai_usage.project_daily_cost_summary")
            ).all()
        )
        fallback = conn.execute(
            text(
                "SELECT breakdown_fallback, input_text_uncached_tokens, "
                "input_cache_write_tokens, input_cache_write_30m_tokens, "
                "input_cache_write_12h_tokens FROM openai_usage.project_daily_costs "
                "WHERE project_id = 'proj_gamma'"
            )
        ).one()
    expected = {"proj_alpha": alpha, "proj_beta": beta, "proj_gamma": gamma}
    assert set(per_project) == set(expected) == set(summary)
    for project, usd_ in expected.items():
        assert abs(per_project[project] - usd_) < Decimal("1e-6"), project
        assert abs(summary[project] - usd_) < Decimal("1e-6"), project
    assert tuple(fallback) == (True, 11_000, 3_000, 2_000, 1_000)


def test_token_kinds_must_add_up_to_input_tokens(engine: Engine, database_url: str) -> None:
    """Each input token is in exactly one priced kind: consistent rows pass the check, a row
    whose cache-write parts do not make up what input_tokens counts fails it."""
    from .test_pricing import result

    def run() -> dg.AssetCheckEvaluation:
        outcome = dg.materialize(
            [project_daily_costs],
            partition_key=DAY,
            resources={"usage_db": UsageDatabase(url=database_url), "pricing": PricingResource()},
        )
        assert outcome.success
        return check_results(outcome)["tokens_match_usage"]

    day = dt.date.fromisoformat(DAY)
    writes = {"input_text_tokens": 1_000, "input_cache_write_30m_tokens": 300,
              "input_cache_write_12h_tokens": 200, "output_text_tokens": 10}  # fmt: skip
    load_hours(
        engine,
        day,
        {
            10: [
                result("gpt-4o-2024-08-06", "p", **writes),
                result("gpt-4o-2024-08-06", "q", with_30m=False, **writes),
            ]
        },
    )
    passed = run()
    assert passed.passed, passed.metadata
    assert passed.metadata["rows_whose_token_kinds_do_not_add_up"].value == 0

    broken = result("gpt-4o-2024-08-06", "p", **writes)
    broken["input_cache_write_30m_tokens"] = 250  # 250 + 200 is not the total of 500
    load_hours(engine, day, {10: [broken]})
    failed = run()
    assert not failed.passed
    assert failed.metadata["rows_whose_token_kinds_do_not_add_up"].value == 1


def _rollup(engine: Engine) -> dict[tuple[Any, ...], tuple[int, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT usage_date, project_id, api_key_id, user_id, model, batch, service_tier, "
                "input_tokens, output_tokens, num_model_requests, input_text_cached_tokens, "
                "input_cache_write_30m_tokens, input_cache_write_12h_tokens, "
                "input_cache_write_tokens, breakdown_fallback "
                "FROM openai_usage.completions_usage_daily"
            )
        ).all()
    rollup = {tuple(row[:7]): tuple(row[7:]) for row in rows}
    assert len(rollup) == len(rows), "a group listed twice"
    return rollup


def test_the_daily_completions_rollup_follows_the_hours(engine: Engine, tmp_path: Path) -> None:
    """completions_usage_daily (what the estimate and the allocation read) holds each day's
    hours summed per key group, only for the days priced; pricing again does not double it and
    a day reloaded with less usage is followed."""
    from usage_assets.pricing.attribution import PricingInputs, price_usage

    from .test_pricing import result

    overrides = tmp_path / "prices.yaml"
    overrides.write_text(HAND_PRICES)
    gpt = "gpt-4.1-2025-04-14"
    first, second, third = (dt.date(2025, 11, 20) + dt.timedelta(days=i) for i in range(3))

    def keyed(key: str | None, user: str | None, **metrics: int) -> dict[str, Any]:
        return {**result(gpt, "proj_alpha", **metrics), "api_key_id": key, "user_id": user}

    load_hours(engine, first, {
        0: [keyed("key_a", "user_1", input_text_tokens=100, output_text_tokens=10,
                  input_cache_write_12h_tokens=5)],
        23: [keyed("key_a", "user_1", input_text_tokens=200, input_cached_text_tokens=50,
                   output_text_tokens=20, input_cache_write_30m_tokens=7),
             keyed("key_b", None, input_text_tokens=1_000, output_text_tokens=1)],
    })  # fmt: skip
    load_hours(engine, second, {5: [keyed("key_a", "user_1", input_text_tokens=3_000)]})
    load_hours(engine, third, {5: [keyed("key_a", "user_1", input_text_tokens=9)]})
    inputs = PricingInputs(override_file=overrides)
    price_usage(engine, first, third, inputs)

    group = ("proj_alpha", "key_a", "user_1", gpt, False, "default")
    expected = {
        # input_tokens counts every input kind: 100 + 5 written, 200 + 50 cached + 7 written;
        # three requests an hour.
        (first, *group): (362, 30, 6, 50, 7, 5, 12, False),
        (first, "proj_alpha", "key_b", None, gpt, False, "default"): (1_000, 1, 3, 0, 0, 0, 0,
                                                                      False),
        (second, *group): (3_000, 0, 3, 0, 0, 0, 0, False),
    }  # fmt: skip
    assert _rollup(engine) == expected  # the third day is not priced: not rolled up
    price_usage(engine, first, third, inputs)
    assert _rollup(engine) == expected

    load_hours(engine, first, {3: [keyed("key_b", None, input_text_tokens=40)]})
    price_usage(engine, first, second, inputs)
    assert _rollup(engine) == {
        (first, "proj_alpha", "key_b", None, gpt, False, "default"): (40, 0, 3, 0, 0, 0, 0, False),
        (second, *group): (3_000, 0, 3, 0, 0, 0, 0, False),
    }
    with engine.connect() as conn:
        priced = conn.execute(
            text(
                "SELECT usage_date, sum(input_tokens) FROM openai_usage.project_daily_costs "
                "GROUP BY 1 ORDER BY 1"
            )
        ).all()
    assert [tuple(row) for row in priced] == [(first, 40), (second, 3_000)]
