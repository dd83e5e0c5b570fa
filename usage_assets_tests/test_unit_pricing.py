"""Every usage kind but completions priced by its unit, by the real SQL in a real PostgreSQL: rows
inserted straight into the `<name>_usage_hourly` tables (every column of endpoints.py) and
`costs_daily`, figures computed by hand from the README's price list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from usage_assets.admin_api.endpoints import ENDPOINTS_BY_NAME
from usage_assets.errors import ConfigurationError
from usage_assets.pricing.attribution import (
    PricingInputs,
    price_unit_usage,
    price_usage,
    recompute_costs,
    reconcile,
    summarize_costs,
    unit_quantity_mismatches,
)
from usage_assets.pricing.prices import (
    UNIT_KINDS,
    bundled_unit_price_rows,
    genai_unit_price_rows,
    load_override_unit_prices,
    load_overrides,
)
from usage_assets.warehouse.database import alembic_config, engine_for, migrate

from .conftest import create_database, drop_database

DAY = dt.date(2025, 11, 20)
NEXT = DAY + dt.timedelta(days=1)
GIB = 2**30
S = "openai_usage"


def usage(engine: Engine, name: str, *rows: dict[str, Any], day: dt.date = DAY) -> None:
    """Rows of `<name>_usage_hourly`: every dimension (NULL unless given) and metric (0 unless
    given) of the endpoint, hour 10 of `day` unless `hour` says otherwise."""
    endpoint = ENDPOINTS_BY_NAME[name]
    with engine.begin() as conn:
        for row in rows:
            values: dict[str, Any] = dict.fromkeys(endpoint.dimension_names)
            values |= dict.fromkeys(endpoint.metric_names, 0)
            hour = row.get("hour", 10)
            values |= {k: v for k, v in row.items() if k != "hour"}
            start = dt.datetime.combine(day, dt.time(hour), dt.UTC)
            values |= {"bucket_start": start, "bucket_end": start + dt.timedelta(hours=1)}
            columns = ", ".join(values)
            params = ", ".join(f":{c}" for c in values)
            conn.execute(
                text(
                    f"INSERT INTO {S}.{endpoint.table_name} ({columns}, result) "
                    f"VALUES ({params}, '{{}}')"
                ),
                values,
            )


def costs(
    engine: Engine, overrides: Path | None = None, first: dt.date = DAY, end: dt.date = NEXT
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """usage_daily_costs keyed by (day, project, kind, model, detail as sorted pairs)."""
    price_unit_usage(engine, first, end, PricingInputs(overrides))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.*, p.source AS price_source, p.rule AS price_rule "
                f"FROM {S}.usage_daily_costs c "
                f"LEFT JOIN {S}.unit_prices p USING (unit_price_id)"
            )
        ).mappings()
        return {
            (
                r["usage_date"],
                r["project_id"],
                r["usage_kind"],
                r["model"],
                tuple(sorted(r["detail"].items())),
            ): dict(r)
            for r in rows
        }


def one(
    got: dict[tuple[Any, ...], dict[str, Any]],
    kind: str,
    model: str | None = None,
    project: str | None = "p",
    day: dt.date = DAY,
    **detail: str,
) -> dict[str, Any]:
    return got[(day, project, kind, model, tuple(sorted(detail.items())))]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(body)
    return path


def test_every_kind_priced_by_its_unit(engine: Engine) -> None:
    usage(
        engine,
        "embeddings",
        {
            "project_id": "p",
            "model": "text-embedding-3-small",
            "input_tokens": 1_234_567,
            "num_model_requests": 12,
        },
        {
            "project_id": "p",
            "model": "text-embedding-3-large",
            "input_tokens": 2_000_000,
            "user_id": "u1",
        },
        {
            "project_id": "p",
            "model": "text-embedding-3-large",
            "input_tokens": 500_000,
            "user_id": "u2",
            "hour": 11,
        },
    )
    usage(
        engine,
        "moderations",
        {"project_id": "p", "model": "omni-moderation-2024-09-26", "input_tokens": 900_000},
        {"project_id": "p", "model": "text-moderation-latest", "input_tokens": 1_000},
    )
    usage(
        engine,
        "images",
        {
            "project_id": "p",
            "model": "dall-e-3",
            "size": "1024x1024",
            "source": "image.generation",
            "images": 3,
        },
        {
            "project_id": "p",
            "model": "dall-e-3",
            "size": "1792x1024",
            "source": "image.generation",
            "images": 2,
        },
        {
            "project_id": "p",
            "model": "dall-e-2",
            "size": "256x256",
            "source": "image.variation",
            "images": 5,
        },
    )
    usage(
        engine,
        "audio_speeches",
        {"project_id": "p", "model": "tts-1", "characters": 200_000},
        {"project_id": "p", "model": "tts-1-hd", "characters": 10_000},
    )
    usage(
        engine,
        "audio_transcriptions",
        {"project_id": "p", "model": "whisper-1", "seconds": 90},
        {"project_id": "p", "model": "whisper-1", "seconds": 30, "hour": 11},
        {"project_id": "p", "model": "whisper-1", "seconds": 100, "hour": 12, "user_id": "u"},
    )
    usage(engine, "code_interpreter_sessions", {"project_id": "p", "num_sessions": 7})
    usage(
        engine,
        "file_search_calls",
        {"project_id": "p", "vector_store_id": "vs_1", "num_requests": 1_000},
        {"project_id": "p", "vector_store_id": "vs_2", "num_requests": 500},
    )
    usage(
        engine,
        "web_search_calls",
        {
            "project_id": "p",
            "model": "gpt-4o-2024-08-06",
            "context_level": "medium",
            "num_requests": 200,
            "api_source": "responses",
        },
        {
            "project_id": "p",
            "model": "gpt-4o-2024-08-06",
            "context_level": "high",
            "num_requests": 10,
        },
        {"project_id": "p", "model": "gpt-4o-mini", "context_level": "low", "num_requests": 40},
    )
    got = costs(engine)

    embedding = one(got, "embeddings", "text-embedding-3-small")
    assert embedding["cost_usd"] == Decimal("0.02469134")  # 1,234,567 x $0.02 / 1M
    assert (embedding["quantity"], embedding["unit"], embedding["num_model_requests"]) == (
        1_234_567,
        "tokens",
        12,
    )
    assert embedding["price_source"].startswith("genai-prices")  # genai-prices has it
    assert one(got, "embeddings", "text-embedding-3-large")["cost_usd"] == Decimal("0.325")

    for model in ("omni-moderation-2024-09-26", "text-moderation-latest"):
        free = one(got, "moderations", model)
        assert free["cost_usd"] == 0 and free["unpriced_reason"] is None
        assert free["price_rule"] == "free" and free["price_source"] == "bundled"

    generation = {"source": "image.generation"}
    assert one(got, "images", "dall-e-3", size="1024x1024", **generation)["cost_usd"] == Decimal(
        "0.12"
    )
    assert one(got, "images", "dall-e-3", size="1792x1024", **generation)["cost_usd"] == Decimal(
        "0.16"
    )
    variation = one(got, "images", "dall-e-2", size="256x256", source="image.variation")
    assert (variation["cost_usd"], variation["quantity"], variation["unit"]) == (
        Decimal("0.08"),
        5,
        "images",
    )

    assert one(got, "audio_speeches", "tts-1")["cost_usd"] == Decimal(3)  # 200k x $15 / 1M
    assert one(got, "audio_speeches", "tts-1-hd")["cost_usd"] == Decimal("0.3")

    whisper = one(got, "audio_transcriptions", "whisper-1")
    # 220 seconds: 3 2/3 minutes at $0.006, computed from the seconds (no rounding).
    assert whisper["cost_usd"] == Decimal("0.022")
    assert (whisper["unit"], abs(whisper["quantity"] - Decimal(220) / 60) < Decimal("1e-15")) == (
        "minutes",
        True,
    )

    sessions = one(got, "code_interpreter_sessions")
    assert (sessions["cost_usd"], sessions["quantity"], sessions["unit"], sessions["model"]) == (
        Decimal("0.21"),
        7,
        "sessions",
        None,
    )
    assert one(got, "file_search_calls")["cost_usd"] == Decimal("3.75")  # 1,500 x $2.50 / 1k

    # Dated snapshot: gpt-4o-2024-08-06 has gpt-4o's price, by context level.
    assert one(got, "web_search_calls", "gpt-4o-2024-08-06", context_level="medium")[
        "cost_usd"
    ] == Decimal(7)  # 200 x $35 / 1k
    assert one(got, "web_search_calls", "gpt-4o-2024-08-06", context_level="high")[
        "cost_usd"
    ] == Decimal("0.5")
    assert one(got, "web_search_calls", "gpt-4o-mini", context_level="low")["cost_usd"] == 1

    assert all(row["unpriced_reason"] is None for row in got.values())
    assert unit_quantity_mismatches(engine, DAY, NEXT) == []


def test_vector_store_free_allowance_is_the_organizations_shared_pro_rata(engine: Engine) -> None:
    # Day 1: p stores 3 GiB and q 1 GiB all day: 4 GiB-days, 1 free: 3 x $0.10, split 3:1.
    for hour in range(24):
        usage(
            engine,
            "vector_stores",
            {"project_id": "p", "usage_bytes": 3 * GIB, "hour": hour},
            {"project_id": "q", "usage_bytes": GIB, "hour": hour},
        )
    # Day 2: 2 GiB for 6 hours (half a GiB-day): within the allowance. Day 3: the default
    # project alone, 2 GiB for 12 hours and 4 GiB for 12 (3 GiB-days: $0.20).
    for hour in range(6):
        usage(
            engine,
            "vector_stores",
            {"project_id": "p", "usage_bytes": 2 * GIB, "hour": hour},
            day=NEXT,
        )
    third = NEXT + dt.timedelta(days=1)
    for hour in range(24):
        usage(
            engine,
            "vector_stores",
            {"usage_bytes": (2 if hour < 12 else 4) * GIB, "hour": hour},
            day=third,
        )
    got = costs(engine, end=third + dt.timedelta(days=1))
    p, q = one(got, "vector_stores", project="p"), one(got, "vector_stores", project="q")
    assert (p["quantity"], p["free_quantity"], p["cost_usd"]) == (
        3,
        Decimal("0.75"),
        Decimal("0.225"),
    )
    assert (q["quantity"], q["free_quantity"], q["cost_usd"]) == (
        1,
        Decimal("0.25"),
        Decimal("0.075"),
    )
    assert p["unit"] == "gib_days"
    small = one(got, "vector_stores", project="p", day=NEXT)
    assert (small["quantity"], small["free_quantity"], small["cost_usd"]) == (
        Decimal("0.5"),
        Decimal("0.5"),
        0,
    )
    default = one(got, "vector_stores", project=None, day=third)
    assert (default["quantity"], default["cost_usd"]) == (3, Decimal("0.2"))
    assert unit_quantity_mismatches(engine, DAY, third + dt.timedelta(days=1)) == []


def test_allowance_split_in_thirds_adds_up_to_the_organizations_cost(engine: Engine) -> None:
    for hour in range(24):
        usage(
            engine,
            "vector_stores",
            {"project_id": "a", "usage_bytes": GIB, "hour": hour},
            {"project_id": "b", "usage_bytes": 3 * GIB, "hour": hour},
            {"project_id": "c", "usage_bytes": 2 * GIB, "hour": hour},
        )
    got = costs(engine)
    parts = [one(got, "vector_stores", project=p)["cost_usd"] for p in "abc"]
    # 6 GiB-days, 5 billed: $0.50, a sixth, half and third of it.
    assert abs(sum(parts) - Decimal("0.5")) < Decimal("1e-18")
    assert abs(parts[0] - Decimal("0.5") / 6) < Decimal("1e-18")
    assert parts[1] == Decimal("0.25")


def test_unpriced_usage_keeps_its_quantity_and_says_why(engine: Engine) -> None:
    usage(
        engine,
        "images",
        {
            "project_id": "p",
            "model": "gpt-image-1",
            "size": "1024x1024",
            "source": "image.generation",
            "images": 4,
        },
        {
            "project_id": "p",
            "model": "dall-e-3",
            "size": "1024x1024",
            "source": "image.edit",
            "images": 1,
        },
    )
    usage(
        engine,
        "web_search_calls",
        {"project_id": "p", "model": "acme-search", "context_level": "low", "num_requests": 9},
    )
    usage(engine, "audio_speeches", {"project_id": "p", "characters": 50})  # not grouped by model
    got = costs(engine)
    image = one(got, "images", "gpt-image-1", size="1024x1024", source="image.generation")
    assert (image["cost_usd"], image["quantity"], image["unit_price_id"]) == (None, 4, None)
    assert image["unpriced_reason"] == (
        "no price for images model gpt-image-1 size 1024x1024 source image.generation"
    )
    search = one(got, "web_search_calls", "acme-search", context_level="low")
    assert (
        search["unpriced_reason"] == "no price for web_search_calls model acme-search "
        "context_level low"
    )
    assert one(got, "audio_speeches")["unpriced_reason"] == "no price for audio_speeches"
    summarize_costs(engine, DAY, NEXT)
    with engine.connect() as conn:
        summary = conn.execute(
            text(
                "SELECT cost_usd, unpriced_usage_rows, cost_by_kind, unpriced_tokens "
                f"FROM {S}.project_daily_cost_summary"
            )
        ).one()
    # Only the priced dall-e-3 edit is in the estimate; three rows are unpriced, not zero.
    assert tuple(summary) == (
        Decimal("0.04"),
        3,
        {"images": 0.04, "web_search_calls": 0, "audio_speeches": 0},
        0,
    )


def test_dated_snapshots_share_their_models_price_and_nothing_more(engine: Engine) -> None:
    with engine.connect() as conn:
        base = [
            conn.execute(text(f"SELECT {S}.base_model(:m)"), {"m": m}).scalar_one()
            for m in ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4o", "o1-2024-12-17x")
        ]
    assert base == ["gpt-4o", "gpt-4o-mini", "gpt-4o", "o1-2024-12-17x"]
    usage(
        engine,
        "web_search_calls",
        {
            "project_id": "p",
            "model": "gpt-4o-mini-2024-07-18",
            "context_level": "medium",
            "num_requests": 1_000,
        },
        {
            "project_id": "p",
            "model": "gpt-4o-search-preview-2025-03-11",
            "context_level": "medium",
            "num_requests": 1_000,
        },
    )
    got = costs(engine)
    mini = one(got, "web_search_calls", "gpt-4o-mini-2024-07-18", context_level="medium")
    assert mini["cost_usd"] == Decimal("27.5")  # gpt-4o-mini's $27.50, not gpt-4o's $35
    preview = one(
        got, "web_search_calls", "gpt-4o-search-preview-2025-03-11", context_level="medium"
    )
    assert preview["cost_usd"] is None  # not gpt-4o: only a trailing date is stripped


OVERRIDES = """
unit_prices:
  - usage_kind: embeddings
    model: text-embedding-3-small
    unit: tokens
    usd_per_1m: 0.01
    note: negotiated
  - usage_kind: images
    model: gpt-image-1
    usd_per_unit: 0.042
    note: https://platform.openai.com/docs/pricing (medium quality)
  - usage_kind: vector_stores
    unit: gib_days
    usd_per_unit: 0.10
    note: no free allowance in our contract
  - usage_kind: web_search_calls
    model: gpt-4o
    context_level: medium
    usd_per_1k: 20
    effective_from: {next}
