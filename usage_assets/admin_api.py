"""HTTP client for the OpenAI Admin API: timeouts, retries that honour Retry-After, cursor paging.

Transient failures (429, 5xx, connection errors, truncated or non-JSON bodies) are retried with
exponential backoff and jitter; anything retrying cannot fix (400/401/403/404) fails at once
with OpenAI's own message. The admin key lives only in the session's Authorization header and
is scrubbed from every message this module produces.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from usage_assets.errors import AdminAPIError, PayloadError, QueryValidationError, redact
from usage_assets.usage_query import UsageQuery, encode_query_params

USER_AGENT = "usage_assets/0.1 (+https://github.com/usage-assets)"


class Logger(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


class TransientAPIError(AdminAPIError):
    """A failure worth retrying; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None):
        super().__init__(message, status=status)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(response: requests.Response) -> tuple[str, str | None]:
    """OpenAI's `{"error": {"message", "type", "param", "code"}}`, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return (response.text[:300] or response.reason or "no body"), None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return str(body)[:300], None
    parts = [str(error.get("message") or "no message")]
    extras = [f"{k}={error[k]}" for k in ("type", "code", "param") if error.get(k)]
    if extras:
        parts.append(f"({', '.join(extras)})")
    code = error.get("code")
    return " ".join(parts), str(code) if code is not None else None


_HINTS = {
    401: "Check that OPENAI_ADMIN_KEY is an Admin API key (sk-admin-…) and has not been revoked.",
    403: "The key lacks permission for this endpoint; Admin API keys are created by an "
    "organization owner.",
    404: "Check OPENAI_BASE_URL (it should end in /v1) and the endpoint path.",
}


@dataclass
class RetrySettings:
    max_attempts: int = 8
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    #: Retry-After longer than this is capped, so one hint cannot stall a run for hours.
    max_retry_after_seconds: float = 300.0


@dataclass
class AdminAPIClient:
    """A small, strict client for the Admin API's read endpoints."""

    base_url: str
    admin_key: str | None
    organization: str | None = None
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 120.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    log: Logger = field(default_factory=lambda: logging.getLogger("usage_assets.admin_api"))
    #: Every HTTP attempt made, retries included.
    request_count: int = 0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept"] = "application/json"
        if self.admin_key:
            self._session.headers["Authorization"] = f"Bearer {self.admin_key}"
        if self.organization:
            self._session.headers["OpenAI-Organization"] = self.organization
        self._backoff = wait_exponential_jitter(
            multiplier=self.retry.initial_backoff_seconds,
            max=self.retry.max_backoff_seconds,
            jitter=self.retry.initial_backoff_seconds,
        )

    def __repr__(self) -> str:  # never show the key, even in a debugger or traceback
        return f"AdminAPIClient(base_url={self.base_url!r}, admin_key=[REDACTED])"

    def close(self) -> None:
        self._session.close()

    def _redact(self, text: str) -> str:
        return redact(text, self.admin_key)

    # ------------------------------------------------------------------ single request

    def _fetch(self, path: str, params: list[tuple[str, str]]) -> bytes:
        """One HTTP attempt; the body of a 2xx answer, else TransientAPIError or AdminAPIError."""
        url = self.base_url + path
        self.request_count += 1
        try:
            response = self._session.get(
                url,
                params=params,
                timeout=(self.connect_timeout_seconds, self.read_timeout_seconds),
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # a body cut short
        ) as exc:
            raise TransientAPIError(
                self._redact(f"GET {path}: {type(exc).__name__}: {exc}"), retry_after=None
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            message, _ = _error_detail(response)
            raise TransientAPIError(
                self._redact(f"GET {path} answered {status}: {message}"),
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 400:
            message, code = _error_detail(response)
            hint = _HINTS.get(status, "")
            raise AdminAPIError(
                self._redact(
                    f"OpenAI Admin API rejected GET {path} with {status}: {message}. {hint}"
                ).strip(),
                status=status,
                code=code,
            )
        return response.content

    def _parse(self, body: bytes, path: str, exact_decimals: bool) -> dict[str, Any]:
        """The JSON object of a page; a body that is not JSON is transient (a proxy's error
        page, a body cut short) and retried."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise self._not_json(path, body[:120].decode("utf-8", "replace")) from None
        del body  # the text replaces it: one copy of the page at a time
        try:
            # exact_decimals: JSON numbers with a fraction become Decimal, never float (money).
            parsed = json.loads(text, parse_float=Decimal) if exact_decimals else json.loads(text)
        except ValueError:
            raise self._not_json(path, text[:120]) from None
        if not isinstance(parsed, dict):
            raise PayloadError(
                f"GET {path} answered a JSON {type(parsed).__name__}, expected an object"
            )
        return parsed

    def _not_json(self, path: str, start: str) -> TransientAPIError:
        snippet = start.replace("\n", " ")
        return TransientAPIError(
            self._redact(f"GET {path} answered 200 with a body that is not JSON: {snippet!r}"),
            status=200,
            retry_after=None,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientAPIError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_retry_after_seconds)
        return float(self._backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(
            f"Admin API attempt {state.attempt_number}/{self.retry.max_attempts} failed "
            f"({exc}); retrying in {wait:.1f}s"
        )

    def get_json(
        self,
        path: str,
        params: list[tuple[str, str]],
        *,
        exact_decimals: bool = False,
    ) -> dict[str, Any]:
        """GET one page with retries; raises AdminAPIError or PayloadError.

        `exact_decimals` parses JSON numbers with a fraction as `Decimal` instead of float.
        """

        def attempt() -> dict[str, Any]:
            return self._parse(self._fetch(path, params), path, exact_decimals)

        retrying = Retrying(
            retry=retry_if_exception_type(TransientAPIError),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except TransientAPIError as exc:
            raise AdminAPIError(
                f"Gave up after {self.retry.max_attempts} attempts: {exc}", status=exc.status
            ) from None

    # ------------------------------------------------------------------ paging

    def iter_pages(
        self, path: str, params: list[tuple[str, str]], *, exact_decimals: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Follow `next_page` while `has_more`; a cursor seen twice is a loop, not more data.

        One page is held at a time: the caller's work on a page is done before the next is
        fetched. (Fetching ahead in a thread was measured: no faster on 2 cores, where the
        simulator, the parse and PostgreSQL already share the CPUs, and one more page of memory.)
        """
        seen: set[str] = set()
        cursor: str | None = None
        page_number = 0
        while True:
            page_number += 1
            page_params = params + ([("page", cursor)] if cursor else [])
            page = self.get_json(path, page_params, exact_decimals=exact_decimals)
            _check_page_envelope(page, path, page_number)
            if not page["has_more"]:
                yield page
                return
            next_cursor = page.get("next_page")
            if not isinstance(next_cursor, str) or not next_cursor:
                raise PayloadError(
                    f"GET {path} page {page_number} says has_more=true but next_page is "
                    f"{next_cursor!r}; cannot continue without a cursor"
                )
            if next_cursor == cursor or next_cursor in seen:
                raise PayloadError(
                    f"GET {path} page {page_number} repeats cursor {next_cursor!r}: a paging "
                    "loop; stopping instead of fetching forever"
                )
            seen.add(next_cursor)
            cursor = next_cursor
            yield page
            del page  # not kept while the next page is parsed

    def iter_usage_buckets(self, query: UsageQuery) -> Iterator[UsageBucket]:
        """Buckets as the pages bring them, each validated: a bucket split across pages comes
        out as consecutive parts with the same start. Only the current page is held. Consumers
        check the order with `in_time_order` (`iter_usage` and
        `normalize.split_by_day` do)."""
        for page in self.iter_pages(query.endpoint.path, query.to_params()):
            data = page["data"]
            del page
            data.reverse()
            while data:  # popped, so a consumed bucket is not kept alive by the page
                yield UsageBucket.parse(data.pop(), query)

    def iter_usage(self, query: UsageQuery) -> Iterator[UsageBucket]:
        """Whole buckets in time order; a bucket continued on the next page comes out as one."""
        pending: UsageBucket | None = None
        for bucket in in_time_order(self.iter_usage_buckets(query)):
            if pending is not None and bucket.start_time == pending.start_time:
                pending.results.extend(bucket.results)
                continue
            if pending is not None:
                yield pending
            pending = bucket
        if pending is not None:
            yield pending

    #: The name of `iter_usage` when completions was the only usage endpoint.
    iter_completions_usage = iter_usage

    # ------------------------------------------------------------------ list endpoints

    def iter_list(
        self, path: str, params: Iterable[tuple[str, str]] = ()
    ) -> Iterator[dict[str, Any]]:
        """Every object of an `{"object": "list"}` endpoint, following `after` while `has_more`.

        The cursor is the page's `last_id`, else the id of its last object; a cursor seen twice
        is a loop and fails instead of fetching forever.
        """
        base = list(params)
        seen: set[str] = set()
        after: str | None = None
        page_number = 0
        while True:
            page_number += 1
            page = self.get_json(path, base + ([("after", after)] if after else []))
            items = _check_list_envelope(page, path, page_number)
            if not page["has_more"]:
                yield from items
                return
            last_id = page.get("last_id")
            if last_id is None and items:
                last_id = items[-1].get("id")
            if not isinstance(last_id, str) or not last_id:
                raise PayloadError(
                    f"GET {path} page {page_number} says has_more=true but gives no last_id "
                    f"(and no object id) to continue after: {last_id!r}"
                )
            if last_id in seen:
                raise PayloadError(
                    f"GET {path} page {page_number} repeats cursor after={last_id!r}: a paging "
                    "loop; stopping instead of fetching forever"
                )
            seen.add(last_id)
            yield from items
            after = last_id

    # ------------------------------------------------------------------ billed costs

    def iter_costs(self, query: CostsQuery) -> Iterator[CostBucket]:
        """Daily cost buckets in time order, amounts as exact `Decimal`, every result validated.

        A bucket continued on the next page comes out as one; a grouping key (project, line
        item, API key, user, API source) listed twice in one bucket is a PayloadError.
        """
        pending: CostBucket | None = None
        pages = self.iter_pages(COSTS_PATH, query.to_params(), exact_decimals=True)
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


def _check_page_envelope(page: dict[str, Any], path: str, number: int) -> None:
    where = f"GET {path} page {number}"
    if page.get("object", "page") != "page":
        raise PayloadError(f"{where}: object is {page.get('object')!r}, expected 'page'")
    if not isinstance(page.get("data"), list):
        raise PayloadError(f"{where}: 'data' is missing or not a list")
    if not isinstance(page.get("has_more"), bool):
        raise PayloadError(f"{where}: 'has_more' is missing or not a boolean")


@dataclass
class UsageBucket:
    """One time bucket; `results` are the raw result objects, kept whole."""

    start_time: int
    end_time: int
    results: list[Any]

    @classmethod
    def parse(cls, raw: Any, query: UsageQuery) -> UsageBucket:
        if not isinstance(raw, dict):
            raise PayloadError(f"A usage bucket is a {type(raw).__name__}, expected an object")
        if raw.get("object", "bucket") != "bucket":
            raise PayloadError(f"A usage bucket has object={raw.get('object')!r}")
        start, end, results = raw.get("start_time"), raw.get("end_time"), raw.get("results")
        if not (_is_int(start) and _is_int(end)):
            raise PayloadError(
                f"A usage bucket lacks integer start_time/end_time: {start!r}, {end!r}"
            )
        assert isinstance(start, int) and isinstance(end, int)
        if not isinstance(results, list):
            raise PayloadError(f"Usage bucket {start}: 'results' is missing or not a list")
        if end - start != query.bucket_seconds:
            raise PayloadError(
                f"Usage bucket {start}..{end} is {end - start}s wide; asked for "
                f"{query.bucket_width} ({query.bucket_seconds}s)"
            )
        if end <= query.start_time or (query.end_time is not None and start >= query.end_time):
            raise PayloadError(
                f"Usage bucket {start}..{end} lies outside the requested window "
                f"{query.start_time}..{query.end_time}"
            )
        return cls(start_time=start, end_time=end, results=results)

    def take_results(self) -> list[Any]:
        """Hand the results over, keeping none, so they are freed once the taker is done."""
        results, self.results = self.results, []
        return results


def in_time_order(buckets: Iterable[UsageBucket]) -> Iterator[UsageBucket]:
    """Pass buckets through, refusing one that starts before its predecessor (parts of one
    bucket split across pages share a start and pass)."""
    previous: int | None = None
    for bucket in buckets:
        if previous is not None and bucket.start_time < previous:
            when = [
                dt.datetime.fromtimestamp(t, dt.UTC).isoformat()
                for t in (previous, bucket.start_time)
            ]
            raise PayloadError(
                f"usage buckets out of order: went back in time from {when[0]} to {when[1]}"
            )
        previous = bucket.start_time
        yield bucket


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_list_envelope(page: dict[str, Any], path: str, number: int) -> list[dict[str, Any]]:
    where = f"GET {path} page {number}"
    if page.get("object", "list") != "list":
        raise PayloadError(f"{where}: object is {page.get('object')!r}, expected 'list'")
    data = page.get("data")
    if not isinstance(data, list):
        raise PayloadError(f"{where}: 'data' is missing or not a list")
    if not isinstance(page.get("has_more"), bool):
        raise PayloadError(f"{where}: 'has_more' is missing or not a boolean")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise PayloadError(f"{where}: item #{index} is a {type(item).__name__}, not an object")
    return data


# --------------------------------------------------------------------------- billed costs

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
        if not _is_int(self.start_time) or self.start_time < 0:
            yield f"start_time must be Unix seconds (int >= 0), got {self.start_time!r}"
        if self.end_time is not None and (
            not _is_int(self.end_time)
            or (_is_int(self.start_time) and self.end_time <= self.start_time)
        ):
            yield f"end_time must be Unix seconds after start_time, got {self.end_time!r}"
        if self.bucket_width != "1d":
            yield (
                "bucket_width must be '1d' (the only width the costs endpoint has), "
                f"got {self.bucket_width!r}"
            )
        maximum = COSTS_BUCKET_LIMITS[1]
        if self.limit is not None and (not _is_int(self.limit) or not 1 <= self.limit <= maximum):
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
        if not isinstance(raw, dict):
            raise PayloadError(f"A costs bucket is a {type(raw).__name__}, expected an object")
        if raw.get("object", "bucket") != "bucket":
            raise PayloadError(f"A costs bucket has object={raw.get('object')!r}")
        start, end, results = raw.get("start_time"), raw.get("end_time"), raw.get("results")
        if not (_is_int(start) and _is_int(end)):
            raise PayloadError(
                f"A costs bucket lacks integer start_time/end_time: {start!r}, {end!r}"
            )
        assert isinstance(start, int) and isinstance(end, int)
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
