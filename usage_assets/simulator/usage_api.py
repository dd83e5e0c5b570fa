"""`GET /v1/organization/usage/<name>`: every usage endpoint of the contract, with the documented
validation, limits, paging and bucket envelope.

- `start_time` is required; `end_time` (default: now) must be after it; `bucket_width` is `1m`,
  `1h` or `1d` (default `1d`) and `limit` counts buckets, with each width's default and max.
- `group_by` fields and filters are the endpoint's own: any other `group_by` field is a 400
  naming `group_by`; a value outside a documented enumeration (`sizes`, `sources`,
  `context_levels`) is a 400 naming the filter. Parameters an endpoint does not document are
  ignored.
- One bucket per period of the window, empty ones included (`results: []`). A bucket's
  results may continue on the next page once a page holds `max_results_per_page` results.
- Buckets wider than an hour sum the hours' counts; a gauge (`usage_bytes` of vector stores) is
  the largest hourly value within the bucket. A 1m bucket reports an hour's usage in the
  hour's first minute (gauges too: the hour's stored bytes, in its first minute only); the
  other minutes of the hour are empty.
"""

from __future__ import annotations

import time
from typing import Any

from usage_assets.simulator.contract import (
    BUCKET_LIMITS,
    BUCKET_SECONDS,
    DEFAULT_BUCKET_WIDTH,
    UsageEndpoint,
)
from usage_assets.simulator.http_params import (
    ApiError,
    Query,
    array_param,
    bool_param,
    decode_cursor,
    encode_cursor,
    int_param,
    limit_param,
)
from usage_assets.simulator.organization import SyntheticOrganization


def _group_by(endpoint: UsageEndpoint, query: Query) -> list[str]:
    group_by = array_param(query, "group_by")
    for name in group_by:
        if name not in endpoint.dimensions:
            raise ApiError(
                400,
                f"Invalid group_by field '{name}' for {endpoint.path}. "
                f"Supported: {', '.join(endpoint.dimensions)}.",
                param="group_by",
            )
    return group_by


def _filters(endpoint: UsageEndpoint, query: Query) -> dict[str, list[Any]]:
    """The endpoint's filters in the query, by dimension; checks documented enumerations."""
    filters: dict[str, list[Any]] = {}
    for spec in endpoint.filters:
        if spec.boolean:
            flag = bool_param(query, spec.param)
            if flag is not None:
                filters[spec.dimension] = [flag]
            continue
        values = array_param(query, spec.param)
        if spec.allowed is not None:
            for value in values:
                if value not in spec.allowed:
                    raise ApiError(
                        400,
                        f"Invalid value '{value}' for '{spec.param}'. "
                        f"Supported: {', '.join(spec.allowed)}.",
                        param=spec.param,
                    )
        if values:
            filters[spec.dimension] = values
    return filters


def usage_page(
    org: SyntheticOrganization,
    endpoint: UsageEndpoint,
    query: Query,
    *,
    max_results_per_page: int,
) -> dict[str, Any]:
    """One page of `endpoint`'s usage for `query`."""
    start = int_param(query, "start_time", required=True)
    assert start is not None
    width = query.get("bucket_width", [DEFAULT_BUCKET_WIDTH])[-1]
    if width not in BUCKET_SECONDS:
        raise ApiError(
            400, f"Invalid bucket_width '{width}'. Supported: 1m, 1h, 1d.", param="bucket_width"
        )
    seconds = BUCKET_SECONDS[width]
    limit = limit_param(query, BUCKET_LIMITS[width], f" for bucket_width={width}")
    end = int_param(query, "end_time")
    if end is None:
        end = int(time.time())
    if end <= start:
        raise ApiError(400, "end_time must be greater than start_time.", param="end_time")
    group_by = _group_by(endpoint, query)
    filters = _filters(endpoint, query)

    first = start - start % seconds
    cursor_start, offset = first, 0
    if query.get("page"):
        cursor_start, offset = decode_cursor(query["page"][-1])
        if cursor_start < first or cursor_start >= end:
            raise ApiError(400, "Page cursor does not belong to this query.", param="page")

    data: list[dict[str, Any]] = []
    emitted = 0
    bucket_start = cursor_start
    next_page: str | None = None
    while bucket_start < end and len(data) < limit:
        results = _bucket_results(org, endpoint, bucket_start, seconds, group_by, filters)
        room = max_results_per_page - emitted
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
            next_page = encode_cursor(bucket_start, offset + len(chunk))
            break
        offset = 0
        bucket_start += seconds
    if next_page is None and bucket_start < end:
        next_page = encode_cursor(bucket_start, 0)
    return {
        "object": "page",
        "data": data,
        "has_more": next_page is not None,
        "next_page": next_page,
    }


def _bucket_results(
    org: SyntheticOrganization,
    endpoint: UsageEndpoint,
    bucket_start: int,
    seconds: int,
    group_by: list[str],
    filters: dict[str, list[Any]],
) -> list[dict[str, Any]]:
    if seconds == 60 and bucket_start % 3600:
        return []  # minute buckets: an hour's usage is reported in its first minute
    return org.endpoint_results(
        endpoint.name,
        bucket_start,
        bucket_start + max(seconds, 3600),
        group_by=group_by,
        filters=filters,
    )
