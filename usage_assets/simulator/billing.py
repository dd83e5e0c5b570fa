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

Every documented `group_by` field is served (project_id, line_item, api_key_id, user_id,
api_source). Grouped by API key, user or API source, the bill is split by the key, user and
source of the usage it bills, each part with its line item's noise (so the parts add up to the
line item, up to rounding). Grouped by line item, a result carries `quantity`, the tokens
billed, with `quantity_unit` "tokens". An organization with `costs_user_grouping=False` answers
400 (param group_by) to user_id together with project_id, as some real organizations do.
`billed_amount_overrides` apply to every grouping by project_id and line_item: an override
replaces all the parts of its line item with one result (no key, user or source).
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

from usage_assets.simulator.contract import (
    COSTS_BUCKET_LIMITS,
    COSTS_GROUP_BY_FIELDS,
    COSTS_PATH,
    COSTS_RESULT_OBJECT,
)
from usage_assets.simulator.http_params import (
    ApiError,
    Query,
    array_param,
    decode_cursor,
    encode_cursor,
    int_param,
    limit_param,
)
from usage_assets.simulator.organization import SyntheticOrganization

__all__ = ["COSTS_PATH", "BilledLineItem", "billed_line_items", "billed_parts", "costs"]

DAY_SECONDS = 86_400

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


GROUP_BY_FIELDS = COSTS_GROUP_BY_FIELDS
#: What a line item's `quantity` counts: every line item of this bill is tokens.
QUANTITY_UNIT = "tokens"
#: The 400 of an organization that cannot group by user together with project.
USER_GROUPING_REFUSED = (
    "Grouping by user_id together with project_id is not supported for this organization"
)

#: (project_id, line_item, api_key_id, user_id, api_source).
Key = tuple[str | None, str | None, str | None, str | None, str | None]


@dataclass(frozen=True)
class BilledLineItem:
    project_id: str | None
    line_item: str
    #: Exactly the amount the response carries (a float's shortest repr, or the string).
    amount: Decimal
    value: Any  # the JSON value: a float or a decimal string
    #: Tokens billed.
    quantity: int = 0
    api_key_id: str | None = None
    user_id: str | None = None
    api_source: str | None = None

    @property
    def key(self) -> Key:
        return (self.project_id, self.line_item, self.api_key_id, self.user_id, self.api_source)


#: (project_id, api_key_id, user_id, api_source, model, kind) -> [tokens, USD].
_Usage = dict[tuple[str | None, str | None, str | None, str | None, str, str], list[Any]]


def _priced_usage(org: SyntheticOrganization, day: dt.date) -> _Usage:
    """The day's usage priced per key, user, API source, model and token kind."""
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    totals: _Usage = {}
    for hour in range(start, start + DAY_SECONDS, 3600):
        for result in org.hour_results(hour):
            model = result["model"]
            factor = BATCH_FACTOR if result["batch"] else Decimal(1)
            tier = result["service_tier"] or "default"
            kinds = _priced_kinds(result, rates_for(model, day, tier))
            for kind, (tokens, usd) in kinds.items():
                where = (
                    result["project_id"],
                    result["api_key_id"],
                    result["user_id"],
                    result["api_source"],
                    model,
                    kind,
                )
                acc = totals.setdefault(where, [0, Decimal(0)])
                acc[0] += tokens
                acc[1] += usd * factor / MILLION
    return totals


def _noise(
    org: SyntheticOrganization, day: dt.date, project_id: str | None, line_item: str
) -> Decimal:
    """The bill's deviation from priced usage, one per project and line item."""
    return 1 + NOISE * (2 * _unit(org.seed, day, project_id, line_item) - 1)


def billed_line_items(org: SyntheticOrganization, day: dt.date) -> list[BilledLineItem]:
    """The day's bill per project and line item, sorted; before any override."""
    totals: dict[tuple[str | None, str, str], list[Any]] = {}
    for (project_id, _key, _user, _source, model, kind), (tokens, usd) in _priced_usage(
        org, day
    ).items():
        acc = totals.setdefault((project_id, model, kind), [0, Decimal(0)])
        acc[0] += tokens
        acc[1] += usd
    items = []
    for (project_id, model, kind), (tokens, usd) in totals.items():
        if tokens <= 0:
            continue
        line_item = f"{model}, {kind}"
        billed = (usd * _noise(org, day, project_id, line_item)).quantize(AMOUNT_QUANTUM)
        amount, value = _wire(billed, _as_string(org.seed, day, project_id, line_item))
        items.append(BilledLineItem(project_id, line_item, amount, value, tokens))
    items.sort(key=lambda item: (item.project_id or "", item.line_item))
    return items


