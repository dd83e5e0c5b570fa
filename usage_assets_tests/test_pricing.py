"""Pricing rules pinned on hand-computed examples, priced by the real SQL in a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from usage_assets.admin_api.rows import DaySummary
from usage_assets.admin_api.usage import UsageBucket
from usage_assets.errors import ConfigurationError
from usage_assets.pricing.attribution import PricingInputs, price_usage, summarize_costs
from usage_assets.pricing.prices import genai_price_rows, load_overrides, resolve_model
from usage_assets.warehouse.usage_days import LoadInfo, replace_day

DAY = dt.date(2025, 11, 20)
NEXT = DAY + dt.timedelta(days=1)
HOUR = int(dt.datetime(2025, 11, 20, 10, tzinfo=dt.UTC).timestamp())
M = Decimal(1_000_000)


def result(model: str, project: str, *, batch: bool = False, tier: str | None = "default",
           with_30m: bool = True, **metrics: int) -> dict[str, Any]:  # fmt: skip
    """A modern result: every breakdown field present (zero unless given). Cache writes are
    given as their parts; `input_cache_write_tokens` is their total, as the API reports it, and
    `with_30m=False` leaves the 30-minute field out, as older responses do."""
    fields = {
        "input_cached_tokens": 0, "input_cache_write_30m_tokens": 0,
        "input_cache_write_12h_tokens": 0, "input_text_tokens": 0, "input_audio_tokens": 0,
        "input_image_tokens": 0, "input_cached_text_tokens": 0, "input_cached_audio_tokens": 0,
        "input_cached_image_tokens": 0, "output_text_tokens": 0, "output_audio_tokens": 0,
        "output_image_tokens": 0,
    }  # fmt: skip
    fields.update(metrics)
    inputs = (
        fields["input_text_tokens"] + fields["input_audio_tokens"] + fields["input_image_tokens"]
    )
    cached = (
        fields["input_cached_text_tokens"]
        + fields["input_cached_audio_tokens"]
        + fields["input_cached_image_tokens"]
    )
    writes = fields["input_cache_write_30m_tokens"] + fields["input_cache_write_12h_tokens"]
    fields["input_uncached_tokens"] = inputs
    fields["input_cached_tokens"] = cached
    fields["input_cache_write_tokens"] = writes
    if not with_30m:
        del fields["input_cache_write_30m_tokens"]
    return {
        "object": "organization.usage.completions.result",
        "project_id": project, "user_id": None, "api_key_id": "key_x", "model": model,
        "batch": batch, "service_tier": tier, "api_source": "unlabeled",
        "input_tokens": inputs + cached + writes,
        "output_tokens": fields["output_text_tokens"] + fields["output_audio_tokens"]
        + fields["output_image_tokens"],
        "num_model_requests": 3,
        **fields,
    }  # fmt: skip


def load(engine: Engine, results: list[dict[str, Any]], day: dt.date = DAY) -> None:
    start = int(dt.datetime.combine(day, dt.time(10), dt.UTC).timestamp())
    summary = DaySummary(day)
    rows = summary.rows([UsageBucket(start, start + 3600, results)])
    info = LoadInfo(group_by=["project_id"], simulated=True, source_url="test", dagster_run_id=None)
    replace_day(engine, summary, rows, info)


def costs(engine: Engine, overrides: Path | None = None, reprice: bool = False,
          first: dt.date = DAY, end: dt.date = NEXT) -> dict[str, tuple[Any, ...]]:  # fmt: skip
    price_usage(engine, first, end, PricingInputs(overrides, reprice))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT project_id, cost_usd, unpriced_reason, model_ref, input_tokens, "
                "output_tokens, breakdown_fallback FROM openai_usage.project_daily_costs"
            )
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def write_yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "overrides.yaml"
    path.write_text(body)
    return path


def test_cached_heavy_row(engine: Engine) -> None:
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    load(engine, [result("gpt-4o-mini-2024-07-18", "cached", input_text_tokens=2_000,
                         input_cached_text_tokens=98_000, output_text_tokens=1_000)])  # fmt: skip
    cost, reason, model_ref, *_ = costs(engine)["cached"]
    assert model_ref == "gpt-4o-mini"  # the dated snapshot resolves to its model
    assert reason is None
    assert (
        cost == (2_000 * Decimal("0.15") + 98_000 * Decimal("0.075") + 1_000 * Decimal("0.6")) / M
    )


def test_batch_row_at_the_batch_rates(engine: Engine) -> None:
    # genai-prices' batch variant of gpt-4o-mini: $0.075 input, $0.30 output; cached input has
    # no batch rate there, so it gets the 50% Batch API discount: $0.0375.
    load(engine, [result("gpt-4o-mini-2024-07-18", "batch", batch=True, input_text_tokens=10_000,
                         input_cached_text_tokens=4_000, output_text_tokens=5_000)])  # fmt: skip
    cost = costs(engine)["batch"][0]
    assert (
        cost == (10_000 * Decimal("0.075") + 4_000 * Decimal("0.0375") + 5_000 * Decimal("0.3")) / M
    )


def test_flex_and_priority_rows_at_their_tier_rates(engine: Engine) -> None:
    # gpt-5: default $1.25/$0.125/$10; flex $0.625/$0.0625/$5; priority $2.5/$0.25/$20.
    tokens = {"input_text_tokens": 4_000, "input_cached_text_tokens": 1_000,
              "output_text_tokens": 2_000}  # fmt: skip
    load(engine, [
        result("gpt-5-2025-08-07", "flex", tier="flex", **tokens),
        result("gpt-5-2025-08-07", "priority", tier="priority", **tokens),
        result("gpt-5-2025-08-07", "default", **tokens),
        result("gpt-5-2025-08-07", "scale", tier="scale", **tokens),
    ])  # fmt: skip
    got = costs(engine)

    def price(i: str, c: str, o: str) -> Decimal:
        return (4_000 * Decimal(i) + 1_000 * Decimal(c) + 2_000 * Decimal(o)) / M

    assert got["flex"][0] == price("0.625", "0.0625", "5")
    assert got["priority"][0] == price("2.5", "0.25", "20")
    assert got["default"][0] == price("1.25", "0.125", "10")
    assert got["scale"][0] == got["default"][0]  # prepaid capacity, estimated at default rates


def test_audio_row_needs_audio_rates_then_uses_them(engine: Engine, tmp_path: Path) -> None:
    row = result("gpt-4o-audio-preview-2024-12-17", "audio", input_text_tokens=1_000,
                 input_audio_tokens=3_000, input_cached_audio_tokens=500,
                 output_text_tokens=500, output_audio_tokens=2_000)  # fmt: skip
    load(engine, [row])
    # genai-prices has no audio rates; a row of the user's file without them replaces the
    # shipped row (usage_assets/pricing/model_prices.yaml), which has them.
    text_only = write_yaml(tmp_path, """
