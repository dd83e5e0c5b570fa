"""The Admin API client against HTTP faked at the transport with `responses`.

Nothing of the client itself is mocked; waits are made tiny with RetrySettings, and where the
exact wait matters the sleep that tenacity calls is recorded instead of slept.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from tenacity import nap

from usage_assets.admin_api.transport import (
    AdminAPIClient,
    RetrySettings,
    TransientAPIError,
    parse_retry_after,
)
from usage_assets.admin_api.usage import (
    COMPLETIONS_USAGE_PATH,
    CompletionsUsageQuery,
    UsageBucket,
    iter_usage,
)
from usage_assets.errors import AdminAPIError, PayloadError

BASE_URL = "https://api.test.example/v1"
USAGE_URL = BASE_URL + "/organization/usage/completions"
ADMIN_KEY = "sk-admin-SECRETSECRET1234567890"
ORG = "org-test123"
DAY = 86_400
START = 1_730_419_200  # 2024-11-01T00:00:00Z
CURSOR_1 = "page_AAAAAGdGxdEiJdKOAAAAAGcqsYA="
CURSOR_2 = "page_BBBBBGdGxdEiJdKOAAAAAGcqsYB="
MAX_ATTEMPTS = 4


# ---------------------------------------------------------------- helpers and fixtures


def fast_retry(**overrides: float) -> RetrySettings:
    settings: dict[str, Any] = {
        "max_attempts": MAX_ATTEMPTS,
        "initial_backoff_seconds": 0.001,
        "max_backoff_seconds": 0.01,
    }
    settings.update(overrides)
    return RetrySettings(**settings)


def make_client(**kwargs: Any) -> AdminAPIClient:
    kwargs.setdefault("base_url", BASE_URL)
    kwargs.setdefault("admin_key", ADMIN_KEY)
    kwargs.setdefault("retry", fast_retry())
    return AdminAPIClient(**kwargs)


@pytest.fixture
def client() -> Iterator[AdminAPIClient]:
    c = make_client(organization=ORG)
    yield c
    c.close()


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait tenacity asks for, recorded instead of slept.

    tenacity's Retrying binds `tenacity.nap.sleep` as its default, which calls `time.sleep`
    looked up on the `time` module at call time; patching it there catches every retry wait.
    """
    recorded: list[float] = []
    monkeypatch.setattr(nap.time, "sleep", lambda seconds: recorded.append(float(seconds)))
    return recorded


def query(**kwargs: Any) -> CompletionsUsageQuery:
    kwargs.setdefault("start_time", START)
    kwargs.setdefault("end_time", START + 3 * DAY)
    kwargs.setdefault("bucket_width", "1d")
    return CompletionsUsageQuery(**kwargs)


def result(model: str, input_tokens: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": input_tokens,
        "output_tokens": 10,
        "num_model_requests": 1,
        "model": model,
        **extra,
    }


def bucket(start: int, results: list[Any] | None = None, width: int = DAY) -> dict[str, Any]:
    return {
        "object": "bucket",
        "start_time": start,
        "end_time": start + width,
        "results": results if results is not None else [],
    }


def page(data: list[Any], has_more: bool = False, next_page: str | None = None) -> dict[str, Any]:
    return {"object": "page", "data": data, "has_more": has_more, "next_page": next_page}


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", **extra}}


def query_of(call: Any) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(call.request.url).query, keep_blank_values=True)


def fetch(client: AdminAPIClient, q: CompletionsUsageQuery | None = None) -> list[UsageBucket]:
    return list(iter_usage(client, q or query()))


def ok(http: responses.RequestsMock, body: Any = None) -> None:
    http.get(USAGE_URL, json=body if body is not None else page([bucket(START)]))


# ---------------------------------------------------------------- paging


