"""Property-based tests: the row normalizer and the pricing rules, on generated inputs."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from usage_assets.admin_api import UsageBucket
from usage_assets.errors import PayloadError
from usage_assets.models import DIMENSIONS, OPTIONAL_METRICS, REQUIRED_METRICS, USAGE_COPY_COLUMNS
from usage_assets.normalize import normalize_result
from usage_assets.pricing import RATE_FIELDS

BUCKET = UsageBucket(1_763_596_800, 1_763_600_400, [])
counts = st.integers(min_value=0, max_value=10**15)
names = st.one_of(st.none(), st.text(min_size=1, max_size=20))


@st.composite
def results(draw: st.DrawFn) -> dict[str, Any]:
    result: dict[str, Any] = {"object": "organization.usage.completions.result"}
    for name in DIMENSIONS:
        result[name] = draw(st.one_of(st.none(), st.booleans())) if name == "batch" else draw(names)
    for name in REQUIRED_METRICS:
        result[name] = draw(counts)
    for name in OPTIONAL_METRICS:
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice != "absent":
            result[name] = None if choice == "null" else draw(counts)
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=3))
    result.update({f"x_{key}": value for key, value in extra.items()})
    return result


@given(results())
def test_a_valid_result_round_trips(result: dict[str, Any]) -> None:
    row = dict(zip(USAGE_COPY_COLUMNS, normalize_result(result, BUCKET, 0), strict=True))
    for name in (*DIMENSIONS, *REQUIRED_METRICS, *OPTIONAL_METRICS):
        assert row[name] == result.get(name)
    assert json.loads(row["result"]) == result  # every field, known or not, is kept
    assert row["bucket_start"] == dt.datetime.fromtimestamp(BUCKET.start_time, dt.UTC)


@given(
    results(),
    st.sampled_from([*REQUIRED_METRICS, *OPTIONAL_METRICS]),
    st.one_of(
        st.integers(max_value=-1),
        st.text(max_size=5),
        st.floats(allow_nan=False),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_a_bad_count_is_refused_by_name(result: dict[str, Any], field: str, bad: Any) -> None:
    result[field] = bad
    with pytest.raises(PayloadError, match=field):
        normalize_result(result, BUCKET, 0)


rates = st.one_of(st.none(), st.decimals(min_value=0, max_value=200, places=4))
KINDS = (
    "text_uncached", "text_cached", "cache_write", "cache_write_12h", "audio_uncached",
    "audio_cached", "image_uncached", "image_cached", "out_text", "out_audio", "out_image",
)  # fmt: skip


def expected_cost(p: dict[str, Decimal | None], t: dict[str, int]) -> Decimal | None:
    """The README's pricing rules, written independently of the SQL."""

    def first(*names: str) -> Decimal | None:
        return next((p[n] for n in names if p[n] is not None), None)

    rules = {
        "text_uncached": first("input_mtok"),
        "text_cached": first("cache_read_mtok", "input_mtok"),
        "cache_write": first("cache_write_mtok", "input_mtok"),
        "cache_write_12h": first("cache_write_12h_mtok", "cache_write_mtok", "input_mtok"),
        "audio_uncached": first("input_audio_mtok"),
        "audio_cached": first("cache_audio_read_mtok", "input_audio_mtok"),
        "image_uncached": first("input_image_mtok", "input_mtok"),
        "image_cached": first(
            "cache_image_read_mtok", "cache_read_mtok", "input_image_mtok", "input_mtok"
        ),
        "out_text": first("output_mtok"),
        "out_audio": first("output_audio_mtok"),
        "out_image": first("output_image_mtok", "output_mtok"),
    }
    total = Decimal(0)
    for kind, tokens in t.items():
        if tokens == 0:
            continue
        rate = rules[kind]
        if rate is None:
            return None  # unpriced, never zero
        total += tokens * rate / Decimal(1_000_000)
    return total


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.fixed_dictionaries({name: rates for name in RATE_FIELDS}),
    st.fixed_dictionaries(
        {kind: st.one_of(st.just(0), st.integers(min_value=1, max_value=10**9)) for kind in KINDS}
    ),
)
def test_sql_pricing_matches_the_documented_rules(
    engine: Engine, prices: dict[str, Decimal | None], tokens: dict[str, int]
) -> None:
    columns = ", ".join(RATE_FIELDS)
    placeholders = ", ".join(f"CAST(:{n} AS numeric)" for n in RATE_FIELDS)
    kinds = ", ".join(f"CAST(:{k} AS numeric)" for k in KINDS)
    with engine.begin() as conn:
        price_id = conn.execute(
            text(
                f"INSERT INTO openai_usage.model_prices (model_ref, service_tier, batch, "
                f"effective_from, source, {columns}) VALUES ('m', 'default', false, "
                f"'2020-01-01', 'property', {placeholders}) RETURNING price_id"
            ),
            prices,
        ).scalar_one()
        got = conn.execute(
            text(
                f"SELECT openai_usage.estimate_cost_usd(p, {kinds}) "
                "FROM openai_usage.model_prices p WHERE price_id = :id"
            ),
            {**tokens, "id": price_id},
        ).scalar_one()
        conn.execute(
            text("DELETE FROM openai_usage.model_prices WHERE price_id = :id"), {"id": price_id}
        )
    assert got == expected_cost(prices, tokens)