prices:
  - model: gpt-4o-audio-preview
    input_mtok: 2.5
    output_mtok: 10
""")  # fmt: skip
    cost, reason, _, input_tokens, output_tokens, _ = costs(engine, text_only)["audio"]
    assert cost is None and reason == "no audio input rate"
    assert (input_tokens, output_tokens) == (4_500, 2_500)  # tokens kept, never zeroed
    # Out of the box, the shipped row prices it (no cached-audio rate: cached audio as audio).
    cost, reason, *_ = costs(engine)["audio"]
    assert reason is None
    assert cost == (
        1_000 * Decimal("2.5") + 3_500 * Decimal("40") + 500 * Decimal("10")
        + 2_000 * Decimal("80")
    ) / M  # fmt: skip

    overrides = write_yaml(tmp_path, """
prices:
  - model: gpt-4o-audio-preview
    input_mtok: 2.5
    output_mtok: 10
    input_audio_mtok: 40
    cache_audio_read_mtok: 2.5
    output_audio_mtok: 80
""")  # fmt: skip
    cost, reason, *_ = costs(engine, overrides)["audio"]
    assert reason is None
    assert cost == (
        1_000 * Decimal("2.5") + 3_000 * Decimal("40") + 500 * Decimal("2.5")
        + 500 * Decimal("10") + 2_000 * Decimal("80")
    ) / M  # fmt: skip


def test_cache_writes_and_image_tokens(engine: Engine) -> None:
    # gpt-4.1 has no cache-write or image rates in genai-prices: cache writes are priced as
    # input ($2), 12h writes likewise, image input as text input; output $8. The 5,000 written
    # tokens (2,000 for 30 minutes, 3,000 for 12 hours) are priced once, with or without the
    # 30-minute field: the API's input_cache_write_tokens (5,000) is their total.
    tokens = {"input_text_tokens": 1_000, "input_cache_write_30m_tokens": 2_000,
              "input_cache_write_12h_tokens": 3_000, "input_image_tokens": 4_000,
              "output_text_tokens": 100}  # fmt: skip
    load(engine, [result("gpt-4.1-2025-04-14", "cw", **tokens),
                  result("gpt-4.1-2025-04-14", "no30m", with_30m=False, **tokens)])  # fmt: skip
    got = costs(engine)
    expected = ((1_000 + 2_000 + 3_000 + 4_000) * Decimal("2") + 100 * Decimal("8")) / M
    assert got["cw"][0] == expected
    assert got["no30m"][0] == expected
    with engine.connect() as conn:
        kinds = conn.execute(
            text(
                "SELECT project_id, input_cache_write_tokens, input_cache_write_30m_tokens, "
                "input_cache_write_12h_tokens, input_text_uncached_tokens "
                "FROM openai_usage.project_daily_costs ORDER BY project_id"
            )
        ).all()
    assert [tuple(k) for k in kinds] == [
        ("cw", 5_000, 2_000, 3_000, 1_000),
        ("no30m", 5_000, 2_000, 3_000, 1_000),
    ]


def test_negotiated_override_with_effective_dates(engine: Engine, tmp_path: Path) -> None:
    tokens = {"input_text_tokens": 1_000_000, "output_text_tokens": 1_000_000}
    for day in (DAY, NEXT):
        load(engine, [result("gpt-4o-2024-08-06", f"p{day.day}", **tokens)], day)
    overrides = write_yaml(tmp_path, f"""
