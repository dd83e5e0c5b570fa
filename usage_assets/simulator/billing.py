"""Billed costs of the simulated organization: `GET /v1/organization/costs`.

The bill is consistent with the synthetic usage (`SyntheticOrganization.hour_results`): for each
UTC day, project and model there is one line item per token kind (`"<model>, input"`,
`"<model>, cached input"`, `"<model>, cache writes"`, `"<model>, cache writes - 12hr"`,
`"<model>, output"`) with tokens, priced at genai-prices' rates for the usage's service tier
(its flex/priority variant, else OpenAI's usual tier factor), batch usage at half price, and
audio tokens at a flat $40/M in and $80/M out. Cache writes are billed once per retention:
`input_cache_write_tokens` is their total, so the 30-minute part ("cache writes") is the 30m
field, or the total minus the 12-hour part ("cache writes - 12hr") where the field is absent.
Each line item then gets a deterministic noise of at most ±0.5%, so the bill is close to, but
not exactly, an estimate.

Amounts go out as JSON numbers for some line items and as decimal strings for others (both are
seen from the real API), chosen by a stable hash: the same request always gets the same body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

from usage_assets.admin_api import (
    COSTS_BUCKET_LIMITS,
    COSTS_GROUP_BY_FIELDS,
    COSTS_PATH,
    COSTS_RESULT_OBJECT,
    DAY_SECONDS,
)
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import (
    ApiError,
    _array_param,
    _decode_cursor,
    _encode_cursor,
    _int_param,
    _limit_param,
)

__all__ = ["COSTS_PATH", "BilledLineItem", "billed_line_items", "costs"]

AUDIO_INPUT_MTOK = Decimal(40)
AUDIO_OUTPUT_MTOK = Decimal(80)
BATCH_FACTOR = Decimal("0.5")
#: Largest relative deviation of a billed line item from its priced usage.
NOISE = Decimal("0.005")
#: Digits kept in a billed amount (decimal strings keep all of them; numbers what a float can).
AMOUNT_QUANTUM = Decimal("1e-16")
MILLION = Decimal(1_000_000)
KINDS = ("input", "cached input", "cache writes", "cache writes - 12hr", "output")


@dataclass(frozen=True)
class Rates:
    """USD per million tokens of each kind, for one model, day and service tier."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    cache_write_12h: Decimal
    output: Decimal


def _rate(prices: Any, name: str) -> Decimal | None:
    value = getattr(prices, name, None)
    if isinstance(value, TieredPrices):
        return value.base
    return value if isinstance(value, Decimal) else None


#: Where genai-prices has no variant for a tier, the bill applies OpenAI's usual tier factor.
TIER_FACTORS = {"flex": Decimal("0.5"), "priority": Decimal("1.75")}
#: genai-prices dates its tier variants from when it recorded them; the synthetic bill applies
#: a model's tier rates on every day, so variants are looked up as of this date.
TIER_RATES_AS_OF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@cache
def rates_for(model: str, day: dt.date, tier: str = "default") -> Rates:
    """genai-prices' rates for `model` on `day` in `tier` (dated snapshots share their model's)."""
    _, info = data_snapshot.get_snapshot().find_provider_model(model, None, "openai", None)
    when = dt.datetime.combine(day, dt.time(12), dt.UTC)
    prices = info.get_prices(when)
    factor = Decimal(1)
    if tier in TIER_FACTORS:
        variant = info.get_prices(max(when, TIER_RATES_AS_OF), price_context={"service_tier": tier})
        base_now = info.get_prices(max(when, TIER_RATES_AS_OF))
        if variant != base_now:
            prices = variant
        else:
            factor = TIER_FACTORS[tier]
    input_rate = _rate(prices, "input_mtok")
    output_rate = _rate(prices, "output_mtok")
    if input_rate is None or output_rate is None:
        raise LookupError(f"genai-prices has no input/output rate for {model} on {day}")
    cache_write = _rate(prices, "cache_write_mtok") or input_rate
    return Rates(
        input=input_rate * factor,
        cached_input=(_rate(prices, "cache_read_mtok") or input_rate) * factor,
        cache_write=cache_write * factor,
        cache_write_12h=(_rate(prices, "cache_write_12h_mtok") or cache_write) * factor,
        output=output_rate * factor,
    )


