"""Billed costs of the simulated organization: `GET /v1/organization/costs`.

The bill covers everything the simulator serves, derived from the same synthetic usage
(`SyntheticOrganization.endpoint_hour_results`), one line item per UTC day, project and:

- completions: model and token kind (`"<model>, input"`, `"<model>, cached input"`,
  `"<model>, cache writes"`, `"<model>, cache writes - 12hr"`, `"<model>, output"`), quantity
  in `tokens`, priced at genai-prices' rates for the usage's service tier (its flex/priority
  variant, else OpenAI's usual tier factor), batch usage at half price, and audio tokens at a
  flat $40/M in and $80/M out. Cache writes are billed once per retention:
  `input_cache_write_tokens` is their total, so the 30-minute part ("cache writes") is the 30m
  field, or the total minus the 12-hour part ("cache writes - 12hr") where the field is absent.
- the other usage endpoints, at the list prices of `list_prices` (one naming scheme: what is
  billed, then what it is priced by):

  | endpoint | line item | quantity_unit (quantity) |
  |---|---|---|
  | embeddings | `"<model>, input"` | `tokens` (input_tokens) |
  | moderations | none: moderations are free | |
  | images | `"<model>, <size>"` (e.g. `"dall-e-3, 1024x1024"`) | `images` |
  | audio_speeches | `"<model>, characters"` | `characters` |
  | audio_transcriptions | `"<model>, duration"` | `duration_seconds` (seconds) |
  | vector_stores | `"vector store storage"` | `gibibyte_hours` |
  | code_interpreter_sessions | `"code interpreter sessions"` | `sessions` |
  | file_search_calls | `"file search tool calls"` | `calls` (num_requests) |
  | web_search_calls | `"web search tool calls, <model>, <context_level>"` | `calls` |

  Transcription is billed per minute on seconds / 60, unrounded. Vector store storage is
  billed per GiB-day (GiB = 2^30 bytes; a project's GiB-days = its hourly `usage_bytes`
  summed over the day / 24 / 2^30) with the first GiB-day of the organization each day free,
  the allowance shared between projects in proportion to their GiB-days: a project pays
  max(0, org GiB-days - 1) x $0.10 x its GiB-days / org GiB-days, and its quantity is its
  GiB-hours (GiB-days x 24, to 6 decimals; a JSON number). A day whose storage is all within
  the allowance has no storage line item. Web search is priced by model family (dated
  snapshots share their model's price) and context level.

Each line item then gets a deterministic noise of at most +-0.5% (one factor per day, project
and line item), so the bill is close to, but not exactly, an estimate.

Amounts go out as JSON numbers for some line items and as decimal strings for others (both are
seen from the real API), chosen by a stable hash: the same request always gets the same body.

Every documented `group_by` field is served (project_id, line_item, api_key_id, user_id,
api_source). Grouped by API key, user or API source, the bill is split by the key, user and
source of the usage it bills, each part with its line item's noise (so the parts add up to the
line item, up to rounding); usage without one of these dimensions (vector store storage and
code interpreter sessions have only a project; only completions and web search have an API
source) bills parts where it is null. Grouped by line item, a result carries `quantity` and
its family's `quantity_unit`. An organization with `costs_user_grouping=False` answers 400
(param group_by) to user_id together with project_id, as some real organizations do.
`billed_amount_overrides` apply to every grouping by project_id and line_item: an override
replaces all the parts of its line item with one result (no key, user or source).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

from usage_assets.simulator import list_prices
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

__all__ = [
    "COSTS_PATH",
    "QUANTITY_UNITS",
    "BilledLineItem",
    "billed_line_items",
    "billed_parts",
    "costs",
]

DAY_SECONDS = 86_400
GIB = Decimal(2**30)

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
#: What a completions line item's `quantity` counts.
QUANTITY_UNIT = "tokens"
#: The `quantity_unit` of each usage endpoint's line items (moderations are never billed).
QUANTITY_UNITS = {
    "completions": QUANTITY_UNIT,
    "embeddings": "tokens",
    "images": "images",
    "audio_speeches": "characters",
    "audio_transcriptions": "duration_seconds",
    "vector_stores": "gibibyte_hours",
    "code_interpreter_sessions": "sessions",
    "file_search_calls": "calls",
    "web_search_calls": "calls",
}
VECTOR_STORE_LINE_ITEM = "vector store storage"
CODE_INTERPRETER_LINE_ITEM = "code interpreter sessions"
FILE_SEARCH_LINE_ITEM = "file search tool calls"
WEB_SEARCH_LINE_ITEM = "web search tool calls"
#: Digits kept in a vector store quantity (GiB-hours).
QUANTITY_QUANTUM = Decimal("1e-6")
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
    #: What is billed, in `quantity_unit` (tokens, images, calls, GiB-hours, ...).
    quantity: int | Decimal = 0
    api_key_id: str | None = None
    user_id: str | None = None
    api_source: str | None = None
    quantity_unit: str = QUANTITY_UNIT

    @property
    def key(self) -> Key:
        return (self.project_id, self.line_item, self.api_key_id, self.user_id, self.api_source)


#: (project_id, api_key_id, user_id, api_source, line_item).
_Where = tuple[str | None, str | None, str | None, str | None, str]


@dataclass
class _Priced:
    quantity: int | Decimal
    usd: Decimal
    unit: str


_Usage = dict[_Where, _Priced]


def _add(totals: _Usage, where: _Where, quantity: int | Decimal, usd: Decimal, unit: str) -> None:
    acc = totals.get(where)
    if acc is None:
        totals[where] = acc = _Priced(0, Decimal(0), unit)
    acc.quantity += quantity
    acc.usd += usd


def _day_start(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


def _priced_usage(org: SyntheticOrganization, day: dt.date) -> _Usage:
    """The day's usage priced per project, key, user, API source and line item."""
    start = _day_start(day)
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
                    f"{model}, {kind}",
                )
                _add(totals, where, tokens, usd * factor / MILLION, QUANTITY_UNIT)
    for hour in range(start, start + DAY_SECONDS, 3600):
        for endpoint, price in _PRICERS.items():
            unit = QUANTITY_UNITS[endpoint]
            for result in org.endpoint_hour_results(endpoint, hour):
                line_item, quantity, usd = price(result)
                where = (
                    result.get("project_id"),
                    result.get("api_key_id"),
                    result.get("user_id"),
                    result.get("api_source"),
                    line_item,
                )
                _add(totals, where, quantity, usd, unit)
    _price_vector_stores(org, start, totals)
    return totals