- model: gpt-4o
  effective_from: {NEXT.isoformat()}
  input_mtok: 2.0
  output_mtok: 8.0
  note: enterprise agreement
""")  # fmt: skip
    got = costs(engine, overrides, end=NEXT + dt.timedelta(days=1))
    assert got[f"p{DAY.day}"][0] == Decimal("12.5")  # genai-prices: $2.50 + $10
    assert got[f"p{NEXT.day}"][0] == Decimal("10")  # the negotiated $2 + $8
    with engine.connect() as conn:
        source = conn.execute(
            text(
                "SELECT mp.source FROM openai_usage.project_daily_costs c JOIN "
                "openai_usage.model_prices mp USING (price_id) WHERE c.usage_date = :d"
            ),
            {"d": NEXT},
        ).scalar()
    assert source == "override"


def test_unknown_model_keeps_tokens_with_null_cost(engine: Engine) -> None:
    load(engine, [
        result("acme-internal-llm", "unknown", input_text_tokens=700, output_text_tokens=300),
        result("gpt-4o-mini-2024-07-18", "known", input_text_tokens=1_000_000),
    ])  # fmt: skip
    got = costs(engine)
    cost, reason, model_ref, input_tokens, output_tokens, _ = got["unknown"]
    assert (cost, model_ref, input_tokens, output_tokens) == (None, None, 700, 300)
    assert reason.startswith("unknown model")
    summarize_costs(engine, DAY, NEXT)
    with engine.connect() as conn:
        summary = dict(
            conn.execute(
                text(
                    "SELECT project_id, (cost_usd, unpriced_tokens)::text "
                    "FROM openai_usage.project_daily_cost_summary"
                )
            ).all()
        )
    assert summary == {"unknown": "(0,1000)", "known": "(0.15000000000000000000,0)"}


def test_fine_tune_priced_by_its_own_rule(engine: Engine, tmp_path: Path) -> None:
    model = "ft:gpt-4o-mini-2024-07-18:acme::B7xQ9kLm"
    load(engine, [result(model, "ft", input_text_tokens=1_000_000, output_text_tokens=1_000_000)])
    assert costs(engine)["ft"][0] == Decimal("1.5")  # genai-prices' ft:gpt-4o-mini: $0.30 + $1.20
    overrides = write_yaml(tmp_path, f"- model: '{model}'\n  input_mtok: 1\n  output_mtok: 2\n")
    cost, _, model_ref, *_ = costs(engine, overrides)["ft"]
    assert (cost, model_ref) == (Decimal(3), model)  # an exact reported name wins


def test_older_rows_use_the_documented_fallback(engine: Engine) -> None:
    legacy = {
        "object": "organization.usage.completions.result", "project_id": "legacy",
        "user_id": None, "api_key_id": None, "model": "gpt-4o-mini-2024-07-18", "batch": False,
        "service_tier": None, "api_source": None, "input_tokens": 5_000, "output_tokens": 1_000,
        "input_cached_tokens": 4_000, "num_model_requests": 5,
    }  # fmt: skip
    load(engine, [legacy])
    cost, reason, _, _, _, fallback = costs(engine)["legacy"]
    assert fallback is True and reason is None
    # uncached text = input_tokens - input_cached_tokens; NULL tier is the default tier.
    assert cost == (1_000 * Decimal("0.15") + 4_000 * Decimal("0.075") + 1_000 * Decimal("0.6")) / M


def test_fallback_subtracts_cache_writes_once(engine: Engine, tmp_path: Path) -> None:
    # An older row with no breakdown by modality but the cache-write total (3,000) and its
    # 12-hour part (1,000): uncached text = 10,000 - 4,000 cached - 3,000 written, and the
    # 3,000 written are 2,000 for 30 minutes and 1,000 for 12 hours.
    row = {
        "object": "organization.usage.completions.result", "project_id": "legacy",
        "user_id": None, "api_key_id": None, "model": "acme-llm", "batch": False,
        "service_tier": "default", "api_source": None, "input_tokens": 10_000,
        "output_tokens": 0, "input_cached_tokens": 4_000, "input_cache_write_tokens": 3_000,
        "input_cache_write_12h_tokens": 1_000, "num_model_requests": 1,
    }  # fmt: skip
    load(engine, [row])
    overrides = write_yaml(tmp_path, """
