"""The simulated Admin API: real HTTP on loopback, the real API's validation, paging and limits,
and fault injection for rehearsing what goes wrong in production.

Faults are queued (in process via `SimulatedAdminAPI.faults`, or from another process with
`POST /_simulator/faults`) and each applies to the next matching request(s).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from usage_assets.models import DIMENSIONS
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.usage_query import BUCKET_LIMITS, BUCKET_SECONDS, COMPLETIONS_USAGE_PATH

API_PREFIX = "/v1"
FAULT_KINDS = (
    "status",
    "slow",
    "not_json",
    "truncated",
    "drift",
    "repeat_cursor",
    "outside_window",
    "drop_buckets",
)


@dataclass
class Fault:
    """One injected failure.

    kind: `status` (answer `status` with an OpenAI error body and optional Retry-After),
    `slow` (sleep `delay` seconds, then answer normally), `not_json` (200 with an HTML body),
    `truncated` (200 whose body stops half way), `drift` (a result whose input_tokens is a
    string), `repeat_cursor` (has_more with a cursor that comes back again), `outside_window`
    (the first bucket moved a day past the requested window).
    """

    kind: str
    times: int = 1
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    path: str = COMPLETIONS_USAGE_PATH
    starts: list[int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose from {FAULT_KINDS}")


@dataclass
class FaultPlan:
    _queue: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, **options: Any) -> Fault:
        fault = Fault(kind, **options)
        with self._lock:
            self._queue.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._queue:
                if path == API_PREFIX + fault.path or path == fault.path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._queue.remove(fault)
                    return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._queue]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": str(self),
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def _encode_cursor(bucket_start: int, offset: int) -> str:
    raw = f"{bucket_start}:{offset}".encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        if not cursor.startswith("page_"):
            raise ValueError
        start, offset = base64.urlsafe_b64decode(cursor[5:]).decode().split(":")
        return int(start), int(offset)
    except (ValueError, binascii.Error):
        raise ApiError(400, f"Invalid page cursor: '{cursor}'", param="page") from None


def _int_param(query: dict[str, list[str]], name: str, *, required: bool = False) -> int | None:
    values = query.get(name)
    if not values:
        if required:
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise ApiError(
            400, f"Invalid value for '{name}': expected an integer.", param=name
        ) from None


def _limit_param(query: dict[str, list[str]], limits: tuple[int, int], detail: str = "") -> int:
    """`limit`, or its default; outside [1, max] is a 400 naming the max (and `detail`)."""
    default_limit, max_limit = limits
    limit = _int_param(query, "limit")
    if limit is None:
        return default_limit
    if not 1 <= limit <= max_limit:
        raise ApiError(
            400, f"Invalid limit {limit}: must be between 1 and {max_limit}{detail}.", param="limit"
        )
    return limit


def _array_param(query: dict[str, list[str]], name: str) -> list[str]:
    return query.get(name, []) + query.get(f"{name}[]", [])


@dataclass
class SimulatedAdminAPI:
    """Serve a `SyntheticOrganization` as the Admin API on 127.0.0.1."""

    org: SyntheticOrganization = field(default_factory=SyntheticOrganization)
    port: int = 0
    #: When set, requests must carry `Authorization: Bearer <required_key>`.
    required_key: str | None = None
    #: Results per page before a bucket is continued on the next page.
    max_results_per_page: int = 10_000
    faults: FaultPlan = field(default_factory=FaultPlan)
    #: (path, query) of every request served, in order.
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{API_PREFIX}"

    def start(self) -> SimulatedAdminAPI:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="simulated-admin-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SimulatedAdminAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def usage_requests(self) -> int:
        return sum(1 for path, _ in self.requests if path == API_PREFIX + COMPLETIONS_USAGE_PATH)

    # ------------------------------------------------------------------ endpoints

    def completions_usage(self, query: dict[str, list[str]]) -> dict[str, Any]:
        start = _int_param(query, "start_time", required=True)
        assert start is not None
        width = query.get("bucket_width", ["1d"])[-1]
        if width not in BUCKET_SECONDS:
            raise ApiError(
                400, f"Invalid bucket_width '{width}'. Supported: 1m, 1h, 1d.", param="bucket_width"
            )
        seconds = BUCKET_SECONDS[width]
        limit = _limit_param(query, BUCKET_LIMITS[width], f" for bucket_width={width}")
        end = _int_param(query, "end_time")
        if end is None:
            end = int(time.time())
        if end <= start:
            raise ApiError(400, "end_time must be greater than start_time.", param="end_time")
        group_by = _array_param(query, "group_by")
        for name in group_by:
            if name not in DIMENSIONS:
                raise ApiError(400, f"Invalid group_by field '{name}'.", param="group_by")
        batch_values = query.get("batch")
        batch = None
        if batch_values:
            if batch_values[-1] not in ("true", "false"):
                raise ApiError(400, "Invalid value for 'batch': expected a boolean.", param="batch")
            batch = batch_values[-1] == "true"

        first = start - start % seconds
        cursor_start, offset = first, 0
        if query.get("page"):
            cursor_start, offset = _decode_cursor(query["page"][-1])
            if cursor_start < first or cursor_start >= end:
                raise ApiError(400, "Page cursor does not belong to this query.", param="page")

        data: list[dict[str, Any]] = []
        emitted = 0
        bucket_start = cursor_start
        next_page: str | None = None
        while bucket_start < end and len(data) < limit:
            results = self._bucket_results(bucket_start, seconds, group_by, query, batch)
            room = self.max_results_per_page - emitted
            chunk = results[offset : offset + room]
            data.append(
                {
                    "object": "bucket",
                    "start_time": bucket_start,
                    "end_time": bucket_start + seconds,
                    "results": chunk,
                }
            )
            emitted += len(chunk)
            if offset + len(chunk) < len(results):  # bucket continues on the next page
                next_page = _encode_cursor(bucket_start, offset + len(chunk))
                break
            offset = 0
            bucket_start += seconds
        if next_page is None and bucket_start < end:
            next_page = _encode_cursor(bucket_start, 0)
        return {
            "object": "page",
            "data": data,
            "has_more": next_page is not None,
            "next_page": next_page,
        }

    def _bucket_results(
        self,
        bucket_start: int,
        seconds: int,
        group_by: list[str],
        query: dict[str, list[str]],
        batch: bool | None,
    ) -> list[dict[str, Any]]:
        if seconds == 60 and bucket_start % 3600:
            return []  # minute buckets: an hour's usage is reported in its first minute
        return self.org.usage_results(
            bucket_start,
            bucket_start + max(seconds, 3600),
            group_by=group_by,
            project_ids=_array_param(query, "project_ids"),
            user_ids=_array_param(query, "user_ids"),
            api_key_ids=_array_param(query, "api_key_ids"),
            models=_array_param(query, "models"),
            batch=batch,
        )


class _Handler(BaseHTTPRequestHandler):
    api: SimulatedAdminAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        declared_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(declared_length or len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        if declared_length:
            self.close_connection = True

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != "/_simulator/faults":
            self._send_json(404, ApiError(404, f"Unknown path {path}").body())
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            specs = json.loads(self.rfile.read(length) or b"[]")
            added = [self.api.faults.add(**spec) for spec in specs]
        except (ValueError, TypeError) as exc:
            self._send_json(400, ApiError(400, f"bad fault spec: {exc}").body())
            return
        self._send_json(200, {"queued": [asdict(f) for f in added]})

    def do_DELETE(self) -> None:
        self.api.faults.clear()
        self._send_json(200, {"queued": []})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
        if path == "/_simulator/requests":
            self._send_json(
                200,
                {
                    "requests": len(self.api.requests),
                    "usage_requests": self.api.usage_requests(),
                    "pending_faults": self.api.faults.pending(),
                },
            )
            return
        self.api.requests.append((path, query))
        fault = self.api.faults.take(path)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind == "status":
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            message = HTTPStatus(fault.status).phrase
            kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            self._send_json(
                fault.status, ApiError(fault.status, message, kind=kind).body(), headers
            )
            return
        if fault is not None and fault.kind == "not_json":
            self._send(200, b"<html><body>502 Bad Gateway</body></html>")
            return
        try:
            self._check_auth()
            payload = self._route(path, query)
        except ApiError as err:
            self._send_json(err.status, err.body())
            return
        if fault is not None:
            payload = _apply_payload_fault(fault, payload, query)
            if fault.kind == "truncated":
                body = json.dumps(payload).encode()
                self._send(200, body[: len(body) // 2], declared_length=len(body))
                return
        self._send_json(200, payload)

    def _check_auth(self) -> None:
        expected = self.api.required_key
        if expected is None:
            return
        given = self.headers.get("Authorization", "")
        if given != f"Bearer {expected}":
            shown = given.removeprefix("Bearer ")
            raise ApiError(
                401,
                f"Incorrect API key provided: {shown[:3]}****{shown[-4:]}. "
                "You can find your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _route(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        from usage_assets.simulator import billing, directory  # they import this module

        if path == API_PREFIX + COMPLETIONS_USAGE_PATH:
            return self.api.completions_usage(query)
        if path == API_PREFIX + billing.COSTS_PATH:
            return billing.costs(self.api.org, query)
        listed = directory.route(self.api.org, path, query)
        if listed is not None:
            return listed
        raise ApiError(404, f"Invalid URL (GET {path})")


def _apply_payload_fault(
    fault: Fault, payload: dict[str, Any], query: dict[str, list[str]]
) -> dict[str, Any]:
    """Corrupt a good answer the way `fault` says; works for usage, costs and list pages."""
    payload = json.loads(json.dumps(payload))  # never mutate the organization's cached results
    if payload.get("object") == "list":
        return _apply_list_fault(fault, payload, query)
    buckets = payload.get("data", [])
    if fault.kind == "drift":
        for bucket in buckets:
            if bucket["results"]:
                result = bucket["results"][0]
                if "amount" in result:
                    result["amount"]["value"] = "twelve dollars"
                else:
                    result["input_tokens"] = str(result["input_tokens"])
                break
    elif fault.kind == "repeat_cursor":
        # The first page points at a cursor; fetching it answers with that same cursor again.
        first = buckets[0]["start_time"] if buckets else 0
        fresh = payload.get("next_page") or _encode_cursor(first, 0)
        payload["has_more"] = True
        payload["next_page"] = query.get("page", [fresh])[-1]
    elif fault.kind == "drop_buckets":
        payload["data"] = [
            bucket
            for bucket in buckets
            if fault.starts is not None and bucket["start_time"] not in fault.starts
        ]
    elif fault.kind == "outside_window" and buckets:
        buckets[0]["start_time"] += 86400 * 2
        buckets[0]["end_time"] += 86400 * 2
    return payload


def _apply_list_fault(
    fault: Fault, payload: dict[str, Any], query: dict[str, list[str]]
) -> dict[str, Any]:
    items = payload.get("data", [])
    if fault.kind == "drift" and items:
        items[0]["id"] = 12345  # ids are strings
    elif fault.kind == "repeat_cursor":
        payload["has_more"] = True
        payload["last_id"] = query.get("after", [payload.get("last_id") or "loop"])[-1]
    return payload


def iter_faults(specs: str) -> Iterator[Fault]:
    """Faults from JSON text, for the standalone simulator's --faults option."""
    for spec in json.loads(specs):
        yield Fault(**spec)
