"""Property-based tests: the row normalizer and the pricing rules, on generated inputs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from usage_assets.admin_api.rows import normalize_result
from usage_assets.admin_api.usage import UsageBucket
from usage_assets.errors import PayloadError
from usage_assets.pricing.prices import RATE_FIELDS
from usage_assets.warehouse.models import (
    DIMENSIONS,
    OPTIONAL_METRICS,
    REQUIRED_METRICS,
    USAGE_COPY_COLUMNS,
)

from .results import as_served, kept, whole_result

BUCKET = UsageBucket(1_763_596_800, 1_763_600_400, [])
counts = st.integers(min_value=0, max_value=10**15)
#: Text PostgreSQL can store: no NUL (refused in a dimension, rewritten in an unknown field; see
#: the properties below) and no lone surrogate (no UTF-8 form).
storable_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20
)
names = st.one_of(st.none(), storable_text)


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
    extra = draw(st.dictionaries(storable_text, st.integers(), max_size=3))
    result.update({f"x_{key}": value for key, value in extra.items()})
    return result


@given(results())
def test_a_valid_result_round_trips(result: dict[str, Any]) -> None:
    row = dict(zip(USAGE_COPY_COLUMNS, normalize_result(result, BUCKET, 0), strict=True))
    for name in (*DIMENSIONS, *REQUIRED_METRICS, *OPTIONAL_METRICS):
        assert row[name] == result.get(name)
    # every field, known or not, is kept: in its column, or else in `result`
    assert whole_result(row) == as_served(result)
    assert kept(row) == {k: v for k, v in result.items() if k.startswith("x_")}
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


@given(
    results(),
    st.sampled_from([d for d in DIMENSIONS if d != "batch"]),
    st.text(max_size=5),
    st.text(max_size=5),
)
def test_a_nul_in_a_dimension_is_refused_by_name(
    result: dict[str, Any], field: str, before: str, after: str
) -> None:
    result[field] = f"{before}\x00{after}"
    with pytest.raises(PayloadError, match=f"{field}=.*NUL"):
        normalize_result(result, BUCKET, 0)


@given(results(), st.text(max_size=5), st.text(max_size=5))
def test_a_nul_in_an_unknown_field_is_kept_as_text(
    result: dict[str, Any], before: str, after: str
) -> None:
    result["x_future"] = f"{before}\x00{after}"
    row = dict(zip(USAGE_COPY_COLUMNS, normalize_result(result, BUCKET, 0), strict=True))
    stored = whole_result(row)
    assert stored["x_future"] == result["x_future"].replace("\x00", "\\u0000")
    assert {k: v for k, v in stored.items() if k != "x_future"} == {
        k: v for k, v in as_served(result).items() if k != "x_future"
    }


rates = st.one_of(st.none(), st.decimals(min_value=0, max_value=200, places=4))
KINDS = (
    "text_uncached", "text_cached", "cache_write_30m", "cache_write_12h", "audio_uncached",
    "audio_cached", "image_uncached", "image_cached", "out_text", "out_audio", "out_image",
)  # fmt: skip


def expected_cost(p: dict[str, Decimal | None], t: dict[str, int]) -> Decimal | None:
    """The README's pricing rules, written independently of the SQL."""

    def first(*names: str) -> Decimal | None:
        return next((p[n] for n in names if p[n] is not None), None)

    rules = {
        "text_uncached": first("input_mtok"),
        "text_cached": first("cache_read_mtok", "input_mtok"),
        "cache_write_30m": first("cache_write_mtok", "input_mtok"),
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
        # The per-kind costs (the bill's line items) add up to the total, NULL where it is.
        by_kind_total, any_unpriced = conn.execute(
            text(
                "SELECT sum(k.cost_usd), bool_or(k.cost_usd IS NULL) "
                "FROM openai_usage.model_prices p "
                f"CROSS JOIN LATERAL openai_usage.estimate_cost_by_kind(p, {kinds}) k "
                "WHERE price_id = :id"
            ),
            {**tokens, "id": price_id},
        ).one()
        conn.execute(
            text("DELETE FROM openai_usage.model_prices WHERE price_id = :id"), {"id": price_id}
        )
    expected = expected_cost(prices, tokens)
    assert got == expected
    assert (None if any_unpriced else by_kind_total) == expected


def expected_kinds(row: dict[str, Any]) -> dict[str, int]:
    """The README's token kinds of one hourly row, written independently of the SQL view.

    The API's cache-write total includes the 12-hour part: the 30-minute part is its own field,
    or else the total minus the 12-hour part. Older rows without the modality breakdown: the
    uncached text is what is left of input_tokens after cached, written, audio and image input.
    """

    def n(name: str) -> int:
        value = row.get(name)
        return 0 if value is None else int(value)

    cw_12h = n("input_cache_write_12h_tokens")
    cw_30m = row.get("input_cache_write_30m_tokens")
    if cw_30m is None:
        cw_30m = n("input_cache_write_tokens") - cw_12h
    if row.get("input_text_tokens") is None:
        text_uncached = (
            row["input_tokens"] - n("input_cached_tokens") - cw_30m - cw_12h
            - n("input_audio_tokens") - n("input_image_tokens")
        )  # fmt: skip
    else:
        text_uncached = row["input_text_tokens"]
    if row.get("input_cached_text_tokens") is None:
        text_cached = (
            n("input_cached_tokens") - n("input_cached_audio_tokens")
            - n("input_cached_image_tokens")
        )  # fmt: skip
    else:
        text_cached = row["input_cached_text_tokens"]
    if row.get("output_text_tokens") is None:
        out_text = row["output_tokens"] - n("output_audio_tokens") - n("output_image_tokens")
    else:
        out_text = row["output_text_tokens"]
    return {
        "text_uncached": text_uncached, "text_cached": text_cached,
        "cache_write_30m": cw_30m, "cache_write_12h": cw_12h,
        "audio_uncached": n("input_audio_tokens"), "audio_cached": n("input_cached_audio_tokens"),
        "image_uncached": n("input_image_tokens"), "image_cached": n("input_cached_image_tokens"),
        "out_text": out_text, "out_audio": n("output_audio_tokens"),
        "out_image": n("output_image_tokens"),
    }  # fmt: skip


small = st.integers(min_value=0, max_value=10**7)


@st.composite
def usage_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A self-consistent hourly row as the API reports it: modern (every breakdown, with or
    without the 30-minute field) or older (totals, cached input and cache writes only)."""
    part = {name: draw(small) for name in (
        "text", "audio", "image", "cached_text", "cached_audio", "cached_image", "cw_30m",
        "cw_12h", "out_text", "out_audio", "out_image",
    )}  # fmt: skip
    cached = part["cached_text"] + part["cached_audio"] + part["cached_image"]
    writes = part["cw_30m"] + part["cw_12h"]
    uncached = part["text"] + part["audio"] + part["image"]
    row: dict[str, Any] = {
        "input_tokens": uncached + cached + writes,
        "output_tokens": part["out_text"] + part["out_audio"] + part["out_image"],
        "input_cached_tokens": cached,
        "input_cache_write_tokens": writes,
        "input_cache_write_12h_tokens": part["cw_12h"],
    }
    if draw(st.booleans()):  # modern: every breakdown field
        row |= {
            "input_uncached_tokens": uncached,
            "input_text_tokens": part["text"], "input_audio_tokens": part["audio"],
            "input_image_tokens": part["image"],
            "input_cached_text_tokens": part["cached_text"],
            "input_cached_audio_tokens": part["cached_audio"],
            "input_cached_image_tokens": part["cached_image"],
            "output_text_tokens": part["out_text"], "output_audio_tokens": part["out_audio"],
            "output_image_tokens": part["out_image"],
        }  # fmt: skip
    else:  # older: no modality breakdown; the audio fields existed then
        row |= {"input_audio_tokens": part["audio"], "output_audio_tokens": part["out_audio"]}
        row["output_tokens"] -= part["out_image"]
        row["input_tokens"] -= part["image"] + part["cached_image"]
        row["input_cached_tokens"] -= part["cached_image"]
    if draw(st.booleans()):  # newer responses split the total; older ones leave it out
        row["input_cache_write_30m_tokens"] = part["cw_30m"]
    return row


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(usage_rows(), st.fixed_dictionaries({name: rates for name in RATE_FIELDS}))
def test_usage_row_is_split_into_kinds_and_priced_as_documented(
    engine: Engine, row: dict[str, Any], prices: dict[str, Decimal | None]
) -> None:
    """From a stored hourly row to its cost: the view's kinds add up to input_tokens and
    output_tokens, every cache-write token is in exactly one of its two kinds, and the cost is
    the documented rules' figure."""
    kinds_sql = (
        "input_text_uncached_tokens, input_text_cached_tokens, input_cache_write_30m_tokens, "
        "input_cache_write_12h_tokens, input_audio_uncached_tokens, input_audio_cached_tokens, "
        "input_image_uncached_tokens, input_image_cached_tokens, output_text_tokens, "
        "output_audio_tokens, output_image_tokens"
    )
    metrics = [m for m in (*REQUIRED_METRICS, *OPTIONAL_METRICS) if m != "num_model_requests"]
    columns = ", ".join(RATE_FIELDS)
    with engine.begin() as conn:
        price_id = conn.execute(
            text(
                f"INSERT INTO openai_usage.model_prices (model_ref, service_tier, batch, "
                f"effective_from, source, {columns}) VALUES ('m', 'default', false, "
                f"'2020-01-01', 'property', "
                + ", ".join(f"CAST(:{n} AS numeric)" for n in RATE_FIELDS)
                + ") RETURNING price_id"
            ),
            prices,
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO openai_usage.completions_usage_hourly (bucket_start, bucket_end, "
                f"num_model_requests, result, {', '.join(metrics)}) VALUES "
                "('2025-11-20 10:00+00', '2025-11-20 11:00+00', 1, '{}', "
                + ", ".join(f"CAST(:{m} AS bigint)" for m in metrics)
                + ")"
            ),
            {m: row.get(m) for m in metrics},
        )
        got = conn.execute(
            text(
                f"SELECT {kinds_sql}, input_cache_write_tokens, input_tokens, output_tokens, "
                f"openai_usage.estimate_cost_usd(p, {kinds_sql}) "
                "FROM openai_usage.v_usage_token_kinds, openai_usage.model_prices p "
                "WHERE p.price_id = :price_id"
            ),
            {"price_id": price_id},
        ).one()
        conn.execute(
            text(
                "DELETE FROM openai_usage.completions_usage_hourly "
                "WHERE bucket_start = '2025-11-20 10:00+00'"
            )
        )
        conn.execute(
            text("DELETE FROM openai_usage.model_prices WHERE price_id = :id"), {"id": price_id}
        )
    *kinds, write_total, input_tokens, output_tokens, cost = got
    want = expected_kinds(row)
    assert dict(zip(KINDS, kinds, strict=True)) == want
    input_kinds = [k for k in KINDS if not k.startswith("out_")]
    assert sum(want[k] for k in input_kinds) == input_tokens == row["input_tokens"]
    assert sum(want[k] for k in KINDS if k.startswith("out_")) == output_tokens
    assert write_total == want["cache_write_30m"] + want["cache_write_12h"]
    assert write_total == row["input_cache_write_tokens"]
    assert cost == expected_cost(prices, want)