- model: acme-llm
  input_mtok: 1
  cache_read_mtok: 0.1
  cache_write_mtok: 1.25
  cache_write_12h_mtok: 2
  output_mtok: 4
""")  # fmt: skip
    cost, reason, _, _, _, fallback = costs(engine, overrides)["legacy"]
    assert fallback is True and reason is None
    assert (
        cost
        == (
            3_000 * Decimal(1)
            + 4_000 * Decimal("0.1")
            + 2_000 * Decimal("1.25")
            + 1_000 * Decimal(2)
        )
        / M
    )


def test_repricing_is_explicit(engine: Engine) -> None:
    load(engine, [result("gpt-4o-mini-2024-07-18", "p", input_text_tokens=1_000_000)])
    assert costs(engine)["p"][0] == Decimal("0.15")
    # The stored snapshot was taken from an older genai-prices that said $0.10.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE openai_usage.model_prices SET input_mtok = 0.10 WHERE model_ref = "
                "'gpt-4o-mini' AND service_tier = 'default' AND NOT batch"
            )
        )
    assert costs(engine)["p"][0] == Decimal("0.10")  # a re-run keeps the prices it had
    assert costs(engine, reprice=True)["p"][0] == Decimal("0.15")
    with engine.connect() as conn:
        history = conn.execute(
            text(
                "SELECT input_mtok, superseded_at IS NOT NULL FROM openai_usage.model_prices "
                "WHERE model_ref = 'gpt-4o-mini' AND service_tier = 'default' AND NOT batch "
                "ORDER BY price_id"
            )
        ).all()
    assert [(Decimal(str(p)), s) for p, s in history] == [
        (Decimal("0.10"), True),
        (Decimal("0.15"), False),
    ]


def test_override_file_changes_apply_and_removed_rows_retire(
    engine: Engine, tmp_path: Path
) -> None:
    load(engine, [result("acme-internal-llm", "p", input_text_tokens=1_000_000)])
    path = write_yaml(tmp_path, "- model: acme-internal-llm\n  input_mtok: 3\n  output_mtok: 1\n")
    assert costs(engine, path)["p"][0] == Decimal(3)
    path.write_text("- model: acme-internal-llm\n  input_mtok: 4\n  output_mtok: 1\n")
    assert costs(engine, path)["p"][0] == Decimal(4)
    path.write_text("[]\n")
    assert costs(engine, path)["p"][0] is None


def test_csv_overrides(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "model,service_tier,batch,input_mtok,output_mtok,effective_from\n"
        "acme-llm,,,1.5,2,\n"
        "acme-llm,flex,false,0.75,1,2025-01-01\n"
    )
    rows = load_overrides(path)
    assert [(r.model_ref, r.service_tier, r.batch, r.rates["input_mtok"]) for r in rows] == [
        ("acme-llm", "default", False, Decimal("1.5")),
        ("acme-llm", "flex", False, Decimal("0.75")),
    ]
    assert rows[1].effective_from == dt.date(2025, 1, 1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("- model: x\n  input_mtok: cheap\n", "input_mtok='cheap' is not a number"),
        ("- model: x\n  input_mtok: -1\n", "non-negative"),
        ("- model: x\n  colour: red\n  input_mtok: 1\n", "unknown keys"),
        ("- input_mtok: 1\n", "'model' is required"),
        ("- model: x\n", "at least one rate"),
        ("- model: x\n  input_mtok: 1\n  effective_from: 2025-02-30\n", "YYYY-MM-DD"),
        ("- model: x\n  input_mtok: 1\n- model: x\n  input_mtok: 2\n", "repeats"),
        ("prices: {model: x}\n", "expected a list"),
        ("- model: x\n  input_mtok: [1\n", "not valid YAML"),
    ],
)
def test_bad_override_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_overrides(write_yaml(tmp_path, body))


def test_bad_override_file_fails_before_any_write(engine: Engine, tmp_path: Path) -> None:
    load(engine, [result("gpt-4o-mini-2024-07-18", "p", input_text_tokens=1_000_000)])
    costs(engine)
    with pytest.raises(ConfigurationError):
        costs(engine, write_yaml(tmp_path, "- model: x\n"))
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT cost_usd FROM openai_usage.project_daily_costs")
        ).scalar() == Decimal("0.15")


def test_genai_prices_snapshot_covers_tiers_batch_and_dates() -> None:
    rows = {(r.model_ref, r.service_tier, r.batch): r for r in genai_price_rows()}
    assert rows[("gpt-5", "flex", False)].rates["input_mtok"] == Decimal("0.625")
    assert rows[("gpt-4o", "default", True)].rates["output_mtok"] == Decimal("5")
    assert ("o3-mini", "flex", False) not in rows
    assert resolve_model("gpt-4o-mini-2024-07-18") == ("gpt-4o-mini", "genai-prices")
    assert resolve_model("no-such-model") == (None, "unresolved")
    assert resolve_model("no-such-model", ["no-such-model"]) == ("no-such-model", "override")