def web_search_family(model: str) -> str:
    """A dated snapshot's model (`gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`)."""
    return re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model)


def _embeddings(r: dict[str, Any]) -> tuple[str, int, Decimal]:
    tokens = r["input_tokens"]
    return (
        f"{r['model']}, input",
        tokens,
        tokens * list_prices.EMBEDDINGS_PER_MTOK[r["model"]] / MILLION,
    )


def _images(r: dict[str, Any]) -> tuple[str, int, Decimal]:
    price = list_prices.IMAGES_PER_IMAGE[(r["model"], r["size"])]
    return f"{r['model']}, {r['size']}", r["images"], r["images"] * price


def _speech(r: dict[str, Any]) -> tuple[str, int, Decimal]:
    rate = list_prices.SPEECH_PER_MILLION_CHARACTERS[r["model"]]
    return f"{r['model']}, characters", r["characters"], r["characters"] * rate / MILLION


def _transcription(r: dict[str, Any]) -> tuple[str, int, Decimal]:
    rate = list_prices.TRANSCRIPTION_PER_MINUTE[r["model"]]
    return f"{r['model']}, duration", r["seconds"], r["seconds"] * rate / 60


def _code_interpreter(r: dict[str, Any]) -> tuple[str, int, Decimal]:
    sessions = r["num_sessions"]
    return CODE_INTERPRETER_LINE_ITEM, sessions, sessions * list_prices.CODE_INTERPRETER_PER_SESSION


def _file_search(r: dict[str, Any]) -> tuple[str, int, Decimal]:
    calls = r["num_requests"]
    return FILE_SEARCH_LINE_ITEM, calls, calls * list_prices.FILE_SEARCH_PER_1K_CALLS / 1000


def _web_search(r: dict[str, Any]) -> tuple[str, int, Decimal]:
    calls, level = r["num_requests"], r["context_level"]
    price = list_prices.WEB_SEARCH_PER_1K_CALLS[(web_search_family(r["model"]), level)]
    return f"{WEB_SEARCH_LINE_ITEM}, {r['model']}, {level}", calls, calls * price / 1000


#: (line item, quantity, USD) of one hourly result, per endpoint billed per result.
_PRICERS: dict[str, Callable[[dict[str, Any]], tuple[str, int, Decimal]]] = {
    "embeddings": _embeddings,
    "images": _images,
    "audio_speeches": _speech,
    "audio_transcriptions": _transcription,
    "code_interpreter_sessions": _code_interpreter,
    "file_search_calls": _file_search,
    "web_search_calls": _web_search,
}