def test_follows_next_page_until_has_more_is_false(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    q = query(group_by=("project_id", "model"))
    http.get(USAGE_URL, json=page([bucket(START)], has_more=True, next_page=CURSOR_1))
    http.get(USAGE_URL, json=page([bucket(START + DAY)], has_more=True, next_page=CURSOR_2))
    http.get(USAGE_URL, json=page([bucket(START + 2 * DAY)], has_more=False, next_page=None))

    buckets = fetch(client, q)

    assert [b.start_time for b in buckets] == [START, START + DAY, START + 2 * DAY]
    assert len(http.calls) == 3
    first, second, third = (query_of(call) for call in http.calls)
    assert first == q.to_params()
    assert ("page", CURSOR_1) not in first and "page" not in dict(first)
    # Later requests repeat the whole query and add the cursor from the previous page.
    assert second == [*q.to_params(), ("page", CURSOR_1)]
    assert third == [*q.to_params(), ("page", CURSOR_2)]
    # group_by is sent as repeated parameters, in order.
    assert "group_by=project_id&group_by=model" in urlsplit(http.calls[0].request.url).query
    paths = {urlsplit(c.request.url).path for c in http.calls}
    assert paths == {"/v1/organization/usage/completions"}


def test_stops_on_the_first_page_when_has_more_is_false_even_with_a_cursor(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, json=page([bucket(START)], has_more=False, next_page=CURSOR_1))
    http.get(USAGE_URL, json=page([bucket(START + DAY)]))

    buckets = fetch(client)

    assert [b.start_time for b in buckets] == [START]
    assert len(http.calls) == 1


def test_iter_pages_yields_every_page(client: AdminAPIClient, http: responses.RequestsMock) -> None:
    http.get(USAGE_URL, json=page([bucket(START)], has_more=True, next_page=CURSOR_1))
    http.get(USAGE_URL, json=page([], has_more=False))

    pages = list(client.iter_pages(COMPLETIONS_USAGE_PATH, [("limit", "1")]))

    assert [len(p["data"]) for p in pages] == [1, 0]
    assert query_of(http.calls[1]) == [("limit", "1"), ("page", CURSOR_1)]


def test_trailing_slash_on_base_url_is_tolerated(http: responses.RequestsMock) -> None:
    ok(http)
    c = make_client(base_url=BASE_URL + "/")

    fetch(c)

    assert urlsplit(http.calls[0].request.url).path == "/v1/organization/usage/completions"


def test_merges_a_bucket_continued_on_the_next_page(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    day2 = START + DAY
    http.get(
        USAGE_URL,
        json=page(
            [bucket(START, [result("a")]), bucket(day2, [result("b"), result("c")])],
            has_more=True,
            next_page=CURSOR_1,
        ),
    )
    http.get(
        USAGE_URL,
        json=page([bucket(day2, [result("d")]), bucket(START + 2 * DAY, [result("e")])]),
    )

    buckets = fetch(client)

    assert [b.start_time for b in buckets] == [START, day2, START + 2 * DAY]
    assert [[r["model"] for r in b.results] for b in buckets] == [["a"], ["b", "c", "d"], ["e"]]
    assert buckets[1].end_time == day2 + DAY


def test_keeps_whole_result_objects_and_empty_buckets(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    future_field = {"input_cache_write_12h_tokens": 7, "something_new": {"nested": [1, 2]}}
    http.get(
        USAGE_URL,
        json=page([bucket(START, []), bucket(START + DAY, [result("m", **future_field)])]),
    )

    buckets = fetch(client)

    assert buckets[0].results == []
    assert buckets[1].results == [result("m", **future_field)]


def test_buckets_out_of_order_on_one_page_are_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, json=page([bucket(START + DAY), bucket(START)]))

    with pytest.raises(PayloadError, match="out of order"):
        fetch(client)


def test_buckets_out_of_order_across_pages_are_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(
        USAGE_URL,
        json=page([bucket(START + DAY), bucket(START + 2 * DAY)], True, CURSOR_1),
    )
    http.get(USAGE_URL, json=page([bucket(START)]))

    with pytest.raises(PayloadError, match="out of order"):
        fetch(client)


def serve_cursor_graph(
    http: responses.RequestsMock, next_cursor: dict[str | None, str]
) -> list[str | None]:
    """Serve pages whose `next_page` follows `next_cursor`; returns the cursors requested.

    A client that misses the loop gets has_more=false after 20 requests, so the test fails
    instead of hanging.
    """
    served: list[str | None] = []

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        cursor = dict(parse_qsl(urlsplit(request.url or "").query)).get("page")
        served.append(cursor)
        if len(served) > 20:
            return 200, {}, json.dumps(page([]))
        return 200, {}, json.dumps(page([], True, next_cursor[cursor]))

    http.add_callback(responses.GET, USAGE_URL, callback=callback)
    return served


def test_a_cursor_repeated_immediately_is_a_loop(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    served = serve_cursor_graph(http, {None: CURSOR_1, CURSOR_1: CURSOR_1})

    with pytest.raises(PayloadError) as excinfo:
        fetch(client)

    assert "loop" in str(excinfo.value)
    assert CURSOR_1 in str(excinfo.value)
    assert served == [None, CURSOR_1]
    assert client.request_count == 2


def test_a_cursor_cycle_is_detected_and_requests_stay_bounded(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    # A -> B -> A: not the same cursor twice in a row, but a loop all the same.
    served = serve_cursor_graph(http, {None: CURSOR_1, CURSOR_1: CURSOR_2, CURSOR_2: CURSOR_1})

    with pytest.raises(PayloadError) as excinfo:
        fetch(client)

    assert "loop" in str(excinfo.value)
    assert served == [None, CURSOR_1, CURSOR_2]
    assert client.request_count == 3


@pytest.mark.parametrize("next_page", [None, ""])
def test_has_more_without_a_cursor_is_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock, next_page: str | None
) -> None:
    http.get(USAGE_URL, json=page([bucket(START)], has_more=True, next_page=next_page))
    ok(http)

    with pytest.raises(PayloadError) as excinfo:
        fetch(client)

    assert "next_page" in str(excinfo.value)
    assert len(http.calls) == 1


def test_has_more_with_next_page_key_absent_is_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, json={"object": "page", "data": [], "has_more": True})

    with pytest.raises(PayloadError, match="next_page"):
        fetch(client)


# ---------------------------------------------------------------- page envelope


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"object": "page", "has_more": False, "next_page": None}, "data"),
        ({"object": "page", "data": None, "has_more": False}, "data"),
        ({"object": "page", "data": {"a": 1}, "has_more": False}, "data"),
        ({"object": "page", "data": []}, "has_more"),
        ({"object": "page", "data": [], "has_more": "false"}, "has_more"),
        ({"object": "page", "data": [], "has_more": 0}, "has_more"),
        ({"object": "list", "data": [], "has_more": False}, "page"),
    ],
)
def test_page_envelope_problems_are_payload_errors(
    client: AdminAPIClient, http: responses.RequestsMock, body: dict[str, Any], fragment: str
) -> None:
    http.get(USAGE_URL, json=body)

    with pytest.raises(PayloadError) as excinfo:
        fetch(client)

    assert fragment in str(excinfo.value)
    assert len(http.calls) == 1


