"""The simulated Admin API: real HTTP on loopback, the real API's validation, paging and limits,
and fault injection for rehearsing what goes wrong in production.

Serves `GET /v1/organization/usage/<name>` for every usage endpoint of `contract` (see
`usage_api`), `GET /v1/organization/costs` (`billing`) and the directory's list endpoints
(`directory`); any other path is a 404.

Faults are queued (in process via `SimulatedAdminAPI.faults`, or from another process with
`POST /_simulator/faults`) and each applies to the next matching request(s).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from usage_assets.simulator import billing, directory
from usage_assets.simulator.contract import (
    API_PREFIX,
    COMPLETIONS,
    COMPLETIONS_USAGE_PATH,
    COSTS_PATH,
    ENDPOINT_OF_RESULT_OBJECT,
    USAGE_ENDPOINTS,
    USAGE_PATH_PREFIX,
)
from usage_assets.simulator.http_params import ApiError, Query, encode_cursor
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.usage_api import usage_page

__all__ = [
    "API_PREFIX",
    "FAULT_KINDS",
    "ApiError",
    "Fault",
    "FaultPlan",
    "SimulatedAdminAPI",
    "iter_faults",
]
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
    `truncated` (200 whose body stops half way), `drift` (a result whose first metric, e.g.
    input_tokens, is a string; a cost whose amount is not a number; a list item whose id is
    not a string), `repeat_cursor` (has_more with a cursor that comes back again), `outside_window`
    (the first bucket moved a day past the requested window), `drop_buckets` (the buckets
    starting at `starts` left out; all of them when `starts` is None).

    path: the API path it applies to, e.g. `/organization/usage/images` or
    `/organization/costs` (default: completions usage).
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
    #: Keep the encoded answers of up to this many MiB of requests and serve a repeated request
    #: (same path and query) from memory: a benchmark measures the client, not how fast the
    #: simulator builds a page. 0 (the default) builds every answer.
    page_cache_mib: int = 0
    _page_cache: OrderedDict[str, bytes] = field(default_factory=OrderedDict, init=False)
    _page_cache_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

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

    def cached_page(self, request: str) -> bytes | None:
        with self._page_cache_lock:
            body = self._page_cache.get(request)
            if body is not None:
                self._page_cache.move_to_end(request)
            return body

    def keep_page(self, request: str, body: bytes) -> None:
        limit = self.page_cache_mib * 2**20
        if len(body) > limit:
            return
        with self._page_cache_lock:
            self._page_cache[request] = body
            while sum(len(b) for b in self._page_cache.values()) > limit:
                self._page_cache.popitem(last=False)

    def usage_requests(self) -> int:
        """Requests served for the completions usage endpoint."""
        return self.endpoint_requests(COMPLETIONS.name)

    def endpoint_requests(self, endpoint: str) -> int:
        """Requests served for the usage endpoint `endpoint` (e.g. "embeddings")."""
        path = API_PREFIX + USAGE_ENDPOINTS[endpoint].path
        return sum(1 for served, _ in self.requests if served == path)

    # ------------------------------------------------------------------ endpoints

    def usage(self, endpoint: str, query: Query) -> dict[str, Any]:
        """One page of the usage endpoint `endpoint` (e.g. "completions") for `query`."""
        return usage_page(
            self.org,
            USAGE_ENDPOINTS[endpoint],
            query,
            max_results_per_page=self.max_results_per_page,
        )

    def completions_usage(self, query: Query) -> dict[str, Any]:
        return self.usage(COMPLETIONS.name, query)


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
            cached = self.api.cached_page(self.path) if fault is None else None
            if cached is not None:
                self._send(200, cached)
                return
            payload = self._route(path, query)
        except ApiError as err:
            self._send_json(err.status, err.body())
            return
        if fault is None and self.api.page_cache_mib:
            body = json.dumps(payload).encode()
            self.api.keep_page(self.path, body)
            self._send(200, body)
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

    def _route(self, path: str, query: Query) -> dict[str, Any]:
        usage_prefix = API_PREFIX + USAGE_PATH_PREFIX
        if path.startswith(usage_prefix) and path[len(usage_prefix) :] in USAGE_ENDPOINTS:
            return self.api.usage(path[len(usage_prefix) :], query)
        if path == API_PREFIX + COSTS_PATH:
            return billing.costs(self.api.org, query)
        listed = directory.route(self.api.org, path, query)
        if listed is not None:
            return listed
        raise ApiError(404, f"Invalid URL (GET {path})")


def _apply_payload_fault(fault: Fault, payload: dict[str, Any], query: Query) -> dict[str, Any]:
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
                    endpoint = ENDPOINT_OF_RESULT_OBJECT.get(result.get("object"), COMPLETIONS)
                    metric = endpoint.metrics[0]
                    result[metric] = str(result[metric])
                break
    elif fault.kind == "repeat_cursor":
        # The first page points at a cursor; fetching it answers with that same cursor again.
        first = buckets[0]["start_time"] if buckets else 0
        fresh = payload.get("next_page") or encode_cursor(first, 0)
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


def _apply_list_fault(fault: Fault, payload: dict[str, Any], query: Query) -> dict[str, Any]:
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