"""


def test_override_file_replaces_rows_and_fills_gaps(engine: Engine, tmp_path: Path) -> None:
    for day in (DAY, NEXT):
        usage(
            engine,
            "embeddings",
            {"project_id": "p", "model": "text-embedding-3-small", "input_tokens": 1_000_000},
            {"project_id": "p", "model": "text-embedding-3-large", "input_tokens": 1_000_000},
            day=day,
        )
        usage(
            engine,
            "images",
            {
                "project_id": "p",
                "model": "gpt-image-1",
                "size": "1536x1024",
                "source": "image.edit",
                "images": 10,
            },
            {
                "project_id": "p",
                "model": "dall-e-3",
                "size": "1024x1024",
                "source": "image.generation",
                "images": 10,
            },
            day=day,
        )
        usage(
            engine,
            "web_search_calls",
            {
                "project_id": "p",
                "model": "gpt-4o",
                "context_level": "medium",
                "num_requests": 1_000,
            },
            day=day,
        )
        usage(
            engine,
            "vector_stores",
            *({"project_id": "p", "usage_bytes": 2 * GIB, "hour": h} for h in range(24)),
            day=day,
        )
    path = write(tmp_path, OVERRIDES.format(next=NEXT.isoformat()))
    end = NEXT + dt.timedelta(days=1)
    got = costs(engine, path, end=end)
    small = one(got, "embeddings", "text-embedding-3-small")
    assert (small["cost_usd"], small["price_source"]) == (Decimal("0.01"), "override")
    assert one(got, "embeddings", "text-embedding-3-large")["cost_usd"] == Decimal("0.13")
    # An override row for any size fills the gap; dall-e-3's sized list price stays.
    assert one(got, "images", "gpt-image-1", size="1536x1024", source="image.edit")[
        "cost_usd"
    ] == Decimal("0.42")
    assert one(got, "images", "dall-e-3", size="1024x1024", source="image.generation")[
        "cost_usd"
    ] == Decimal("0.4")
    vector = one(got, "vector_stores")
    assert (vector["cost_usd"], vector["free_quantity"]) == (Decimal("0.2"), 0)
    # The dated override applies from its first day; before, the list price.
    assert one(got, "web_search_calls", "gpt-4o", context_level="medium")["cost_usd"] == 35
    assert (
        one(got, "web_search_calls", "gpt-4o", day=NEXT, context_level="medium")["cost_usd"] == 20
    )

    # Removed from the file: the override rows retire and the defaults price again.
    path.write_text("unit_prices: []\n")
    got = costs(engine, path, end=end)
    assert one(got, "embeddings", "text-embedding-3-small")["cost_usd"] == Decimal("0.02")
    assert (
        one(got, "images", "gpt-image-1", size="1536x1024", source="image.edit")["cost_usd"] is None
    )
    assert one(got, "vector_stores")["cost_usd"] == Decimal("0.1")


def test_bundled_list_names_its_source_and_covers_the_list(engine: Engine) -> None:
    rows = bundled_unit_price_rows()
    assert rows and all(row.note and "https://" in row.note for row in rows)
    assert {row.usage_kind for row in rows} == set(UNIT_KINDS)
    web = {
        (r.model, r.match["context_level"]): r.usd_per_unit * 1000
        for r in rows
        if r.usage_kind == "web_search_calls"
    }
    assert web == {
        ("gpt-4o", "low"): 30,
        ("gpt-4o", "medium"): 35,
        ("gpt-4o", "high"): 50,
        ("gpt-4o-mini", "low"): 25,
        ("gpt-4o-mini", "medium"): Decimal("27.5"),
        ("gpt-4o-mini", "high"): 30,
    }
    genai = {(r.usage_kind, r.model): r.usd_per_unit for r in genai_unit_price_rows()}
    assert genai[("embeddings", "text-embedding-3-small")] == Decimal("0.00000002")
    assert genai[("audio_transcriptions", "whisper-1")] == Decimal("0.006")  # $0.36 an hour
    assert genai[("audio_speeches", "tts-1")] == Decimal("0.000015")


def test_the_package_ships_the_bundled_list() -> None:
    import importlib.resources
    import tomllib

    from usage_assets.settings import PROJECT_ROOT

    assert importlib.resources.files("usage_assets").joinpath("pricing/unit_prices.yaml").is_file()
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["usage_assets"]
    assert "pricing/*.yaml" in data  # a non-editable install (wheel) has it too


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{usage_kind: images, model: dall-e-3, usd_per_unit: x}", "is not a number"),
        ("{usage_kind: pictures, usd_per_unit: 1}", "usage_kind='pictures'"),
        ("{usage_kind: completions, usd_per_unit: 1}", "priced per token"),
        ("{usage_kind: images, colour: red, usd_per_unit: 1}", "unknown keys"),
        ("{usage_kind: images, context_level: low, usd_per_unit: 1}", "unknown keys"),
        ("{usage_kind: images, unit: tokens, usd_per_unit: 1}", "priced per images"),
        ("{usage_kind: images}", "exactly one of"),
        ("{usage_kind: images, usd_per_unit: 1, usd_per_1k: 2}", "exactly one of"),
        ("{usage_kind: vector_stores, model: x, usd_per_unit: 1}", "has no model"),
        ("{usage_kind: images, usd_per_unit: -1}", "non-negative"),
        ("{usage_kind: images, usd_per_unit: 1, effective_from: 2025-02-30}", "YYYY-MM-DD"),
    ],
)
def test_bad_unit_prices_name_the_problem(tmp_path: Path, entry: str, message: str) -> None:
    path = write(tmp_path, f"unit_prices:\n  - {entry}\n")
    with pytest.raises(ConfigurationError, match=message):
        load_override_unit_prices(path)
    with pytest.raises(ConfigurationError, match=message):
        load_overrides(path)  # USAGE_PRICE_OVERRIDES validation reads the whole file


def test_unit_price_file_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="repeats"):
        load_override_unit_prices(
            write(
                tmp_path,
                "unit_prices:\n"
                "  - {usage_kind: images, model: x, usd_per_unit: 1}\n"
                "  - {usage_kind: images, model: x, usd_per_1k: 2}\n",
            )
        )
    with pytest.raises(ConfigurationError, match="unknown top-level keys"):
        load_overrides(write(tmp_path, "unit_price: []\n"))
    [row] = load_override_unit_prices(
        write(
            tmp_path,
            "prices: []\nunit_prices:\n"
            "  - {usage_kind: images, model: dall-e-3, size: 1024x1024, usd_per_1k: 40}\n",
        )
    )
    assert (row.usd_per_unit, row.match, row.source, row.unit) == (
        Decimal("0.04"),
        {"size": "1024x1024"},
        "override",
        "images",
    )


def test_summary_sums_every_kind(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.completions_usage_hourly (bucket_start, bucket_end, project_id, "
                "model, batch, service_tier, input_tokens, output_tokens, num_model_requests, "
                "input_text_tokens, output_text_tokens, result) VALUES ('2025-11-20 10:00+00', "
                "'2025-11-20 11:00+00', 'p', 'gpt-4o-mini-2024-07-18', false, 'default', "
                "1000000, 0, 5, 1000000, 0, '{}')"
            )
        )
    usage(
        engine,
        "code_interpreter_sessions",
        {"project_id": "p", "num_sessions": 10},
        {"project_id": "q", "num_sessions": 1},
    )
    usage(engine, "file_search_calls", {"project_id": "p", "num_requests": 2_000})
    price_usage(engine, DAY, NEXT, PricingInputs(None))
    price_unit_usage(engine, DAY, NEXT, PricingInputs(None))
    summarize_costs(engine, DAY, NEXT)
    with engine.connect() as conn:
        rows = {
            r["project_id"]: r
            for r in conn.execute(
                text(
                    "SELECT project_id, cost_usd, cost_by_kind, input_tokens, models, "
                    f"unpriced_usage_rows FROM {S}.v_project_daily_cost"
                )
            ).mappings()
        }
        kinds = (
            conn.execute(text(f"SELECT usage_kind FROM {S}.project_daily_costs")).scalars().all()
        )
        by_view = conn.execute(
            text(
                f"SELECT usage_kind, sum(cost_usd) FROM {S}.v_usage_daily_cost "
                "GROUP BY 1 ORDER BY 1"
            )
        ).all()
    assert kinds == ["completions"]
    # gpt-4o-mini $0.15 + 10 sessions $0.30 + 2,000 file searches $5.
    assert rows["p"]["cost_usd"] == Decimal("5.45")
    assert rows["p"]["cost_by_kind"] == {
        "completions": 0.15,
        "code_interpreter_sessions": 0.3,
        "file_search_calls": 5,
    }
    assert (rows["p"]["input_tokens"], rows["p"]["models"], rows["p"]["unpriced_usage_rows"]) == (
        1_000_000,
        1,
        0,
    )
    assert rows["q"]["cost_usd"] == Decimal("0.03") and rows["q"]["input_tokens"] == 0
    assert [tuple(r) for r in by_view] == [
        ("code_interpreter_sessions", Decimal("0.33")),
        ("completions", Decimal("0.15")),
        ("file_search_calls", Decimal(5)),
    ]


def test_recompute_costs_reprices_every_kind(engine: Engine) -> None:
    usage(engine, "audio_speeches", {"project_id": "p", "model": "tts-1", "characters": 1_000_000})
    result = recompute_costs(engine, DAY, NEXT)
    assert result.days == [DAY] and result.cost_after_usd == Decimal(15)
    with engine.connect() as conn:
        assert conn.execute(
            text(f"SELECT cost_usd FROM {S}.project_daily_cost_summary")
        ).scalar_one() == Decimal(15)


# ---------------------------------------------------------------------------- reconciliation


@pytest.mark.parametrize(
    ("line_item", "unit", "family"),
    [
        # The simulator's spellings.
        ("text-embedding-3-small, input", "tokens", "embeddings"),
        ("dall-e-3, 1024x1024", "images", "images"),
        ("tts-1, characters", "characters", "audio_speeches"),
        ("whisper-1, duration", "duration_seconds", "audio_transcriptions"),
        ("vector store storage", "gibibyte_hours", "vector_stores"),
        ("code interpreter sessions", "sessions", "code_interpreter_sessions"),
        ("file search tool calls", "calls", "file_search_calls"),
        ("web search tool calls, gpt-4o-2024-08-06, medium", "calls", "web_search_calls"),
        # Completions token kinds.
        ("gpt-4o-2024-08-06, input", "tokens", "completions"),
        ("gpt-4o-mini-2024-07-18, cached input", "tokens", "completions"),
        ("gpt-5, cache writes - 12hr", "tokens", "completions"),
        ("ft:gpt-4o-mini:acme:a, b::x, output", None, "completions"),
        ("gpt-4o-audio-preview, audio input", "1000_tokens", "completions"),
        # Other spellings the real API may use: by unit first, then keywords.
        ("Image generation", None, "images"),
        ("gpt-image-1, image generation", "tokens", "images"),
        ("DALL-E 2, 512x512", None, "images"),
        ("Text-to-speech (TTS-1 HD)", None, "audio_speeches"),
        ("gpt-4o-mini-tts, input", "tokens", "audio_speeches"),
        ("Audio transcription", "duration_minutes", "audio_transcriptions"),
        ("Whisper", None, "audio_transcriptions"),
        ("Code Interpreter", "duration_hours", "code_interpreter_sessions"),
        ("Assistants Code Interpreter sessions", None, "code_interpreter_sessions"),
        ("File search storage", "gibibyte_hours", "vector_stores"),
        ("Storage", None, "vector_stores"),
        ("Vector Store Storage", None, "vector_stores"),
        ("Web Search", None, "web_search_calls"),
        ("o3-deep-research, web search", "calls", "web_search_calls"),
        ("File Search", "calls", "file_search_calls"),
        ("text-embedding-ada-002-v2", None, "embeddings"),
        ("omni-moderation-latest, input", "tokens", "moderations"),
        ("anything, at all", "characters", "audio_speeches"),  # the unit says so
        # Unknown: kept, as 'other'.
        ("Fine-tuning training", None, "other"),
        ("gpt-4o, training", "tokens", "other"),
        ("", None, "other"),
        (None, None, "other"),
        ("gpt-4o,input", None, "other"),
    ],
)
def test_line_item_family(
    engine: Engine, line_item: str | None, unit: str | None, family: str
) -> None:
    with engine.connect() as conn:
        got = conn.execute(
            text(f"SELECT {S}.line_item_family(:line_item, :unit)"),
            {"line_item": line_item, "unit": unit},
        ).scalar_one()
    assert got == family


def bill(
    engine: Engine,
    project: str | None,
    line_item: str,
    amount: str,
    unit: str | None = None,
    day: dt.date = DAY,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.costs_daily (usage_date, project_id, line_item, "
                "line_item_model, line_item_kind, amount_usd, currency, quantity_unit, result) "
                "VALUES (:day, :project, :line_item, NULL, NULL, :amount, 'usd', :unit, '{}')"
            ),
            {
                "day": day,
                "project": project,
                "line_item": line_item,
                "amount": Decimal(amount),
                "unit": unit,
            },
        )


def reconciliation_day(engine: Engine) -> None:
    """Project p: embeddings, images and web search billed as estimated except images (billed
    $0.05 more); project q: vector storage and a line item nobody estimates."""
    usage(
        engine,
        "embeddings",
        {"project_id": "p", "model": "text-embedding-3-small", "input_tokens": 10_000_000},
    )
    usage(
        engine,
        "images",
        {
            "project_id": "p",
            "model": "dall-e-3",
            "size": "1024x1024",
            "source": "image.generation",
            "images": 10,
        },
    )
    usage(
        engine,
        "web_search_calls",
        {
            "project_id": "p",
            "model": "gpt-4o-2024-08-06",
            "context_level": "medium",
            "num_requests": 100,
        },
    )
    usage(
        engine,
        "vector_stores",
        *({"project_id": "q", "usage_bytes": 3 * GIB, "hour": h} for h in range(24)),
    )
    bill(engine, "p", "text-embedding-3-small, input", "0.2", "tokens")
    bill(engine, "p", "dall-e-3, 1024x1024", "0.45", "images")
    bill(engine, "p", "web search tool calls, gpt-4o-2024-08-06, medium", "3.5", "calls")
    bill(engine, "q", "vector store storage", "0.2", "gibibyte_hours")
    bill(engine, "q", "Fine-tuning training", "7")
    price_unit_usage(engine, DAY, NEXT, PricingInputs(None))
    summarize_costs(engine, DAY, NEXT)


def test_reconciliation_per_project_and_family(engine: Engine) -> None:
    reconciliation_day(engine)
    result = reconcile(engine, DAY, NEXT, 0.02)
    projects = {g.project_id: (g.estimated_usd, g.billed_usd) for g in result.projects}
    assert projects == {
        "p": (Decimal("4.1"), Decimal("4.15")),
        "q": (Decimal("0.2"), Decimal("7.2")),
    }
    assert {g.project_id for g in result.failing_projects} == {"q"}  # p: 1.2% off
    families = {(g.project_id, g.what): (g.estimated_usd, g.billed_usd) for g in result.families}
    assert families == {
        ("p", "embeddings"): (Decimal("0.2"), Decimal("0.2")),
        ("p", "images"): (Decimal("0.4"), Decimal("0.45")),
        ("p", "web_search_calls"): (Decimal("3.5"), Decimal("3.5")),
        ("q", "vector_stores"): (Decimal("0.2"), Decimal("0.2")),
        ("q", "other"): (Decimal(0), Decimal(7)),
    }
    totals = [(g.what, g.difference_usd) for g in result.family_totals()]
    assert totals == [
        ("embeddings", 0),
        ("images", Decimal("-0.05")),
        ("vector_stores", 0),
        ("web_search_calls", 0),
        ("other", -7),
    ]
    assert result.line_items == []  # no completions, and nothing else compared by token kind
    with engine.connect() as conn:
        view = {
            (r.project_id, r.family): (r.estimated_usd, r.billed_usd, r.difference_usd)
            for r in conn.execute(text(f"SELECT * FROM {S}.v_reconciliation_daily"))
        }
        vs_billed = dict(
            conn.execute(
                text(f"SELECT project_id, difference_usd FROM {S}.v_estimated_vs_billed")
            ).all()
        )
    assert view[("p", "images")] == (Decimal("0.4"), Decimal("0.45"), Decimal("-0.05"))
    assert view[("q", "other")] == (0, 7, -7)
    assert len(view) == 5
    assert vs_billed == {"p": Decimal("-0.05"), "q": Decimal(-7)}


def test_estimated_matches_billed_reports_per_family(engine: Engine) -> None:
    from usage_assets.defs.attribution.checks import reconciliation_result

    reconciliation_day(engine)
    evaluation = reconciliation_result(engine, DAY, NEXT, 0.02)
    assert not evaluation.passed  # q's unknown $7 line item
    metadata = evaluation.metadata
    families = str(metadata["families"].value)
    for family in ("embeddings", "images", "vector_stores", "web_search_calls", "other"):
        assert family in families
    assert "$-0.0500" in families
    assert metadata["projects_outside_tolerance"].value == 1
    assert metadata["billed_other_usd"].value == 7.0
    assert "other" in str(metadata["worst_project_families"].value)


def test_unit_costs_asset_runs_its_checks(engine: Engine, database_url: str) -> None:
    from usage_assets.defs.attribution.assets import usage_daily_costs
    from usage_assets.defs.resources import PricingResource, UsageDatabase

    usage(
        engine,
        "images",
        {
            "project_id": "p",
            "model": "gpt-image-1",
            "size": "1024x1024",
            "source": "image.generation",
            "images": 2,
        },
    )
    usage(engine, "code_interpreter_sessions", {"project_id": "p", "num_sessions": 3})
    result = dg.materialize(
        [usage_daily_costs],
        partition_key=DAY.isoformat(),
        resources={"usage_db": UsageDatabase(url=database_url), "pricing": PricingResource()},
    )
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["quantities_match_usage"].passed
    assert checks["no_negative_values"].passed
    assert not checks["all_usage_priced"].passed
    assert "gpt-image-1" in str(checks["all_usage_priced"].metadata["unpriced"].value)
    [materialization] = result.asset_materializations_for_node("usage_daily_costs")
    assert materialization.metadata["cost_usd"].value == pytest.approx(0.09)
    assert materialization.metadata["unpriced_rows"].value == 1
    # Usage lost between the usage table and the cost rows fails the quantity check.
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {S}.usage_daily_costs SET quantity = quantity - 1"))
    assert unit_quantity_mismatches(engine, DAY, NEXT) == [
        ("images", Decimal(1), Decimal(2)),
        ("code_interpreter_sessions", Decimal(2), Decimal(3)),
    ]


# ---------------------------------------------------------------------------- migration 0008


@pytest.fixture
def fresh_url(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


def _view_columns(engine: Engine, view: str) -> list[str]:
    return [c["name"] for c in inspect(engine).get_columns(view, S)]


@pytest.mark.parametrize("server_version", [None, (14, 13)], ids=["pg15+", "pg14-fallback"])
def test_migration_0008_up_and_down(fresh_url: str, server_version: tuple[int, int] | None) -> None:
    """Stored cost rows become completions; the summary's cost by kind is their cost; the
    downgrade takes the summary back to completions only and restores 0002's views."""
    engine = engine_for(fresh_url)
    with engine.connect():
        pass
    real = engine.dialect.server_version_info
    if server_version is not None:
        engine.dialect.server_version_info = server_version
    try:
        migrate(fresh_url, "0007")
        before = _view_columns(engine, "v_project_daily_cost")
        vs_billed = _view_columns(engine, "v_estimated_vs_billed")
        kinds = ", ".join(
            f"{k}" for k in ("input_text_uncached_tokens", "input_text_cached_tokens",
                             "input_cache_write_tokens", "input_cache_write_30m_tokens",
                             "input_cache_write_12h_tokens", "input_audio_uncached_tokens",
                             "input_audio_cached_tokens", "input_image_uncached_tokens",
                             "input_image_cached_tokens", "output_text_tokens",
                             "output_audio_tokens", "output_image_tokens")
        )  # fmt: skip
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {S}.project_daily_costs (usage_date, project_id, model, "
                    f"input_tokens, output_tokens, num_model_requests, {kinds}, "
                    "breakdown_fallback, cost_usd) VALUES ('2025-11-20', 'p', 'gpt-4o', 1, 0, 1, "
                    f"{', '.join(['0'] * 12)}, false, 1.5)"
                )
            )
            conn.execute(
                text(
                    f"INSERT INTO {S}.project_daily_cost_summary (usage_date, project_id, "
                    "cost_usd, unpriced_tokens, input_tokens, output_tokens, num_model_requests, "
                    "models) VALUES ('2025-11-20', 'p', 1.5, 0, 1, 0, 1, 1)"
                )
            )
        migrate(fresh_url, "0008")  # (0010 adds organization to the views)
        with engine.connect() as conn:
            assert (
                conn.execute(text(f"SELECT usage_kind FROM {S}.project_daily_costs")).scalar_one()
                == "completions"
            )
            summary = conn.execute(
                text(
                    f"SELECT cost_by_kind, unpriced_usage_rows FROM {S}.project_daily_cost_summary"
                )
            ).one()
            assert tuple(summary) == ({"completions": 1.5}, 0)
            conn.execute(text("SET ROLE usage_readonly"))  # new objects granted to the BI role
            for name in (
                "v_reconciliation_daily",
                "v_usage_daily_cost",
                "unit_prices",
                "usage_daily_costs",
                "v_project_daily_cost",
                "v_estimated_vs_billed",
            ):
                conn.execute(text(f"SELECT * FROM {S}.{name}")).all()
            conn.execute(text("RESET ROLE"))
        assert _view_columns(engine, "v_project_daily_cost") == [
            *before, "unpriced_usage_rows", "cost_by_kind",
        ]  # fmt: skip
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {S}.usage_daily_costs (usage_date, project_id, usage_kind, "
                    "model, detail, quantity, unit, free_quantity, cost_usd) VALUES "
                    "('2025-11-20', 'p', 'images', 'dall-e-3', '{}', 1, 'images', 0, 0.5)"
                )
            )
            conn.execute(
                text(
                    f"UPDATE {S}.project_daily_cost_summary SET cost_usd = 2.0, "
                    """cost_by_kind = '{"completions": 1.5, "images": 0.5}'"""
                )
            )
        with (
            pytest.raises(IntegrityError, match="uq_usage_daily_costs_grain"),
            engine.begin() as conn,
        ):
            conn.execute(
                text(
                    f"INSERT INTO {S}.usage_daily_costs (usage_date, project_id, usage_kind, "
                    "model, detail, quantity, unit, free_quantity) VALUES "
                    "('2025-11-20', 'p', 'images', 'dall-e-3', '{}', 1, 'images', 0)"
                )
            )
        command.downgrade(alembic_config(fresh_url), "0007")
        tables = set(inspect(engine).get_table_names(schema=S))
        assert not {"unit_prices", "usage_daily_costs"} & tables
        assert _view_columns(engine, "v_project_daily_cost") == before
        assert _view_columns(engine, "v_estimated_vs_billed") == vs_billed
        with engine.connect() as conn:
            assert conn.execute(
                text(f"SELECT cost_usd FROM {S}.project_daily_cost_summary")
            ).scalar_one() == Decimal("1.5")
            functions = conn.execute(
                text(
                    "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = "
                    "p.pronamespace WHERE n.nspname = :s AND p.proname IN ('line_item_family', "
                    "'unit_price_for', 'base_model')"
                ),
                {"s": S},
            ).all()
            assert functions == []
        migrate(fresh_url)
    finally:
        engine.dialect.server_version_info = real
    if server_version is None:  # (the PostgreSQL 14 indexes are not the models' constraints)
        command.check(alembic_config(fresh_url))