def _priced_kinds(result: dict[str, Any], rates: Rates) -> dict[str, tuple[int, Decimal]]:
    """(tokens, USD before any batch discount) of each token kind in one usage result.

    Works for both modern results and older ones without the breakdown fields.
    """
    cached = result.get("input_cached_tokens") or 0
    cached_audio = result.get("input_cached_audio_tokens") or 0
    cache_write_total = result.get("input_cache_write_tokens") or 0
    cache_write_12h = result.get("input_cache_write_12h_tokens") or 0
    cache_write = result.get("input_cache_write_30m_tokens")
    if cache_write is None:  # older responses: the total and its 12-hour part only
        cache_write = cache_write_total - cache_write_12h
    audio_in = result.get("input_audio_tokens") or 0
    audio_out = result.get("output_audio_tokens") or 0
    other_in = result["input_tokens"] - cached - cache_write - cache_write_12h - audio_in
    other_out = result["output_tokens"] - audio_out
    return {
        "input": (
            other_in + audio_in,
            other_in * rates.input + audio_in * AUDIO_INPUT_MTOK,
        ),
        "cached input": (
            cached,
            (cached - cached_audio) * rates.cached_input + cached_audio * AUDIO_INPUT_MTOK,
        ),
        "cache writes": (cache_write, cache_write * rates.cache_write),
        "cache writes - 12hr": (cache_write_12h, cache_write_12h * rates.cache_write_12h),
        "output": (
            other_out + audio_out,
            other_out * rates.output + audio_out * AUDIO_OUTPUT_MTOK,
        ),
    }


def _unit(*parts: object) -> Decimal:
    """A stable pseudo-random number in [0, 1) for `parts` (no dependence on hash seeds)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)


def _as_string(seed: int, day: dt.date, *key: object) -> bool:
    return _unit(seed, day, *key, "form") < Decimal("0.5")


def _wire(amount: Decimal, as_string: bool) -> tuple[Decimal, Any]:
    """(the exact amount the body carries, the JSON value that carries it)."""
    if as_string:
        return amount, format(amount, "f")
    number = float(amount)
    return Decimal(repr(number)), number


@dataclass(frozen=True)
class BilledLineItem:
    project_id: str | None
    line_item: str
    #: Exactly the amount the response carries (a float's shortest repr, or the string).
    amount: Decimal
    value: Any  # the JSON value: a float or a decimal string


def billed_line_items(org: SyntheticOrganization, day: dt.date) -> list[BilledLineItem]:
    """The day's bill per project and line item, sorted; before any override."""
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    totals: dict[tuple[str | None, str, str], list[Any]] = {}
    for hour in range(start, start + DAY_SECONDS, 3600):
        for result in org.hour_results(hour):
            model = result["model"]
            factor = BATCH_FACTOR if result["batch"] else Decimal(1)
            tier = result["service_tier"] or "default"
            kinds = _priced_kinds(result, rates_for(model, day, tier))
            for kind, (tokens, usd) in kinds.items():
                acc = totals.setdefault((result["project_id"], model, kind), [0, Decimal(0)])
                acc[0] += tokens
                acc[1] += usd * factor / MILLION
    items = []
    for (project_id, model, kind), (tokens, usd) in totals.items():
        if tokens <= 0:
            continue
        line_item = f"{model}, {kind}"
        noise = 1 + NOISE * (2 * _unit(org.seed, day, project_id, line_item) - 1)
        billed = (usd * noise).quantize(AMOUNT_QUANTUM)
        amount, value = _wire(billed, _as_string(org.seed, day, project_id, line_item))
        items.append(BilledLineItem(project_id, line_item, amount, value))
    items.sort(key=lambda item: (item.project_id or "", item.line_item))
    return items