def _price_vector_stores(org: SyntheticOrganization, start: int, totals: _Usage) -> None:
    """Storage per GiB-day, the organization's first GiB-day free, shared pro rata."""
    byte_hours: dict[str | None, int] = {}
    for hour in range(start, start + DAY_SECONDS, 3600):
        for result in org.endpoint_hour_results("vector_stores", hour):
            project = result["project_id"]
            byte_hours[project] = byte_hours.get(project, 0) + result["usage_bytes"]
    org_gib_days = sum(byte_hours.values()) / (GIB * 24)
    billable = org_gib_days - list_prices.VECTOR_STORE_FREE_GIB_DAYS
    if billable <= 0:
        return
    for project, stored in byte_hours.items():
        gib_days = stored / (GIB * 24)
        usd = billable * list_prices.VECTOR_STORE_PER_GIB_DAY * gib_days / org_gib_days
        quantity = (gib_days * 24).quantize(QUANTITY_QUANTUM)
        where = (project, None, None, None, VECTOR_STORE_LINE_ITEM)
        _add(totals, where, quantity, usd, QUANTITY_UNITS["vector_stores"])


def _noise(
    org: SyntheticOrganization, day: dt.date, project_id: str | None, line_item: str
) -> Decimal:
    """The bill's deviation from priced usage, one per project and line item."""
    return 1 + NOISE * (2 * _unit(org.seed, day, project_id, line_item) - 1)


def billed_line_items(org: SyntheticOrganization, day: dt.date) -> list[BilledLineItem]:
    """The day's bill per project and line item, sorted; before any override."""
    totals: dict[tuple[str | None, str], _Priced] = {}
    for (project_id, _key, _user, _source, line_item), priced in _priced_usage(org, day).items():
        acc = totals.get((project_id, line_item))
        if acc is None:
            totals[(project_id, line_item)] = acc = _Priced(0, Decimal(0), priced.unit)
        acc.quantity += priced.quantity
        acc.usd += priced.usd
    items = []
    for (project_id, line_item), priced in totals.items():
        if priced.quantity <= 0:
            continue
        billed = (priced.usd * _noise(org, day, project_id, line_item)).quantize(AMOUNT_QUANTUM)
        amount, value = _wire(billed, _as_string(org.seed, day, project_id, line_item))
        items.append(
            BilledLineItem(
                project_id, line_item, amount, value, priced.quantity, quantity_unit=priced.unit
            )
        )
    items.sort(key=lambda item: (item.project_id or "", item.line_item))
    return items


def billed_parts(org: SyntheticOrganization, day: dt.date) -> list[BilledLineItem]:
    """The day's bill split per API key, user and API source of the usage it bills (each part
    with its project's line-item noise, so the parts add up to the line item up to rounding)."""
    items = []
    for (project_id, key, user, source, line_item), priced in _priced_usage(org, day).items():
        if priced.quantity <= 0:
            continue
        billed = (priced.usd * _noise(org, day, project_id, line_item)).quantize(AMOUNT_QUANTUM)
        form = _as_string(org.seed, day, project_id, line_item, key, user, source)
        amount, value = _wire(billed, form)
        items.append(
            BilledLineItem(
                project_id,
                line_item,
                amount,
                value,
                priced.quantity,
                key,
                user,
                source,
                quantity_unit=priced.unit,
            )
        )
    items.sort(key=lambda item: tuple(part or "" for part in item.key))
    return items


def _quantity_wire(quantity: int | Decimal) -> int | float:
    """A quantity as a JSON number (GiB-hours keep their 6 decimals: a float's shortest repr)."""
    return quantity if isinstance(quantity, int) else float(quantity)


def _result(
    key: Key, amount: Any, quantity: int | Decimal | None, unit: str | None = None
) -> dict[str, Any]:
    project_id, line_item, api_key_id, user_id, api_source = key
    return {
        "object": COSTS_RESULT_OBJECT,
        "amount": amount,
        "line_item": line_item,
        "project_id": project_id,
        "quantity": None if quantity is None else _quantity_wire(quantity),
        "quantity_unit": None if quantity is None else unit,
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
        quantity: int | Decimal | None = None
        if with_quantity:  # one line item, so one unit
            quantity = items[0].quantity
            for item in items[1:]:
                quantity += item.quantity
        if len(items) == 1:
            value = items[0].value
        else:
            total = sum((item.amount for item in items), Decimal(0))
            _, value = _wire(total, _as_string(org.seed, day, *_form_key(key)))
        amount = {"value": value, "currency": "usd"}
        results[key] = _result(key, amount, quantity, items[0].quantity_unit)
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