def test_a_json_array_body_is_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, json=[bucket(START)])

    with pytest.raises(PayloadError) as excinfo:
        client.get_json(COMPLETIONS_USAGE_PATH, [])

    assert "list" in str(excinfo.value)
    assert "object" in str(excinfo.value)
    # A well-formed JSON answer that breaks the contract is not retried.
    assert client.request_count == 1


# ---------------------------------------------------------------- bucket validation


def test_a_bucket_of_the_wrong_width_is_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, json=page([bucket(START, width=3600)]))

    with pytest.raises(PayloadError) as excinfo:
        fetch(client)

    assert "3600" in str(excinfo.value)
    assert "1d" in str(excinfo.value)


@pytest.mark.parametrize(
    "start",
    [
        START - DAY,  # ends exactly at start_time (end is exclusive): entirely before
        START - 5 * DAY,
        START + 3 * DAY,  # starts exactly at end_time (exclusive)
        START + 10 * DAY,
    ],
)
def test_a_bucket_outside_the_requested_window_is_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock, start: int
) -> None:
    http.get(USAGE_URL, json=page([bucket(start)]))

    with pytest.raises(PayloadError, match="outside the requested window"):
        fetch(client, query(start_time=START, end_time=START + 3 * DAY))


def test_buckets_at_both_edges_of_the_window_are_accepted(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, json=page([bucket(START), bucket(START + 2 * DAY)]))

    buckets = fetch(client, query(start_time=START, end_time=START + 3 * DAY))

    assert [b.start_time for b in buckets] == [START, START + 2 * DAY]