# ---------------------------------------------------------------------------- migration 0023

ROLLUP = (
    f"SELECT usage_date, usage_kind, project_id, api_key_id, user_id, model, detail, quantity, "
    f"num_model_requests FROM {S}.unit_usage_daily "
    "ORDER BY usage_date, usage_kind, project_id, api_key_id NULLS FIRST, user_id NULLS FIRST, "
    "model, detail::text"
)


def _rollup(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(ROLLUP))]


def test_the_daily_unit_rollup_follows_the_hours_and_0023_refills_it(fresh_url: str) -> None:
    """unit_usage_daily (what the estimate and the allocation read) holds each priced day's
    hours summed per kind, key, user, model and priced dimensions, in the endpoint's own unit;
    pricing again does not double it; the estimate priced from it is the hours' usage; down to
    0022 and up again refills it for the days priced only."""
    migrate(fresh_url)
    engine = engine_for(fresh_url)
    for day in (DAY, NEXT):
        usage(
            engine, "audio_transcriptions",
            {"project_id": "p", "api_key_id": "k1", "model": "whisper-1", "seconds": 90,
             "num_model_requests": 2},
            {"project_id": "p", "api_key_id": "k1", "model": "whisper-1", "seconds": 30,
             "num_model_requests": 1, "hour": 11},
            {"project_id": "p", "api_key_id": "k2", "user_id": "u", "model": "whisper-1",
             "seconds": 100, "num_model_requests": 1, "hour": 12},
            day=day,
        )  # fmt: skip
        usage(
            engine, "images",
            {"project_id": "p", "api_key_id": "k1", "model": "dall-e-3", "size": "1024x1024",
             "source": "image.generation", "images": 3},
            {"project_id": "p", "api_key_id": "k1", "model": "dall-e-3", "size": "1024x1024",
             "source": "image.generation", "images": 4, "hour": 13},
            {"project_id": "p", "api_key_id": "k1", "model": "dall-e-3", "size": "1792x1024",
             "source": "image.generation", "images": 2},
            day=day,
        )  # fmt: skip
        usage(engine, "code_interpreter_sessions", {"project_id": "q", "num_sessions": 7}, day=day)
        for hour in range(12):
            usage(engine, "vector_stores", {"project_id": "q", "usage_bytes": 2 * GIB,
                                            "hour": hour}, day=day)  # fmt: skip
    inputs = PricingInputs(None)
    price_unit_usage(engine, DAY, NEXT, inputs)
    price_unit_usage(engine, DAY, NEXT, inputs)  # again: replaced, not doubled
    big, wide = (
        {"size": "1024x1024", "source": "image.generation"},
        {
            "size": "1792x1024",
            "source": "image.generation",
        },
    )
    written = _rollup(engine)
    assert written == [
        (DAY, "audio_transcriptions", "p", "k1", None, "whisper-1", {}, 120, 3),
        (DAY, "audio_transcriptions", "p", "k2", "u", "whisper-1", {}, 100, 1),
        (DAY, "code_interpreter_sessions", "q", None, None, None, {}, 7, None),
        (DAY, "images", "p", "k1", None, "dall-e-3", big, 7, 0),
        (DAY, "images", "p", "k1", None, "dall-e-3", wide, 2, 0),
        (DAY, "vector_stores", "q", None, None, None, {}, Decimal("1"), None),
    ]
    assert unit_quantity_mismatches(engine, DAY, NEXT) == []
    with engine.connect() as conn:
        minutes = conn.execute(
            text(
                f"SELECT quantity FROM {S}.usage_daily_costs "
                "WHERE usage_kind = 'audio_transcriptions'"
            )
        ).scalar_one()
    assert abs(minutes - Decimal(220) / 60) < Decimal("1e-15")  # 220 s in minutes
    command.downgrade(alembic_config(fresh_url), "0022")
    assert "unit_usage_daily" not in inspect(engine).get_table_names(schema=S)
    migrate(fresh_url)
    assert _rollup(engine) == written
