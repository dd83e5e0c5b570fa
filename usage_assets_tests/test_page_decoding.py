"""Usage pages on the fast path: the body read into one buffer (reused once a page is done),
the envelope decoded by msgspec with each result kept as a view of its JSON and decoded when it
is read; what the fast path cannot vouch for goes to the json module, whose verdicts stand.

Pages are served by `responses` or, for what only a real socket shows (no Content-Length,
chunked, gzip, a body cut short), by a small HTTP server in a thread.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import math
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import msgspec
import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from usage_assets.admin_api import transport
from usage_assets.admin_api.endpoints import COMPLETIONS, IMAGES, USAGE_ENDPOINTS, UsageEndpoint
from usage_assets.admin_api.rows import (
    BIGINT_MAX,
    DaySummary,
    UsageRow,
    _result_struct,
    _rows,
    split_by_day,
)
from usage_assets.admin_api.transport import AdminAPIClient, read_body
from usage_assets.admin_api.usage import (
    UsageBucket,
    UsageQuery,
    iter_usage,
    iter_usage_buckets,
    page_buckets,
)
from usage_assets.admin_api.usage_pages import PLAIN_TEXT, UsageResults, decode_usage_page
from usage_assets.errors import PayloadError
from usage_assets.warehouse.models import USAGE_COPY_COLUMNS
from usage_assets_tests.test_admin_api import (
    BASE_URL,
    DAY,
    START,
    USAGE_URL,
    bucket,
    fast_retry,
    page,
    query,
    result,
)

from .conftest import free_port

HOUR = 3600
START_ISO = "2024-11-01T00:00:00+00:00"  # test_admin_api.START


def body_of(payload: Any) -> bytearray:
    return bytearray(json.dumps(payload).encode())


def hourly(start: int, results: list[Any]) -> dict[str, Any]:
    return bucket(start, results, width=HOUR)


def hour_query() -> Any:
    return query(bucket_width="1h", end_time=START + DAY)


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client() -> Iterator[AdminAPIClient]:
    c = AdminAPIClient(BASE_URL, "sk-admin-test", retry=fast_retry())
    yield c
    c.close()


# ---------------------------------------------------------------- the decoder


def test_results_stay_views_into_the_body_until_decoded() -> None:
    results = [result("a"), result("b", future={"nested": [1, 2]})]
    body = body_of(page([bucket(START, results)]))

    decoded = decode_usage_page(body)

    assert decoded is not None
    raw = decoded["data"][0]["results"]
    assert [type(r) for r in raw] == [msgspec.Raw, msgspec.Raw]
    with pytest.raises(BufferError):  # the views pin the body: nothing was copied out of it
        body.append(0)
    assert [json.loads(bytes(r)) for r in raw] == results
    del decoded, raw
    body.append(0)  # the last view gone, the buffer is free again


def test_unknown_envelope_fields_are_ignored_and_every_result_field_is_kept() -> None:
    results = [result("a", input_cache_write_7d_tokens=3, labels={"team": ["x", None]})]
    payload = page([{**bucket(START, results), "granularity": "day"}])
    payload["usage_tier"] = {"new": True}

    decoded = decode_usage_page(body_of(payload))

    assert decoded is not None
    parsed = UsageBucket.parse(decoded["data"][0], query())
    assert list(parsed.results) == results


@pytest.mark.parametrize(
    "body",
    [
        # What json refuses: retried as a body that is not JSON.
        b'{"object": "page", "data": [',
        b"<html>502 Bad Gateway</html>",
        json.dumps(page([bucket(START, [result("caf\u00e9")])])).encode().replace(b"caf", b"\xff"),
        # What json reads and msgspec does not: decoded by json, as before.
        json.dumps(page([bucket(START, [result("a", score=math.nan)])])).encode(),
        json.dumps(page([bucket(START, [result("a", note="x\ud800y")])])).encode(),
        # Drifted envelopes: json's checks name the page, bucket and field.
        json.dumps({"object": "page", "data": {}, "has_more": False}).encode(),
        json.dumps({"object": "page", "data": [], "has_more": "false"}).encode(),
        json.dumps({"object": "page", "data": []}).encode(),
        json.dumps({"object": 7, "data": [], "has_more": False}).encode(),
        json.dumps(page([bucket(START), "bucket"])).encode(),
        json.dumps(page([{**bucket(START), "start_time": str(START)}])).encode(),
        json.dumps(page([{**bucket(START), "start_time": True}])).encode(),
        json.dumps(page([{**bucket(START), "end_time": float(START + DAY)}])).encode(),
        json.dumps(page([{**bucket(START), "results": {}}])).encode(),
        json.dumps(page([{k: v for k, v in bucket(START).items() if k != "results"}])).encode(),
        json.dumps([bucket(START)]).encode(),
    ],
)
def test_what_the_fast_path_cannot_vouch_for_is_left_to_json(body: bytes) -> None:
    assert decode_usage_page(bytearray(body)) is None


@pytest.mark.parametrize(
    ("name", "ensure_ascii", "plain"),
    [
        ("proj_a", True, True),
        ("caf\u00e9 \U0001f600", False, True),  # as UTF-8: no escape at all
        ("caf\u00e9", True, True),  # \u00e9
        ('say "hi"\n\t\\', True, True),  # escapes that decode to no NUL and no surrogate
        ("\U0001f600", True, False),  # \ud83d\ude00: a pair, but any \ud escape is checked
        ("a\x00b", True, False),  # \u0000
        ("\\u0000", True, False),  # a backslash then u0000: text, but the search cannot tell
    ],
)
def test_a_page_is_plain_text_only_without_an_escape_to_a_nul_or_a_surrogate(
    name: str, ensure_ascii: bool, plain: bool
) -> None:
    payload = page([bucket(START, [result("a", project_id=name)])])
    decoded = decode_usage_page(bytearray(json.dumps(payload, ensure_ascii=ensure_ascii).encode()))

    assert decoded is not None
    assert decoded[PLAIN_TEXT] is plain
    [parsed] = page_buckets(decoded, query(bucket_width="1d"))
    assert isinstance(parsed.results, UsageResults) and parsed.results.plain_text is plain


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=6), min_size=1, max_size=4), st.booleans())
def test_no_string_of_a_plain_text_page_holds_a_nul_or_a_surrogate(
    names: list[str], ascii_only: bool
) -> None:
    results = [{**result("a", project_id=name), name: name} for name in names]
    body = json.dumps(page([bucket(START, results)]), ensure_ascii=ascii_only)
    decoded = decode_usage_page(bytearray(body.encode("utf-8", "surrogatepass")))
    if decoded is None or not decoded[PLAIN_TEXT]:
        return  # checked field by field, as before
    for raw in decoded["data"][0]["results"]:
        for text in _texts(msgspec.json.decode(raw)):
            assert "\x00" not in text
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# ---------------------------------------------------------------- results, decoded as read


def rows_of(client: AdminAPIClient) -> list[tuple[Any, ...]]:
    return [
        row for _, rows in split_by_day(iter_usage_buckets(client, hour_query())) for row in rows
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (5, "result #2 is a int, expected an object"),
        ("text", "result #2 is a str, expected an object"),
        ([1, 2], "result #2 is a list, expected an object"),
        (None, "result #2 is a NoneType, expected an object"),
        (result("c", input_tokens="12"), "result #2: input_tokens='12' is not an integer"),
    ],
)
def test_a_bad_result_among_views_is_refused_naming_its_bucket_and_index(
    client: AdminAPIClient, http: responses.RequestsMock, bad: Any, message: str
) -> None:
    http.get(USAGE_URL, json=page([hourly(START, [result("a"), result("b"), bad])]))

    with pytest.raises(PayloadError) as excinfo:
        rows_of(client)

    assert f"usage bucket {START_ISO} {message}" in str(excinfo.value)
    assert client.request_count == 1  # a drifted result is not retried


def test_a_result_msgspec_refuses_is_decoded_as_json_decoded_it(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    text = json.dumps(page([hourly(START, [result("a", spread=1.5)])])).replace("1.5", "1e400")
    assert decode_usage_page(bytearray(text.encode())) is not None  # the envelope passes
    http.get(USAGE_URL, body=text)

    [row] = rows_of(client)

    assert json.loads(row[-1])["spread"] == "Infinity"  # json.loads made it inf, as before


def test_a_result_no_decoder_can_read_is_a_payload_error_naming_it(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    text = json.dumps(page([hourly(START, [result("a"), result("b", huge=1)])]))
    http.get(USAGE_URL, body=text.replace('"huge": 1', '"huge": 1' + "0" * 5000))

    expected = re.escape(f"usage bucket {START_ISO} result #1 cannot be decoded")
    with pytest.raises(PayloadError, match=expected):
        rows_of(client)


def test_usage_results_read_like_the_list_they_replace() -> None:
    results = [result("a"), result("b"), result("c")]
    views = decode_usage_page(body_of(page([bucket(START, results)])))
    assert views is not None
    lazy = UsageResults(views["data"][0]["results"], "usage bucket x")

    assert len(lazy) == 3 and bool(lazy) and not UsageResults()
    assert lazy == results and results == lazy and lazy != results[:2]
    assert (lazy[0], lazy[-1]) == (results[0], results[-1])
    assert lazy[1:] == results[1:]
    with pytest.raises(IndexError):
        lazy[3]
    lazy[0]["model"] = "changed"  # each read decodes afresh, as the views are the data
    assert lazy[0]["model"] == "a"
    assert UsageResults.joined(lazy, [result("d")]) == [*results, result("d")]
    assert "'model': 'b'" in repr(lazy)


def test_take_results_hands_over_the_views_and_keeps_none(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, json=page([hourly(START, [result("a"), result("b")])]))
    [parsed] = iter_usage_buckets(client, hour_query())

    taken = parsed.take_results()

    assert parsed.results == []
    assert [r["model"] for r in taken] == ["a", "b"]


# ---------------------------------------------------------------- the body, in one buffer


def fake_response(body: bytes, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.raw = io.BytesIO(body)
    response.headers = CaseInsensitiveDict(headers)
    return response


BODY = bytes(range(256)) * 1200  # 300 KiB: several of read_body's 64 KiB chunks


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": str(len(BODY))},
        {},
        {"Content-Length": str(len(BODY) + 1000)},  # said more: the buffer is cut to what came
        {"Content-Length": str(len(BODY) - 1000)},  # said less: the buffer grows
        {"Content-Length": "many"},
        {"Content-Length": str(2**50)},  # not believed: a PiB is never allocated
        {"Content-Length": "10", "Content-Encoding": "gzip"},  # the size of what was sent
    ],
)
def test_read_body_returns_the_whole_body_whatever_the_headers_say(
    headers: dict[str, str],
) -> None:
    body = read_body(fake_response(BODY, headers))

    assert isinstance(body, bytearray)
    assert body == BODY


@pytest.mark.parametrize("spare_size", [10, len(BODY), 3 * len(BODY)])
def test_read_body_fills_a_spare_buffer_of_any_size(spare_size: int) -> None:
    spare = bytearray(b"\xee" * spare_size)

    body = read_body(fake_response(BODY, {"Content-Length": str(len(BODY))}), spare)

    assert body is spare
    assert body == BODY


class _PageServer(BaseHTTPRequestHandler):
    """Serves `payload` the way `mode` says; "cut" modes send half the body, then hang up, once."""

    protocol_version = "HTTP/1.1"
    payload: ClassVar[bytes] = b""
    modes: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        mode = self.modes.pop(0) if len(self.modes) > 1 else self.modes[0]
        body = self.payload
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if mode == "gzip":
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if mode in ("length", "gzip", "cut-length"):
            self.send_header("Content-Length", str(len(body)))
        if mode in ("chunked", "cut-chunked"):
            self.send_header("Transfer-Encoding", "chunked")
        if mode == "until-close":
            self.send_header("Connection", "close")
        self.end_headers()
        if mode in ("chunked", "cut-chunked"):
            parts = [body[at : at + 50_000] for at in range(0, len(body), 50_000)]
            for part in parts[: len(parts) // 2] if mode == "cut-chunked" else parts:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            if mode == "chunked":
                self.wfile.write(b"0\r\n\r\n")
        elif mode.startswith("cut"):
            self.wfile.write(body[: len(body) // 2])
        else:
            self.wfile.write(body)
        if mode.startswith("cut") or mode == "until-close":
            self.close_connection = True


@pytest.fixture
def page_server() -> Iterator[tuple[str, type[_PageServer]]]:
    handler = type("Handler", (_PageServer,), {"modes": ["length"]})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


MANY = [result(f"model-{i}", input_tokens=i, note="x" * (i % 50)) for i in range(3000)]


@pytest.mark.parametrize(
    "modes",
    [
        ["length"],
        ["until-close"],  # no Content-Length: read until the server closes
        ["chunked"],
        ["gzip"],  # Content-Length is the compressed size
        ["cut-length", "length"],  # a body cut short is retried
        ["cut-chunked", "cut-length", "chunked"],
    ],
)
def test_a_page_arrives_whole_however_it_is_sent(
    page_server: tuple[str, type[_PageServer]], modes: list[str]
) -> None:
    base_url, handler = page_server
    handler.payload = json.dumps(page([hourly(START, MANY)])).encode()
    handler.modes = list(modes)
    client = AdminAPIClient(base_url, None, retry=fast_retry())

    [got] = iter_usage(client, hour_query())

    assert got.results == MANY
    assert client.request_count == len(modes)


def test_a_200_that_is_not_utf8_is_retried_like_any_body_that_is_not_json(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    good = json.dumps(page([hourly(START, [result("caf\u00e9")])])).encode()
    http.get(USAGE_URL, body=good.replace(b"caf", b"\xfe\xff"))
    http.get(USAGE_URL, body=good)

    [got] = iter_usage(client, hour_query())

    assert [r["model"] for r in got.results] == ["caf\u00e9"]
    assert client.request_count == 2


# ---------------------------------------------------------------- one buffer, reused


def serve_pages(http: responses.RequestsMock, count: int) -> list[list[dict[str, Any]]]:
    """`count` pages of one hourly bucket each, of nearly the same size; their results."""
    served = []
    for number in range(count):
        results = [result(f"p{number}-{i}", input_tokens=number * 100 + i) for i in range(200)]
        last = number == count - 1
        http.get(
            USAGE_URL,
            json=page([hourly(START + number * HOUR, results)], not last, f"cursor-{number}"),
        )
        served.append(results)
    return served


@pytest.fixture
def buffers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int | None, int]]:
    """(id of the spare buffer given, id of the buffer returned) of every body read."""
    calls: list[tuple[int | None, int]] = []
    real = transport.read_body

    def spy(response: requests.Response, into: bytearray | None = None) -> bytearray:
        body = real(response, into)
        calls.append((None if into is None else id(into), id(body)))
        return body

    monkeypatch.setattr(transport, "read_body", spy)
    return calls


def test_a_consumed_pages_buffer_is_reused_for_the_next(
    client: AdminAPIClient,
    http: responses.RequestsMock,
    buffers: list[tuple[int | None, int]],
) -> None:
    served = serve_pages(http, 3)

    consumed = [list(b.take_results()) for b in iter_usage_buckets(client, hour_query())]

    assert consumed == served
    first = buffers[0][1]
    assert buffers == [(None, first), (first, first), (first, first)]


def test_a_page_still_in_use_is_never_overwritten(
    client: AdminAPIClient,
    http: responses.RequestsMock,
    buffers: list[tuple[int | None, int]],
) -> None:
    served = serve_pages(http, 3)

    held = list(iter_usage_buckets(client, hour_query()))  # every page's views kept alive

    assert [b.results for b in held] == served
    assert [into for into, _ in buffers] == [None, None, None]
    assert len({body for _, body in buffers}) == 3


def test_rows_of_a_reused_buffer_are_the_rows_of_their_own_page(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    served = serve_pages(http, 4)
    summary = DaySummary(dt.date(2024, 11, 1))  # test_admin_api.START's day

    rows = list(summary.rows(iter_usage_buckets(client, hour_query())))

    model = USAGE_COPY_COLUMNS.index("model")
    assert [row[model] for row in rows] == [r["model"] for results in served for r in results]
    assert (summary.row_count, summary.bucket_count) == (800, 4)


# ---------------------------------------------------------------- results into rows: the struct


def endpoint_bucket(endpoint: UsageEndpoint, texts: list[str]) -> UsageBucket:
    """One hourly bucket of `endpoint` whose results are the JSON `texts`: views, or (a page
    msgspec refuses, e.g. for a NaN) what `json` decoded, as the client does."""
    body = json.dumps(page([hourly(START, [])])).replace(
        '"results": []', f'"results": [{",".join(texts)}]'
    )
    decoded = decode_usage_page(bytearray(body.encode())) or json.loads(body)
    q = UsageQuery(START, START + HOUR, bucket_width="1h", endpoint=endpoint)
    [parsed] = page_buckets(decoded, q)  # as the client parses it, plain text or not
    return parsed


def outcome(bucket: UsageBucket, results: Any, endpoint: UsageEndpoint) -> list[UsageRow] | str:
    try:
        return list(_rows(bucket, results, endpoint))
    except PayloadError as exc:
        return f"PayloadError: {exc}"


def both_paths(
    endpoint: UsageEndpoint, texts: list[str]
) -> tuple[list[UsageRow] | str, list[UsageRow] | str]:
    """What `_rows` makes of the views (the struct where it accepts them) and of the decoded
    dicts, as every result took before."""
    bucket = endpoint_bucket(endpoint, texts)
    assert isinstance(bucket.results, UsageResults)
    return outcome(bucket, bucket.results, endpoint), outcome(
        bucket, list(bucket.results), endpoint
    )


def full_result(endpoint: UsageEndpoint, text: str = "proj_a") -> dict[str, Any]:
    values = {"text": text, "boolean": True}
    return {
        "object": endpoint.result_object,
        **{d.name: values[d.type] for d in endpoint.dimensions},
        **{m.name: at * 1000 + 7 for at, m in enumerate(endpoint.metrics)},
    }


def valid_results(endpoint: UsageEndpoint) -> list[str]:
    """Results the struct accepts, in every form the contract allows."""
    required = {m.name: 0 for m in endpoint.metrics if m.required}
    full = full_result(endpoint)
    return [
        json.dumps(full),
        json.dumps(dict(reversed(full.items()))),  # any field order
        json.dumps(full_result(endpoint, "caf\u00e9 \U0001f600 \u00e9")),  # non-ASCII, escaped
        json.dumps(full_result(endpoint, "caf\u00e9 \U0001f600"), ensure_ascii=False),  # as UTF-8
        json.dumps(required),  # no object, no dimension, no optional metric
        json.dumps(
            {
                "object": endpoint.result_object,
                **{d.name: None for d in endpoint.dimensions},
                **{m.name: BIGINT_MAX if m.required else None for m in endpoint.metrics},
            }
        ),
        json.dumps({**full, **{d.name: False for d in endpoint.dimensions if d.type == "boolean"}}),
        # A key twice: the last one counts, as json.loads decides.
        json.dumps(full)[:-1] + f', "{endpoint.metrics[0].name}": 42}}',
    ]


@pytest.mark.parametrize("endpoint", USAGE_ENDPOINTS, ids=lambda e: e.name)
def test_the_struct_and_the_dict_path_make_the_same_rows_for_every_endpoint(
    endpoint: UsageEndpoint,
) -> None:
    texts = valid_results(endpoint)
    struct = _result_struct(endpoint)
    for item in endpoint_bucket(endpoint, texts).results.items:  # type: ignore[attr-defined]
        struct.decode(item)  # each one takes the fast path

    fast, by_dict = both_paths(endpoint, texts)

    assert fast == by_dict
    assert isinstance(fast, list) and len(fast) == len(texts)
    assert all(row[-1] is None for row in fast)  # no unknown field: no `result` JSON
    assert fast[-1][3 + len(endpoint.dimensions)] == 42


@pytest.mark.parametrize("endpoint", USAGE_ENDPOINTS, ids=lambda e: e.name)
def test_an_unknown_field_still_lands_in_the_result_column(endpoint: UsageEndpoint) -> None:
    drifted = {**full_result(endpoint), "input_cache_write_7d_tokens": 3, "labels": {"a": [None]}}
    texts = [json.dumps(full_result(endpoint)), json.dumps(drifted)]

    fast, by_dict = both_paths(endpoint, texts)

    assert fast == by_dict
    assert isinstance(fast, list)
    assert fast[0][-1] is None
    assert json.loads(fast[1][-1]) == {"input_cache_write_7d_tokens": 3, "labels": {"a": [None]}}
    assert fast[1][:-1] == fast[0][:-1]


def completions_text(**fields: Any) -> str:
    """A completions result with `fields` replaced (a field given as ... is left out)."""
    result = {**full_result(COMPLETIONS), **fields}
    return json.dumps({k: v for k, v in result.items() if v is not ...})


HUGE = 10**400  # json.loads reads 1e400 as inf


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (completions_text(input_tokens=True), "input_tokens=True is not an integer token count"),
        (completions_text(input_tokens=1.0), "input_tokens=1.0 is not an integer token count"),
        (completions_text(input_tokens="12"), "input_tokens='12' is not an integer token count"),
        (completions_text(input_tokens=[1]), "input_tokens=[1] is not an integer token count"),
        (completions_text(input_tokens=math.nan), "input_tokens=nan is not an integer token count"),
        (
            completions_text(input_tokens=HUGE).replace(str(HUGE), "1e400"),
            "input_tokens=inf is not an integer token count",
        ),
        (completions_text(input_tokens=-1), "input_tokens=-1 is negative"),
        (
            completions_text(input_tokens=2**63),
            f"input_tokens={2**63} is larger than a PostgreSQL bigint can hold ({BIGINT_MAX})",
        ),
        (completions_text(input_tokens=None), "required field 'input_tokens' is missing or null"),
        (completions_text(input_tokens=...), "required field 'input_tokens' is missing or null"),
        (
            completions_text(num_model_requests=...),
            "required field 'num_model_requests' is missing or null",
        ),
        (completions_text(input_cached_tokens=-5), "input_cached_tokens=-5 is negative"),
        (
            completions_text(output_image_tokens=False),
            "output_image_tokens=False is not an integer token count",
        ),
        (completions_text(batch=1), "batch=1 is not a boolean"),
        (completions_text(batch="true"), "batch='true' is not a boolean"),
        (completions_text(model=5), "model=5 is not a string"),
        (completions_text(model=True), "model=True is not a string"),
        (completions_text(user_id={"id": "u"}), "user_id={'id': 'u'} is not a string"),
        (
            completions_text(model="a\x00b"),
            "model='a\\x00b' contains a NUL character, which PostgreSQL text cannot store",
        ),
        (
            completions_text(api_source="a\ud800b"),
            "api_source='a\\ud800b' contains a lone surrogate, which is not valid Unicode text",
        ),
        (
            completions_text(object="organization.usage.embeddings.result"),
            "object='organization.usage.embeddings.result', "
            "expected 'organization.usage.completions.result'",
        ),
        (
            completions_text(object=None),
            "object=None, expected 'organization.usage.completions.result'",
        ),
        ("[1, 2]", "is a list, expected an object"),
        ('"text"', "is a str, expected an object"),
        ("7", "is a int, expected an object"),
        ("null", "is a NoneType, expected an object"),
    ],
)
def test_what_the_struct_refuses_is_the_payload_error_it_was(text: str, message: str) -> None:
    decode = _result_struct(COMPLETIONS).decode
    if "NUL" in message:  # the struct takes it; the text check after it refuses it
        decode(msgspec.Raw(text.encode()))
    else:  # refused by the struct: the dict path decides, as before
        with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
            decode(msgspec.Raw(text.encode()))

    fast, by_dict = both_paths(COMPLETIONS, [completions_text(), text])

    separator = " " if message.startswith("is a") else ": "
    expected = f"PayloadError: usage bucket {START_ISO} result #1{separator}{message}"
    assert fast == by_dict == expected


def test_a_refused_first_value_of_a_key_given_twice_is_decided_by_the_dict_path() -> None:
    text = completions_text(input_tokens=-1)[:-1] + ', "input_tokens": 5}'  # json: the last

    fast, by_dict = both_paths(COMPLETIONS, [text])

    assert fast == by_dict
    assert isinstance(fast, list) and fast[0][USAGE_COPY_COLUMNS.index("input_tokens")] == 5


def test_a_view_the_struct_refuses_is_named_by_its_endpoint_and_index() -> None:
    bad = {**full_result(IMAGES), "images": -3}
    texts = [json.dumps(full_result(IMAGES))] * 2 + [json.dumps(bad)]

    fast, by_dict = both_paths(IMAGES, texts)

    assert (
        fast
        == by_dict
        == f"PayloadError: images usage bucket {START_ISO} result #2: images=-3 is negative"
    )


#: Values of every kind the API could send in place of a field's.
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from([0, BIGINT_MAX, BIGINT_MAX + 1, 2**64, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["a\x00", "\u00e9", "x\ud800", "\\u0000", "proj_a"]),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def drifted_results(draw: st.DrawFn) -> tuple[UsageEndpoint, list[str]]:
    """A valid result of some endpoint with a few fields replaced, removed or added."""
    endpoint = draw(st.sampled_from(USAGE_ENDPOINTS))
    texts = []
    for _ in range(draw(st.integers(1, 3))):
        result: dict[str, Any] = full_result(endpoint)
        names = st.sampled_from(["object", *result, "new_field"])
        for name in draw(st.lists(names, max_size=3)):
            if draw(st.booleans()):
                result[name] = draw(json_values)
            else:
                result.pop(name, None)
        texts.append(json.dumps(result))
    return endpoint, texts


@settings(max_examples=300, deadline=None)
@given(drifted_results())
def test_the_struct_never_changes_what_a_result_becomes(
    case: tuple[UsageEndpoint, list[str]],
) -> None:
    fast, by_dict = both_paths(*case)

    assert fast == by_dict