def billed_parts(org: SyntheticOrganization, day: dt.date) -> list[BilledLineItem]:
    """The day's bill split per API key, user and API source of the usage it bills (each part
    with its project's line-item noise, so the parts add up to the line item up to rounding)."""
    items = []
    for (project_id, key, user, source, model, kind), (tokens, usd) in _priced_usage(
        org, day
    ).items():
        if tokens <= 0:
            continue
        line_item = f"{model}, {kind}"
        billed = (usd * _noise(org, day, project_id, line_item)).quantize(AMOUNT_QUANTUM)
        form = _as_string(org.seed, day, project_id, line_item, key, user, source)
        amount, value = _wire(billed, form)
        items.append(
            BilledLineItem(project_id, line_item, amount, value, tokens, key, user, source)
        )
    items.sort(key=lambda item: tuple(part or "" for part in item.key))
    return items


def _result(key: Key, amount: Any, quantity: int | None) -> dict[str, Any]:
    project_id, line_item, api_key_id, user_id, api_source = key
    return {
        "object": COSTS_RESULT_OBJECT,
        "amount": amount,
        "line_item": line_item,
        "project_id": project_id,
        "quantity": quantity,
        "quantity_unit": None if quantity is None else QUANTITY_UNIT,
        "api_key_id": api_key_id,
        "user_id": user_id,
        "api_source": api_source,
    }


def _day_results(
    org: SyntheticOrganization, day: dt.date, group_by: list[str], project_ids: set[str]
) -> list[dict[str, Any]]:
    """The day's results grouped by `group_by`: a group of one billed item carries that item's
    amount as served; a group of several their exact sum, sent as a number or a string."""
    finer = any(name in group_by for name in GROUP_BY_FIELDS[2:])
    source = billed_parts(org, day) if finer else billed_line_items(org, day)
    groups: dict[Key, list[BilledLineItem]] = {}
    for item in source:
        if project_ids and item.project_id not in project_ids:
            continue
        key = tuple(
            value if name in group_by else None
            for name, value in zip(GROUP_BY_FIELDS, item.key, strict=True)
        )
        groups.setdefault(key, []).append(item)  # type: ignore[arg-type]
    with_quantity = "line_item" in group_by
    results: dict[Key, dict[str, Any]] = {}
    for key, items in groups.items():
        quantity = sum(item.quantity for item in items) if with_quantity else None
        if len(items) == 1:
            value = items[0].value
        else:
            total = sum((item.amount for item in items), Decimal(0))
            _, value = _wire(total, _as_string(org.seed, day, *_form_key(key)))
        results[key] = _result(key, {"value": value, "currency": "usd"}, quantity)
    if "project_id" in group_by and "line_item" in group_by:
        for (when, project_id, line_item), amount in org.billed_amount_overrides.items():
            if when != day.isoformat() or (project_ids and project_id not in project_ids):
                continue
            for key in [k for k in results if k[:2] == (project_id, line_item)]:
                del results[key]
            key = (project_id, line_item, None, None, None)
            results[key] = _result(key, amount, None)
    return list(results.values())


def _form_key(key: Key) -> tuple[str | None, ...]:
    """What picks number or string for a sum (project and line item alone when that is all)."""
    return key[:2] if key[2:] == (None, None, None) else key


def _group_by(org: SyntheticOrganization, query: Query) -> list[str]:
    group_by = array_param(query, "group_by")
    for name in group_by:
        if name not in GROUP_BY_FIELDS:
            raise ApiError(
                400,
                f"Invalid group_by field '{name}'. Supported: {', '.join(GROUP_BY_FIELDS)}.",
                param="group_by",
            )
    if not org.costs_user_grouping and "user_id" in group_by and "project_id" in group_by:
        raise ApiError(400, USER_GROUPING_REFUSED, param="group_by")
    return group_by


def costs(org: SyntheticOrganization, query: Query) -> dict[str, Any]:
    """`GET /v1/organization/costs`, with the real endpoint's validation, limits and paging."""
    start = int_param(query, "start_time", required=True)
    assert start is not None
    width = query.get("bucket_width", ["1d"])[-1]
    if width != "1d":
        raise ApiError(400, f"Invalid bucket_width '{width}'. Supported: 1d.", param="bucket_width")
    limit = limit_param(query, COSTS_BUCKET_LIMITS)
    end = int_param(query, "end_time")
    if end is None:
        end = int(time.time())
    if end <= start:
        raise ApiError(400, "end_time must be greater than start_time.", param="end_time")
    group_by = _group_by(org, query)
    project_ids = set(array_param(query, "project_ids"))

    first = start - start % DAY_SECONDS
    bucket_start = first
    if query.get("page"):
        bucket_start, _ = decode_cursor(query["page"][-1])
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
    next_page = encode_cursor(bucket_start, 0) if bucket_start < end else None
    return {
        "object": "page",
        "data": data,
        "has_more": next_page is not None,
        "next_page": next_page,
    }
