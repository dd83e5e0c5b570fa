"""`GET /v1/organization/costs`, the bill: its query, and its daily buckets and results, validated
with amounts kept exact (`Decimal`, never float)."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from usage_assets.admin_api.params import encode_query_params
from usage_assets.admin_api.transport import AdminAPIClient, bucket_envelope, is_int
from usage_assets.errors import PayloadError, QueryValidationError

COSTS_PATH: Final = "/organization/costs"
#: Every field the costs endpoint accepts in `group_by`, in the order of the grouping key.
COSTS_GROUP_BY_FIELDS: Final[tuple[str, ...]] = (
    "project_id",
    "line_item",
    "api_key_id",
    "user_id",
    "api_source",
)
#: (default, max) 1d buckets per page of the costs endpoint, as documented.
COSTS_BUCKET_LIMITS: Final = (7, 180)
COSTS_RESULT_OBJECT: Final = "organization.costs.result"
DAY_SECONDS: Final = 86_400
#: A decimal number written as text, the way JSON writes numbers (no NaN, no "1_000").
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class CostsQuery:
    """The parameters of `GET /v1/organization/costs`; `page` is supplied by the pager."""

    start_time: int
    end_time: int | None = None
    bucket_width: str = "1d"
    project_ids: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    limit: int | None = None

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise QueryValidationError("Invalid costs query: " + "; ".join(problems))

    def _problems(self) -> Iterator[str]:
        if not is_int(self.start_time) or self.start_time < 0:
            yield f"start_time must be Unix seconds (int >= 0), got {self.start_time!r}"
        if self.end_time is not None and (
            not is_int(self.end_time)
            or (is_int(self.start_time) and self.end_time <= self.start_time)
        ):
            yield f"end_time must be Unix seconds after start_time, got {self.end_time!r}"
        if self.bucket_width != "1d":
            yield (
                "bucket_width must be '1d' (the only width the costs endpoint has), "
                f"got {self.bucket_width!r}"
            )
        maximum = COSTS_BUCKET_LIMITS[1]
        if self.limit is not None and (not is_int(self.limit) or not 1 <= self.limit <= maximum):
            yield f"limit must be between 1 and {maximum} daily buckets, got {self.limit!r}"
        unknown = [name for name in self.group_by if name not in COSTS_GROUP_BY_FIELDS]
        if unknown:
            yield (
                f"group_by fields {unknown} are not supported; "
                f"allowed: {list(COSTS_GROUP_BY_FIELDS)}"
            )
        if len(set(self.group_by)) != len(self.group_by):
            yield f"group_by lists a field twice: {list(self.group_by)}"
        if isinstance(self.project_ids, str) or not all(
            isinstance(v, str) and v for v in self.project_ids
        ):
            yield f"project_ids must be a sequence of non-empty strings, got {self.project_ids!r}"

    def to_params(self) -> list[tuple[str, str]]:
        return encode_query_params(
            {
                "start_time": self.start_time,
                "end_time": self.end_time,
                "bucket_width": self.bucket_width,
                "project_ids": self.project_ids,
                "group_by": self.group_by,
                "limit": self.limit,
            }
        )


def parse_amount(value: object, where: str) -> Decimal:
    """A money amount sent as a JSON number (int, or Decimal via parse_float) or decimal string.

    Raises PayloadError naming `where` for null, booleans, non-numeric text and NaN/Infinity.
    """
    amount: Decimal
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"{where}={value!r} is not a decimal amount")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):  # only if parsed without exact_decimals: its shortest repr
        if not math.isfinite(value):
            raise PayloadError(f"{where}={value!r} is not a finite amount")
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise PayloadError(f"{where}={value!r} is not a decimal number")
        try:
            amount = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
            raise PayloadError(f"{where}={value!r} is not a decimal number") from None
    else:
        raise PayloadError(f"{where}={value!r} is a {type(value).__name__}, not a decimal amount")
    if not amount.is_finite():
        raise PayloadError(f"{where}={value!r} is not a finite amount")
    return amount


def _id_text(raw: dict[str, Any], name: str, where: str) -> str | None:
    """A nullable string that identifies something: a NUL in it is refused (PostgreSQL text
    cannot store it, and changing an id would misattribute money)."""
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}: {name}={value!r} is not a string")
    if "\x00" in value:
        raise PayloadError(
            f"{where}: {name}={value!r} contains a NUL character, which PostgreSQL text cannot "
            "store"
        )
    return value


#: Named in every message about a cost result, even when null (the other fields when set).
_ALWAYS_NAMED: Final = ("project_id", "line_item")
#: The grouping key of a cost result: (project_id, line_item, api_key_id, user_id, api_source).
CostKey = tuple[str | None, str | None, str | None, str | None, str | None]


@dataclass(frozen=True)
class CostResult:
    """One validated cost result; `result` is the whole object as received (amounts exact).

    A field the query did not group by comes back null. `quantity` (with `quantity_unit`,
    e.g. "tokens", "images", "gibibyte_hours": any string) comes with a `line_item` grouping;
    it is exact like the amount, and nullable.
    """

    project_id: str | None
    line_item: str | None
    amount: Decimal
    currency: str
    result: dict[str, Any]
    api_key_id: str | None = None
    user_id: str | None = None
    api_source: str | None = None
    quantity: Decimal | None = None
    quantity_unit: str | None = None

    @property
    def key(self) -> CostKey:
        """What one result of a bucket is for: no two results of a bucket may share it."""
        return (self.project_id, self.line_item, self.api_key_id, self.user_id, self.api_source)

    @classmethod
    def parse(cls, raw: Any, where: str) -> CostResult:
        if not isinstance(raw, dict):
            raise PayloadError(f"{where} is a {type(raw).__name__}, expected an object")
        kind = raw.get("object", COSTS_RESULT_OBJECT)
        if kind != COSTS_RESULT_OBJECT:
            raise PayloadError(f"{where}: object={kind!r}, expected {COSTS_RESULT_OBJECT!r}")
        key = {name: _id_text(raw, name, where) for name in COSTS_GROUP_BY_FIELDS}
        named = (f"{k}={v!r}" for k, v in key.items() if v is not None or k in _ALWAYS_NAMED)
        where = f"{where} ({', '.join(named)})"
        amount = raw.get("amount")
        if not isinstance(amount, dict):
            raise PayloadError(f"{where}: amount={amount!r} is missing or not an object")
        if "value" not in amount:
            raise PayloadError(f"{where}: amount.value is missing")
        value = parse_amount(amount["value"], f"{where}: amount.value")
        currency = amount.get("currency")
        if not isinstance(currency, str) or currency.lower() != "usd":
            raise PayloadError(
                f"{where}: amount.currency={currency!r}; only 'usd' is supported (amounts are "
                "stored as USD)"
            )
        quantity = raw.get("quantity")
        return cls(
            amount=value,
            currency=currency.lower(),
            result=raw,
            quantity=None if quantity is None else parse_amount(quantity, f"{where}: quantity"),
            quantity_unit=_id_text(raw, "quantity_unit", where),
            **key,
        )


@dataclass
class CostBucket:
    """One UTC day of billed costs."""

    start_time: int
    end_time: int
    results: list[CostResult]

    @property
    def day(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.start_time, dt.UTC).date()

    def extend(self, results: Iterable[CostResult]) -> None:
        keys = {r.key for r in self.results}
        for result in results:
            key = result.key
            if key in keys:
                named = ", ".join(
                    f"{name}={value!r}"
                    for name, value in zip(COSTS_GROUP_BY_FIELDS, key, strict=True)
                )
                raise PayloadError(f"costs bucket {self.day}: {named} is listed twice")
            keys.add(key)
            self.results.append(result)

    @classmethod
    def parse(cls, raw: Any, query: CostsQuery) -> CostBucket:
        start, end, results = bucket_envelope(raw, "costs")
        if end - start != DAY_SECONDS or start % DAY_SECONDS:
            raise PayloadError(
                f"Costs bucket {start}..{end} is not one UTC day (1d buckets, aligned to midnight)"
            )
        if end <= query.start_time or (query.end_time is not None and start >= query.end_time):
            raise PayloadError(
                f"Costs bucket {start}..{end} lies outside the requested window "
                f"{query.start_time}..{query.end_time}"
            )
        if not isinstance(results, list):
            raise PayloadError(f"Costs bucket {start}: 'results' is missing or not a list")
        bucket = cls(start_time=start, end_time=end, results=[])
        where = f"costs bucket {bucket.day}"
        bucket.extend(
            CostResult.parse(result, f"{where} result #{index}")
            for index, result in enumerate(results)
        )
        return bucket


def iter_costs(client: AdminAPIClient, query: CostsQuery) -> Iterator[CostBucket]:
    """Daily cost buckets in time order, amounts as exact `Decimal`, every result validated.

    A bucket continued on the next page comes out as one; a grouping key (project, line
    item, API key, user, API source) listed twice in one bucket is a PayloadError.
    """
    pending: CostBucket | None = None
    pages = client.iter_pages(COSTS_PATH, query.to_params(), exact_decimals=True)
    for page in pages:
        for raw in page["data"]:
            bucket = CostBucket.parse(raw, query)
            if pending is not None and bucket.start_time == pending.start_time:
                pending.extend(bucket.results)
                continue
            if pending is not None:
                if bucket.start_time < pending.start_time:
                    raise PayloadError(
                        f"Cost buckets out of order: {bucket.start_time} came after "
                        f"{pending.start_time}"
                    )
                yield pending
            pending = bucket
    if pending is not None:
        yield pending