def _result(project_id: str | None, line_item: str | None, amount: Any) -> dict[str, Any]:
    return {
        "object": COSTS_RESULT_OBJECT,
        "amount": amount,
        "line_item": line_item,
        "project_id": project_id,
    }


def _day_results(
    org: SyntheticOrganization, day: dt.date, group_by: list[str], project_ids: set[str]
) -> list[dict[str, Any]]:
    items = [
        item
        for item in billed_line_items(org, day)
        if not project_ids or item.project_id in project_ids
    ]
    if set(group_by) == set(COSTS_GROUP_BY_FIELDS):
        amounts: dict[tuple[str | None, str | None], Any] = {
            (item.project_id, item.line_item): {"value": item.value, "currency": "usd"}
            for item in items
        }
        for (when, project_id, line_item), amount in org.billed_amount_overrides.items():
            if when == day.isoformat() and (not project_ids or project_id in project_ids):
                amounts[(project_id, line_item)] = amount
        return [_result(p, li, amount) for (p, li), amount in amounts.items()]
    sums: dict[tuple[str | None, str | None], Decimal] = {}
    for item in items:
        key = (
            item.project_id if "project_id" in group_by else None,
            item.line_item if "line_item" in group_by else None,
        )
        sums[key] = sums.get(key, Decimal(0)) + item.amount
    results = []
    for (project_id, line_item), total in sums.items():
        _, value = _wire(total, _as_string(org.seed, day, project_id, line_item))
        results.append(_result(project_id, line_item, {"value": value, "currency": "usd"}))
    return results


def _group_by(query: dict[str, list[str]]) -> list[str]:
    group_by = _array_param(query, "group_by")
    for name in group_by:
        if name not in COSTS_GROUP_BY_FIELDS:
            raise ApiError(
                400,
                f"Invalid group_by field '{name}'. Supported: project_id, line_item.",
                param="group_by",
            )
    return group_by


def costs(org: SyntheticOrganization, query: dict[str, list[str]]) -> dict[str, Any]:
    """`GET /v1/organization/costs`, with the real endpoint's validation, limits and paging."""
    start = _int_param(query, "start_time", required=True)
    assert start is not None
    width = query.get("bucket_width", ["1d"])[-1]
    if width != "1d":
        raise ApiError(400, f"Invalid bucket_width '{width}'. Supported: 1d.", param="bucket_width")
    limit = _limit_param(query, COSTS_BUCKET_LIMITS)
    end = _int_param(query, "end_time")
    if end is None:
        end = int(time.time())
    if end <= start:
        raise ApiError(400, "end_time must be greater than start_time.", param="end_time")
    group_by = _group_by(query)
    project_ids = set(_array_param(query, "project_ids"))

    first = start - start % DAY_SECONDS
    bucket_start = first
    if query.get("page"):
        bucket_start, _ = _decode_cursor(query["page"][-1])
        if bucket_start < first or bucket_start >= end or bucket_start % DAY_SECONDS:
            raise ApiError(400, "Page cursor does not belong to this query.", param="page")
    data: list[dict[str, Any]] = []
    while bucket_start < end and len(data) < limit:
        day = dt.datetime.fromtimestamp(bucket_start, dt.UTC).date()
        data.append(
            {
                "object": "bucket",
                "start_time": bucket_start,
                "end_time": bucket_start + DAY_SECONDS,
                "results": _day_results(org, day, group_by, project_ids),
            }
        )
        bucket_start += DAY_SECONDS
    next_page = _encode_cursor(bucket_start, 0) if bucket_start < end else None
    return {
        "object": "page",
        "data": data,
        "has_more": next_page is not None,
        "next_page": next_page,
    }