@pytest.mark.parametrize("bad", [str(START), float(START), None, True])
def test_a_bucket_with_a_non_int_start_time_is_a_payload_error(
    client: AdminAPIClient, http: responses.RequestsMock, bad: Any
) -> None:
    raw = bucket(START)
    raw["start_time"] = bad
    http.get(USAGE_URL, json=page([raw]))

    with pytest.raises(PayloadError, match="start_time"):
        fetch(client)


@pytest.mark.parametrize(
    "raw",
    [
        {"object": "bucket", "start_time": START, "end_time": START + DAY},
        {"object": "bucket", "start_time": START, "end_time": START + DAY, "results": {}},
        {"object": "not-a-bucket", "start_time": START, "end_time": START + DAY, "results": []},
        [START, START + DAY],
        "bucket",
    ],
)
def test_malformed_buckets_are_payload_errors(raw: Any) -> None:
    with pytest.raises(PayloadError):
        UsageBucket.parse(raw, query())


# ---------------------------------------------------------------- retries


def test_429_with_retry_after_then_200_recovers(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(
        USAGE_URL,
        status=429,
        json=error_body("Rate limit reached", type="rate_limit_exceeded"),
        headers={"Retry-After": "0"},
    )
    ok(http)

    buckets = fetch(client)

    assert [b.start_time for b in buckets] == [START]
    assert len(http.calls) == 2
    assert client.request_count == 2


@pytest.mark.parametrize("statuses", [[500], [502], [503], [500, 502, 503]])
def test_server_errors_then_200_recover(
    client: AdminAPIClient, http: responses.RequestsMock, statuses: list[int]
) -> None:
    for status in statuses:
        http.get(USAGE_URL, status=status, json=error_body("The server had an error"))
    ok(http)

    buckets = fetch(client)

    assert [b.start_time for b in buckets] == [START]
    assert len(http.calls) == len(statuses) + 1


def test_connection_error_then_200_recovers(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, body=requests.ConnectionError("connection reset by peer"))
    http.get(USAGE_URL, body=requests.Timeout("read timed out"))
    ok(http)

    buckets = fetch(client)

    assert [b.start_time for b in buckets] == [START]
    assert client.request_count == 3


def test_a_body_cut_short_then_200_recovers(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    # ChunkedEncodingError is not a requests.ConnectionError; a truncated body is transient too.
    http.get(USAGE_URL, body=requests.exceptions.ChunkedEncodingError("connection broken"))
    ok(http)

    buckets = fetch(client)

    assert [b.start_time for b in buckets] == [START]
    assert client.request_count == 2


def test_exhausting_max_attempts_gives_up_with_the_last_status(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, status=500, json=error_body("first failure"))
    http.get(USAGE_URL, status=502, json=error_body("second failure"))
    http.get(USAGE_URL, status=503, json=error_body("still overloaded"))
    ok(http)  # would be served on a fifth attempt, which must not happen

    c = make_client(retry=fast_retry(max_attempts=3))
    with pytest.raises(AdminAPIError) as excinfo:
        fetch(c)

    message = str(excinfo.value)
    assert "gave up" in message.lower()
    assert "3 attempts" in message
    assert "503" in message
    assert "still overloaded" in message
    assert excinfo.value.status == 503
    assert c.request_count == 3
    assert len(http.calls) == 3


def test_exhausting_attempts_on_connection_errors_gives_up(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, body=requests.ConnectionError("connection refused"))

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert "gave up" in str(excinfo.value).lower()
    assert "ConnectionError" in str(excinfo.value)
    assert client.request_count == MAX_ATTEMPTS


def test_a_non_json_200_is_retried_then_recovers(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, status=200, body="<html>proxy hiccup</html>")
    ok(http)

    buckets = fetch(client)

    assert [b.start_time for b in buckets] == [START]
    assert client.request_count == 2


def test_a_non_json_200_is_retried_then_fails_saying_it_is_not_json(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, status=200, body='{"object": "page", "data": [')  # truncated

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    message = str(excinfo.value)
    assert "not JSON" in message
    assert "gave up" in message.lower()
    assert client.request_count == MAX_ATTEMPTS
    assert len(http.calls) == MAX_ATTEMPTS


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_fail_at_once_with_openai_message(
    client: AdminAPIClient, http: responses.RequestsMock, status: int
) -> None:
    http.get(
        USAGE_URL,
        status=status,
        json=error_body(
            "Invalid value for 'group_by': 'api_source'.", param="group_by", code="invalid_value"
        ),
    )
    ok(http)  # a retry would succeed: the test fails if one is made

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    error = excinfo.value
    assert not isinstance(error, TransientAPIError)
    assert "Invalid value for 'group_by': 'api_source'." in str(error)
    assert str(status) in str(error)
    assert error.status == status
    assert error.code == "invalid_value"
    assert client.request_count == 1
    assert len(http.calls) == 1


def test_401_says_to_check_openai_admin_key(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(
        USAGE_URL,
        status=401,
        json=error_body("Incorrect API key provided.", code="invalid_api_key"),
    )

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert "OPENAI_ADMIN_KEY" in str(excinfo.value)
    assert "Incorrect API key provided." in str(excinfo.value)
    assert client.request_count == 1


def test_a_client_error_with_a_non_json_body_shows_the_body(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, status=404, body="no route /v1/organization/usage/completions")

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert "no route" in str(excinfo.value)
    assert "OPENAI_BASE_URL" in str(excinfo.value)


def test_request_count_counts_every_attempt_including_retries(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, status=429, headers={"Retry-After": "0"}, json=error_body("slow down"))
    http.get(USAGE_URL, status=500, json=error_body("oops"))
    http.get(USAGE_URL, body=requests.ConnectionError("reset"))
    ok(http)

    assert client.request_count == 0
    client.get_json(COMPLETIONS_USAGE_PATH, [])
    assert client.request_count == 4
    client.get_json(COMPLETIONS_USAGE_PATH, [])
    assert client.request_count == 5
    assert len(http.calls) == 5


# ---------------------------------------------------------------- waiting


def test_waits_exactly_the_retry_after_seconds(
    client: AdminAPIClient, http: responses.RequestsMock, sleeps: list[float]
) -> None:
    http.get(USAGE_URL, status=429, headers={"Retry-After": "2"}, json=error_body("slow"))
    http.get(USAGE_URL, status=503, headers={"Retry-After": "3"}, json=error_body("busy"))
    ok(http)

    fetch(client)

    assert sleeps == [2.0, 3.0]


def test_retry_after_is_honoured_over_a_much_longer_backoff(
    http: responses.RequestsMock, sleeps: list[float]
) -> None:
    # With a 50 s exponential backoff, anything but the server's 1 s hint is wrong.
    c = make_client(retry=fast_retry(initial_backoff_seconds=50, max_backoff_seconds=100))
    http.get(USAGE_URL, status=429, headers={"Retry-After": "1"}, json=error_body("slow"))
    ok(http)

    fetch(c)

    assert sleeps == [1.0]


def test_retry_after_as_an_http_date_is_honoured(
    client: AdminAPIClient, http: responses.RequestsMock, sleeps: list[float]
) -> None:
    when = email.utils.formatdate(int(time.time()) + 30, usegmt=True)
    http.get(USAGE_URL, status=429, headers={"Retry-After": when}, json=error_body("slow"))
    ok(http)

    fetch(client)

    assert len(sleeps) == 1
    assert 27 < sleeps[0] <= 30


def test_retry_after_is_capped_by_max_retry_after_seconds(
    http: responses.RequestsMock, sleeps: list[float]
) -> None:
    c = make_client(retry=fast_retry(max_retry_after_seconds=7))
    http.get(USAGE_URL, status=429, headers={"Retry-After": "3600"}, json=error_body("slow"))
    http.get(USAGE_URL, status=429, headers={"Retry-After": "5"}, json=error_body("slow"))
    ok(http)

    fetch(c)

    assert sleeps == [7.0, 5.0]


def test_without_retry_after_backs_off_within_the_configured_bounds(
    client: AdminAPIClient, http: responses.RequestsMock, sleeps: list[float]
) -> None:
    for _ in range(3):
        http.get(USAGE_URL, status=500, json=error_body("oops"))
    ok(http)

    fetch(client)

    assert len(sleeps) == 3
    assert all(0.001 <= s <= 0.01 for s in sleeps), sleeps


def test_backoff_uses_no_deprecated_tenacity_api(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    # The project turns DeprecationWarnings from usage_assets into errors; checked here on its
    # own so the failure names its cause even if that setting changes.
    http.get(USAGE_URL, status=500, json=error_body("oops"))
    ok(http)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fetch(client)

    deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecations == []
    assert client.request_count == 2


def test_no_wait_after_the_final_attempt(
    client: AdminAPIClient, http: responses.RequestsMock, sleeps: list[float]
) -> None:
    http.get(USAGE_URL, status=429, headers={"Retry-After": "2"}, json=error_body("slow"))

    with pytest.raises(AdminAPIError):
        fetch(client)

    assert sleeps == [2.0] * (MAX_ATTEMPTS - 1)


def test_client_errors_never_wait(
    client: AdminAPIClient, http: responses.RequestsMock, sleeps: list[float]
) -> None:
    http.get(USAGE_URL, status=400, headers={"Retry-After": "2"}, json=error_body("bad"))

    with pytest.raises(AdminAPIError):
        fetch(client)

    assert sleeps == []


# ---------------------------------------------------------------- parse_retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0", 0.0), (" 3 ", 3.0), ("1.5", 1.5), ("120", 120.0), ("-5", 0.0)],
)
def test_parse_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_in_the_future() -> None:
    when = email.utils.formatdate(int(time.time()) + 120, usegmt=True)

    seconds = parse_retry_after(when)

    assert seconds is not None
    assert 117 < seconds <= 120


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize("value", ["soon", "garbage", "Retry-After: 5", "5 seconds"])
def test_parse_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("value", [None, ""])
def test_parse_retry_after_missing_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_garbage_retry_after_falls_back_to_backoff(
    client: AdminAPIClient, http: responses.RequestsMock, sleeps: list[float]
) -> None:
    http.get(USAGE_URL, status=429, headers={"Retry-After": "whenever"}, json=error_body("x"))
    ok(http)

    fetch(client)

    assert len(sleeps) == 1
    assert 0.001 <= sleeps[0] <= 0.01


# ---------------------------------------------------------------- headers


def test_sends_bearer_admin_key_and_organization(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    ok(http)

    fetch(client)

    headers = http.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {ADMIN_KEY}"
    assert headers["OpenAI-Organization"] == ORG
    assert "application/json" in headers["Accept"]


def test_headers_are_sent_on_every_page_and_retry(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, status=500, json=error_body("oops"))
    http.get(USAGE_URL, json=page([bucket(START)], True, CURSOR_1))
    http.get(USAGE_URL, json=page([bucket(START + DAY)]))

    fetch(client)

    assert len(http.calls) == 3
    for call in http.calls:
        assert call.request.headers["Authorization"] == f"Bearer {ADMIN_KEY}"
        assert call.request.headers["OpenAI-Organization"] == ORG


def test_no_authorization_header_without_a_key(http: responses.RequestsMock) -> None:
    ok(http)
    c = make_client(admin_key=None)

    fetch(c)

    headers = http.calls[0].request.headers
    assert "Authorization" not in headers
    assert "OpenAI-Organization" not in headers


# ---------------------------------------------------------------- secrecy


def assert_secret_free(text: str) -> None:
    assert ADMIN_KEY not in text
    assert "SECRETSECRET" not in text


def test_a_401_echoing_the_key_does_not_leak_it(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(
        USAGE_URL,
        status=401,
        json=error_body(
            f"Incorrect API key provided: {ADMIN_KEY}. You can find your API key at ...",
            code="invalid_api_key",
        ),
    )

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert_secret_free(str(excinfo.value))
    assert_secret_free(repr(excinfo.value))
    # Still useful: OpenAI's message and the hint remain.
    assert "Incorrect API key provided" in str(excinfo.value)
    assert "OPENAI_ADMIN_KEY" in str(excinfo.value)


@pytest.mark.parametrize("as_json", [True, False])
def test_a_500_storm_echoing_the_key_does_not_leak_it(
    client: AdminAPIClient,
    http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    as_json: bool,
) -> None:
    echo = f"upstream failed for Authorization: Bearer {ADMIN_KEY}"
    if as_json:
        http.get(USAGE_URL, status=500, json=error_body(echo))
    else:
        http.get(USAGE_URL, status=500, body=echo)

    with caplog.at_level(logging.DEBUG), pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert client.request_count == MAX_ATTEMPTS
    assert_secret_free(str(excinfo.value))
    assert_secret_free(repr(excinfo.value))
    assert "500" in str(excinfo.value)
    # The retry warnings logged on the way must not carry it either.
    assert caplog.records, "expected a warning per retry"
    for record in caplog.records:
        assert_secret_free(record.getMessage())


def test_a_non_json_200_echoing_the_key_does_not_leak_it(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, status=200, body=f"debug: key={ADMIN_KEY}")

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert_secret_free(str(excinfo.value))


def test_a_connection_error_mentioning_the_key_does_not_leak_it(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    http.get(USAGE_URL, body=requests.ConnectionError(f"proxy refused Bearer {ADMIN_KEY}"))

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert_secret_free(str(excinfo.value))


def test_other_key_shaped_tokens_in_an_error_are_masked(
    client: AdminAPIClient, http: responses.RequestsMock
) -> None:
    # Not our key, but a key all the same (e.g. a project key echoed by OpenAI).
    other = "sk-proj-OTHERKEYabcdefghij0123456789"
    http.get(USAGE_URL, status=403, json=error_body(f"Key {other} is a project key"))

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert other not in str(excinfo.value)
    assert "OTHERKEY" not in str(excinfo.value)
    assert "is a project key" in str(excinfo.value)


@pytest.mark.parametrize("kept", [4, 8, 13, 21])
@pytest.mark.parametrize(("status", "shown"), [(400, 300), (500, 300), (200, 120)])
def test_a_key_cut_short_by_message_truncation_is_still_masked(
    client: AdminAPIClient, http: responses.RequestsMock, kept: int, status: int, shown: int
) -> None:
    # Non-JSON bodies are shortened before they go into a message (the first 300 characters
    # of an error body, 120 of a 200). Place the echoed key so the cut falls inside it, leaving
    # `kept` of its secret characters: what is left must not come out either.
    secret_part = ADMIN_KEY.removeprefix("sk-admin-")
    padding = "x" * (shown - len("sk-admin-") - kept)
    http.get(USAGE_URL, status=status, body=padding + ADMIN_KEY + " and more")

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(client)

    assert secret_part[:4] not in str(excinfo.value)


def test_a_key_that_is_not_sk_shaped_is_still_redacted(http: responses.RequestsMock) -> None:
    odd_key = "custom-gateway-token-0123456789abcdef"
    http.get(USAGE_URL, status=403, json=error_body(f"token {odd_key} lacks scope"))
    c = make_client(admin_key=odd_key)

    with pytest.raises(AdminAPIError) as excinfo:
        fetch(c)

    assert odd_key not in str(excinfo.value)
    assert "lacks scope" in str(excinfo.value)


def test_repr_of_the_client_does_not_show_the_key(client: AdminAPIClient) -> None:
    assert_secret_free(repr(client))
    assert_secret_free(str(client))
    assert BASE_URL in repr(client)
