"""HTTP client for the OpenAI Admin API: timeouts, retries that honour Retry-After, cursor paging.

Transient failures (429, 5xx, connection errors, truncated or non-JSON bodies) are retried with
exponential backoff and jitter; anything retrying cannot fix (400/401/403/404) fails at once
with OpenAI's own message. The admin key lives only in the session's Authorization header and
is scrubbed from every message this module produces.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from usage_assets.usage_query import COMPLETIONS_USAGE_PATH, CompletionsUsageQuery

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

    def _attempt(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
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
        try:
            body = response.json()
        except ValueError:
            snippet = response.text[:120].replace("\n", " ")
            raise TransientAPIError(
                self._redact(
                    f"GET {path} answered {status} with a body that is not JSON: {snippet!r}"
                ),
                status=status,
                retry_after=None,
            ) from None
        if not isinstance(body, dict):
            raise PayloadError(
                f"GET {path} answered a JSON {type(body).__name__}, expected an object"
            )
        return body

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

    def get_json(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """GET one page with retries; raises AdminAPIError or PayloadError."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientAPIError),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, path, params)
        except TransientAPIError as exc:
            raise AdminAPIError(
                f"Gave up after {self.retry.max_attempts} attempts: {exc}", status=exc.status
            ) from None

    # ------------------------------------------------------------------ paging

    def iter_pages(self, path: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Follow `next_page` while `has_more`; a cursor seen twice is a loop, not more data."""
        seen: set[str] = set()
        cursor: str | None = None
        page_number = 0
        while True:
            page_number += 1
            page = self.get_json(path, params + ([("page", cursor)] if cursor else []))
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
            yield page
            cursor = next_cursor

    def iter_completions_usage(self, query: CompletionsUsageQuery) -> Iterator[UsageBucket]:
        """Buckets in time order; a bucket continued on the next page comes out as one."""
        pending: UsageBucket | None = None
        for page in self.iter_pages(COMPLETIONS_USAGE_PATH, query.to_params()):
            for raw in page["data"]:
                bucket = UsageBucket.parse(raw, query)
                if pending is not None and bucket.start_time == pending.start_time:
                    pending.results.extend(bucket.results)
                    continue
                if pending is not None:
                    if bucket.start_time < pending.start_time:
                        raise PayloadError(
                            f"Usage buckets out of order: {bucket.start_time} came after "
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
    def parse(cls, raw: Any, query: CompletionsUsageQuery) -> UsageBucket:
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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
