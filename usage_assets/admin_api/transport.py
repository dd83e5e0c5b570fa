"""The HTTP transport of the OpenAI Admin API: timeouts, retries that honour Retry-After, paging.

Transient failures (429, 5xx, connection errors, truncated or non-JSON bodies) are retried with
exponential backoff and jitter; anything retrying cannot fix (400/401/403/404) fails at once
with OpenAI's own message. The admin key lives only in the session's Authorization header and
is scrubbed from every message this module produces. What the endpoints answer is not known
here: `usage` and `costs` hold those contracts.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from usage_assets.errors import AdminAPIError, PayloadError, redact

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


def _check_page_envelope(page: dict[str, Any], path: str, number: int) -> None:
    where = f"GET {path} page {number}"
    if page.get("object", "page") != "page":
        raise PayloadError(f"{where}: object is {page.get('object')!r}, expected 'page'")
    if not isinstance(page.get("data"), list):
        raise PayloadError(f"{where}: 'data' is missing or not a list")
    if not isinstance(page.get("has_more"), bool):
        raise PayloadError(f"{where}: 'has_more' is missing or not a boolean")


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


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def bucket_envelope(raw: Any, what: str) -> tuple[int, int, Any]:
    """(start_time, end_time, results) of a `{"object": "bucket"}` of a `what` ("usage",
    "costs") page, refusing what is not one; `results` is checked by the caller."""
    if not isinstance(raw, dict):
        raise PayloadError(f"A {what} bucket is a {type(raw).__name__}, expected an object")
    if raw.get("object", "bucket") != "bucket":
        raise PayloadError(f"A {what} bucket has object={raw.get('object')!r}")
    start, end = raw.get("start_time"), raw.get("end_time")
    if not (is_int(start) and is_int(end)):
        raise PayloadError(f"A {what} bucket lacks integer start_time/end_time: {start!r}, {end!r}")
    assert isinstance(start, int) and isinstance(end, int)
    return start, end, raw.get("results")
