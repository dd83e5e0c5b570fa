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
import sys
import time
from collections.abc import Callable, Iterable, Iterator
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


#: Decodes a page's body faster than the json module, or answers None for a body it cannot
#: vouch for (which `AdminAPIClient._parse` then decodes with json, as for any page).
FastDecoder = Callable[[bytes | bytearray], dict[str, Any] | None]
#: Bytes read from the socket at a time into a page's buffer. Measured on a 7.3 MiB page: 64 KiB
#: chunks add nothing visible to the peak RSS; 1 MiB chunks add a quarter of the page.
BODY_CHUNK_BYTES = 1 << 16
#: A Content-Length above this is not trusted to size the buffer (which grows instead).
MAX_PREALLOCATED_BYTES = 256 << 20


def read_body(response: requests.Response, into: bytearray | None = None) -> bytearray:
    """The whole body of a streamed response in one buffer, the only page-sized one: `into`
    (a spare one, overwritten), else a new one.

    requests' `.content` joins the chunks it read while still holding them: twice the page at
    that moment (measured: peak RSS 1.96x the page, against 0.98x for this). A new buffer is
    sized by Content-Length when the body comes as is (no Content-Encoding); otherwise the
    buffer grows as the chunks arrive (`realloc` in place: measured the same peak).
    """
    body = into if into is not None else bytearray(_declared_length(response))
    size = 0
    for chunk in response.iter_content(BODY_CHUNK_BYTES):
        end = size + len(chunk)
        body[size:end] = chunk  # past the end of the buffer, it grows
        size = end
    del body[size:]
    return body


def _declared_length(response: requests.Response) -> int:
    """The body's size as the headers declare it, or 0 when they do not say (or are not
    believed): a compressed body's Content-Length is not the size of what it decodes to."""
    if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return 0
    try:
        declared = int(response.headers.get("Content-Length") or 0)
    except ValueError:
        return 0
    return declared if 0 <= declared <= MAX_PREALLOCATED_BYTES else 0


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
    _spare_body: bytearray | None = field(default=None, init=False, repr=False)

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

    def _fetch(self, path: str, params: list[tuple[str, str]]) -> bytearray:
        """One HTTP attempt; the body of a 2xx answer, else TransientAPIError or AdminAPIError."""
        spare = self._take_spare_body()
        url = self.base_url + path
        self.request_count += 1
        try:
            with self._session.get(
                url,
                params=params,
                timeout=(self.connect_timeout_seconds, self.read_timeout_seconds),
                stream=True,
            ) as response:
                status = response.status_code
                if status >= 400:  # its body read here, where a body cut short is transient
                    response.content  # noqa: B018
                else:
                    body = read_body(response, spare)
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # a body cut short
        ) as exc:
            raise TransientAPIError(
                self._redact(f"GET {path}: {type(exc).__name__}: {exc}"), retry_after=None
            ) from None
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
        return body

    def _parse(
        self,
        body: bytes | bytearray,
        path: str,
        exact_decimals: bool,
        fast_decode: FastDecoder | None = None,
    ) -> dict[str, Any]:
        """The JSON object of a page; a body that is not JSON is transient (a proxy's error
        page, a body cut short) and retried. `fast_decode` goes first; what it declines (None)
        is decoded here, with the json module's verdicts and messages."""
        if fast_decode is not None:
            page = fast_decode(body)
            if page is not None:
                if isinstance(body, bytearray):
                    self._spare_body = body  # reused once the page's views are gone
                return page
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

    def _take_spare_body(self) -> bytearray | None:
        """The last fast-decoded page's buffer, for the next body, once nothing refers to it.

        Its views (`msgspec.Raw`) are gone by then when the page's results have been consumed
        (the ingest's case), and so its memory is reused, never freed: glibc's malloc raises its
        mmap threshold to the size of a freed mmap'ed block, so the next page's buffer would
        come from the heap and fragment it. Measured on the benchmark's day: peak data RSS 2.2x
        the largest page with a new buffer per page, 1.2x with this (and with a new buffer per
        page under MALLOC_MMAP_THRESHOLD_=1048576, which shows the cause).
        """
        spare, self._spare_body = self._spare_body, None
        if not spare or sys.getrefcount(spare) > 2:  # 2: `spare` and getrefcount's argument
            return None
        last = spare[-1]
        try:  # a view (each `Raw` holds one) forbids resizing: the last page is still in use
            del spare[-1]
        except BufferError:
            return None
        spare.append(last)  # within its allocation: neither call moves or grows it
        return spare

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
        fast_decode: FastDecoder | None = None,
    ) -> dict[str, Any]:
        """GET one page with retries; raises AdminAPIError or PayloadError.

        `exact_decimals` parses JSON numbers with a fraction as `Decimal` instead of float.
        `fast_decode` (e.g. `usage_pages.decode_usage_page`) decodes the body first, if it can.
        """

        def attempt() -> dict[str, Any]:
            return self._parse(self._fetch(path, params), path, exact_decimals, fast_decode)

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
        self,
        path: str,
        params: list[tuple[str, str]],
        *,
        exact_decimals: bool = False,
        fast_decode: FastDecoder | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Follow `next_page` while `has_more`; a cursor seen twice is a loop, not more data.

        One page is held at a time: the caller's work on a page is done before the next is
        fetched. (Fetching ahead in a thread was measured: no faster on 2 cores, where the
        simulator, the parse and PostgreSQL already share the CPUs, and one more page of memory.)
        """
        try:
            seen: set[str] = set()
            cursor: str | None = None
            page_number = 0
            while True:
                page_number += 1
                page_params = params + ([("page", cursor)] if cursor else [])
                page = self.get_json(
                    path, page_params, exact_decimals=exact_decimals, fast_decode=fast_decode
                )
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
        finally:
            self._spare_body = None  # a page's buffer is kept for reuse only while paging

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
