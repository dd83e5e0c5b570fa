"""The completions usage query: parameter encoding and validation before any request is sent.

Expected values come from the reference documents (/work/shared/reference), not from the code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from usage_assets.admin_api.params import encode_query_params
from usage_assets.admin_api.usage import BUCKET_LIMITS, GROUP_BY_FIELDS, CompletionsUsageQuery
from usage_assets.errors import QueryValidationError

START = 1_730_419_200  # 2024-11-01T00:00:00Z, aligned to every bucket width
DAY = 86_400


def invalid(**kwargs: Any) -> str:
    """Build a query that must be rejected and return the error message."""
    kwargs.setdefault("start_time", START)
    with pytest.raises(QueryValidationError) as excinfo:
        CompletionsUsageQuery(**kwargs)
    return str(excinfo.value)


# ---------------------------------------------------------------- encode_query_params


def test_arrays_are_encoded_as_repeated_parameters_in_order() -> None:
    encoded = encode_query_params({"group_by": ["project_id", "model"]})

    assert encoded == [("group_by", "project_id"), ("group_by", "model")]
    # The API reference's curl example: group_by=project_id&group_by=model (no `[]`).
    assert urlencode(encoded) == "group_by=project_id&group_by=model"


def test_array_order_is_kept_as_given_not_sorted() -> None:
    encoded = encode_query_params({"models": ("gpt-4o", "gpt-4o-mini", "babbage-002")})

    assert encoded == [
        ("models", "gpt-4o"),
        ("models", "gpt-4o-mini"),
        ("models", "babbage-002"),
    ]


def test_any_iterable_is_an_array() -> None:
    encoded = encode_query_params({"project_ids": (p for p in ["proj_a", "proj_b"])})

    assert encoded == [("project_ids", "proj_a"), ("project_ids", "proj_b")]


@pytest.mark.parametrize(("value", "expected"), [(True, "true"), (False, "false")])
def test_booleans_are_lowercase_true_false(value: bool, expected: str) -> None:
    assert encode_query_params({"batch": value}) == [("batch", expected)]


def test_false_is_sent_not_dropped() -> None:
    # batch=false means "non-batch jobs only": it must not be confused with "unset".
    assert ("batch", "false") in encode_query_params({"batch": False, "limit": None})


def test_none_and_empty_arrays_are_omitted() -> None:
    encoded = encode_query_params(
        {
            "end_time": None,
            "project_ids": (),
            "user_ids": [],
            "group_by": ["model"],
            "batch": None,
        }
    )

    assert encoded == [("group_by", "model")]


def test_integers_and_strings_are_single_values_in_given_order() -> None:
    encoded = encode_query_params(
        {"start_time": START, "bucket_width": "1h", "limit": 24, "page": "page_AAAA="}
    )

    assert encoded == [
        ("start_time", str(START)),
        ("bucket_width", "1h"),
        ("limit", "24"),
        ("page", "page_AAAA="),
    ]


def test_empty_mapping_encodes_to_nothing() -> None:
    assert encode_query_params({}) == []


# ---------------------------------------------------------------- documented constants


def test_bucket_limits_match_the_documentation() -> None:
    # (default, max) buckets per page: 1d 7/31, 1h 24/168, 1m 60/1440.
    assert BUCKET_LIMITS == {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


def test_group_by_fields_are_every_documented_field() -> None:
    documented = {
        "project_id",
        "user_id",
        "api_key_id",
        "model",
        "batch",
        "service_tier",
        "api_source",
    }
    assert set(GROUP_BY_FIELDS) == documented
    assert len(GROUP_BY_FIELDS) == len(documented)


# ---------------------------------------------------------------- to_params


def test_to_params_of_a_full_query_contains_every_parameter() -> None:
    query = CompletionsUsageQuery(
        start_time=START,
        end_time=START + 2 * DAY,
        bucket_width="1h",
        project_ids=("proj_a", "proj_b"),
        user_ids=("user-a",),
        api_key_ids=("key_a", "key_b"),
        models=("gpt-4o-mini-2024-07-18",),
        batch=True,
        group_by=("project_id", "model"),
        limit=48,
    )

    params = query.to_params()

    assert params == [
        ("start_time", str(START)),
        ("end_time", str(START + 2 * DAY)),
        ("bucket_width", "1h"),
        ("project_ids", "proj_a"),
        ("project_ids", "proj_b"),
        ("user_ids", "user-a"),
        ("api_key_ids", "key_a"),
        ("api_key_ids", "key_b"),
        ("models", "gpt-4o-mini-2024-07-18"),
        ("batch", "true"),
        ("group_by", "project_id"),
        ("group_by", "model"),
        ("limit", "48"),
    ]
    assert {name for name, _ in params} == {
        "start_time",
        "end_time",
        "bucket_width",
        "project_ids",
        "user_ids",
        "api_key_ids",
        "models",
        "batch",
        "group_by",
        "limit",
    }
    # The pager adds `page`; the query itself never does.
    assert "page" not in dict(params)


def test_to_params_with_full_group_by_sends_every_field() -> None:
    query = CompletionsUsageQuery(start_time=START, group_by=GROUP_BY_FIELDS)

    sent = [value for name, value in query.to_params() if name == "group_by"]

    assert sent == list(GROUP_BY_FIELDS)


def test_to_params_of_a_minimal_query_leaves_unset_parameters_out() -> None:
    params = CompletionsUsageQuery(start_time=START).to_params()

    names = [name for name, _ in params]
    assert ("start_time", str(START)) in params
    for unset in (
        "end_time",
        "project_ids",
        "user_ids",
        "api_key_ids",
        "models",
        "batch",
        "group_by",
        "limit",
        "page",
    ):
        assert unset not in names
    assert all(value != "" for _, value in params)
    # If the width is sent at all, it is the documented default.
    assert dict(params).get("bucket_width", "1d") == "1d"


def test_to_params_sends_batch_false() -> None:
    params = CompletionsUsageQuery(start_time=START, batch=False).to_params()

    assert ("batch", "false") in params


def test_bucket_seconds_per_width() -> None:
    assert CompletionsUsageQuery(start_time=START, bucket_width="1m").bucket_seconds == 60
    assert CompletionsUsageQuery(start_time=START, bucket_width="1h").bucket_seconds == 3600
    assert CompletionsUsageQuery(start_time=START, bucket_width="1d").bucket_seconds == DAY


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("width", ["1w", "1D", "60s", "", "day"])
def test_rejects_an_unknown_bucket_width(width: str) -> None:
    message = invalid(bucket_width=width)

    assert "bucket_width" in message
    assert repr(width) in message
    for allowed in ("1m", "1h", "1d"):
        assert allowed in message


@pytest.mark.parametrize(("width", "maximum"), [("1m", 1440), ("1h", 168), ("1d", 31)])
def test_rejects_a_limit_above_the_maximum_for_the_width(width: str, maximum: int) -> None:
    message = invalid(bucket_width=width, limit=maximum + 1)

    assert "limit" in message
    assert str(maximum) in message
    assert str(maximum + 1) in message
    assert width in message


@pytest.mark.parametrize("width", ["1m", "1h", "1d"])
@pytest.mark.parametrize("limit", [0, -1])
def test_rejects_a_limit_below_one(width: str, limit: int) -> None:
    message = invalid(bucket_width=width, limit=limit)

    assert "limit" in message
    assert str(limit) in message


@pytest.mark.parametrize(("width", "maximum"), [("1m", 1440), ("1h", 168), ("1d", 31)])
def test_accepts_a_limit_at_the_maximum_and_at_one(width: str, maximum: int) -> None:
    at_max = CompletionsUsageQuery(start_time=START, bucket_width=width, limit=maximum)
    at_one = CompletionsUsageQuery(start_time=START, bucket_width=width, limit=1)

    assert ("limit", str(maximum)) in at_max.to_params()
    assert ("limit", "1") in at_one.to_params()


def test_a_limit_valid_for_one_width_is_checked_against_the_width_in_use() -> None:
    # 168 is fine for 1h but far above the 1d maximum of 31.
    CompletionsUsageQuery(start_time=START, bucket_width="1h", limit=168)
    message = invalid(bucket_width="1d", limit=168)

    assert "31" in message


@pytest.mark.parametrize("limit", [True, "7", 7.0])
def test_rejects_a_limit_that_is_not_an_integer(limit: Any) -> None:
    message = invalid(limit=limit)

    assert "limit" in message


def test_rejects_an_unknown_group_by_field() -> None:
    message = invalid(group_by=("project_id", "organization_id"))

    assert "group_by" in message
    assert "organization_id" in message
    # The message says what is allowed.
    assert "api_source" in message


def test_rejects_a_duplicated_group_by_field() -> None:
    message = invalid(group_by=("model", "project_id", "model"))

    assert "group_by" in message
    assert "twice" in message or "duplicate" in message.lower()
    assert "model" in message


def test_accepts_every_group_by_field() -> None:
    query = CompletionsUsageQuery(start_time=START, group_by=tuple(GROUP_BY_FIELDS))

    assert query.group_by == tuple(GROUP_BY_FIELDS)


@pytest.mark.parametrize("end_time", [START, START - 1, 0])
def test_rejects_end_time_not_after_start_time(end_time: int) -> None:
    message = invalid(end_time=end_time)

    assert "end_time" in message
    assert str(end_time) in message


def test_accepts_end_time_one_second_after_start() -> None:
    query = CompletionsUsageQuery(start_time=START, end_time=START + 1)

    assert ("end_time", str(START + 1)) in query.to_params()


@pytest.mark.parametrize("start_time", [str(START), float(START), None, "2024-11-01"])
def test_rejects_a_start_time_that_is_not_an_int(start_time: Any) -> None:
    message = invalid(start_time=start_time)

    assert "start_time" in message
    assert repr(start_time) in message


@pytest.mark.parametrize("start_time", [True, False])
def test_rejects_a_bool_as_start_time(start_time: bool) -> None:
    # bool is an int subclass in Python; True must not become start_time=1.
    message = invalid(start_time=start_time)

    assert "start_time" in message
    assert repr(start_time) in message


def test_rejects_a_negative_start_time() -> None:
    message = invalid(start_time=-1)

    assert "start_time" in message


@pytest.mark.parametrize("end_time", [True, str(START + DAY), float(START + DAY)])
def test_rejects_an_end_time_that_is_not_an_int(end_time: Any) -> None:
    message = invalid(end_time=end_time)

    assert "end_time" in message


@pytest.mark.parametrize("name", ["models", "project_ids", "user_ids", "api_key_ids"])
def test_rejects_a_plain_string_where_an_array_is_expected(name: str) -> None:
    # A plain string would otherwise be sent one character at a time.
    message = invalid(**{name: "gpt-4o"})

    assert name in message
    assert "'gpt-4o'" in message


@pytest.mark.parametrize("values", [("gpt-4o", ""), ("gpt-4o", None), (1,)])
def test_rejects_array_items_that_are_not_non_empty_strings(values: tuple[Any, ...]) -> None:
    message = invalid(models=values)

    assert "models" in message


@pytest.mark.parametrize("batch", ["true", 1, 0])
def test_rejects_a_batch_flag_that_is_not_a_bool(batch: Any) -> None:
    message = invalid(batch=batch)

    assert "batch" in message


def test_reports_every_problem_at_once() -> None:
    message = invalid(
        start_time=START,
        end_time=START,
        bucket_width="1d",
        limit=99,
        group_by=("nope",),
        models="gpt-4o",
    )

    for fragment in ("end_time", "limit", "group_by", "models"):
        assert fragment in message


def test_validation_error_names_the_query() -> None:
    message = invalid(bucket_width="2d")

    assert "completions usage query" in message.lower()
