"""`GET /v1/organization/usage/<endpoint>`: its query, validated before any request is sent,
and its buckets, validated as they arrive.

One `UsageQuery` class serves every usage endpoint: what it may filter and group by comes from
the endpoint's description (`admin_api.endpoints.UsageEndpoint`). The results inside a bucket
are checked against the same description by `admin_api.rows`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from usage_assets.admin_api.endpoints import (
    BUCKET_LIMITS,
    BUCKET_SECONDS,
    COMPLETIONS,
    UsageEndpoint,
)
from usage_assets.admin_api.params import encode_query_params
from usage_assets.admin_api.transport import AdminAPIClient, bucket_envelope
from usage_assets.admin_api.usage_pages import PLAIN_TEXT, UsageResults, decode_usage_page
from usage_assets.errors import PayloadError, QueryValidationError

__all__ = [
    "BUCKET_LIMITS",
    "BUCKET_SECONDS",
    "COMPLETIONS_USAGE_PATH",
    "GROUP_BY_FIELDS",
    "CompletionsUsageQuery",
    "UsageBucket",
    "UsageQuery",
    "UsageResults",
    "in_time_order",
    "iter_usage",
    "iter_usage_buckets",
]

COMPLETIONS_USAGE_PATH: Final = COMPLETIONS.path
#: Every field the completions endpoint accepts in `group_by` today (the default grouping).
GROUP_BY_FIELDS: Final[tuple[str, ...]] = COMPLETIONS.group_by_fields

FilterValue = tuple[str, ...] | bool | None


@dataclass(frozen=True)
class UsageQuery:
    """Every parameter of a usage endpoint; `page` is supplied by the pager. `filters` maps the
    endpoint's filter parameters (`project_ids`, `models`, `sizes`, `batch`, ...) to values."""

    start_time: int
    end_time: int | None = None
    bucket_width: str = "1d"
    group_by: tuple[str, ...] = field(default=())
    limit: int | None = None
    filters: Mapping[str, FilterValue] = field(default_factory=dict)
    endpoint: UsageEndpoint = COMPLETIONS

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise QueryValidationError(
                f"Invalid {self.endpoint.name} usage query: " + "; ".join(problems)
            )

    def _problems(self) -> Iterable[str]:
        if isinstance(self.start_time, bool) or not isinstance(self.start_time, int):
            yield f"start_time must be Unix seconds (int), got {self.start_time!r}"
        elif self.start_time < 0:
            yield f"start_time must be >= 0, got {self.start_time}"
        if self.end_time is not None and (
            isinstance(self.end_time, bool)
            or not isinstance(self.end_time, int)
            or (isinstance(self.start_time, int) and self.end_time <= self.start_time)
        ):
            yield f"end_time must be Unix seconds after start_time, got {self.end_time!r}"
        if self.bucket_width not in BUCKET_SECONDS:
            yield f"bucket_width must be one of {sorted(BUCKET_SECONDS)}, got {self.bucket_width!r}"
        elif self.limit is not None:
            maximum = BUCKET_LIMITS[self.bucket_width][1]
            if isinstance(self.limit, bool) or not isinstance(self.limit, int):
                yield f"limit must be an integer, got {self.limit!r}"
            elif not 1 <= self.limit <= maximum:
                yield (
                    f"limit must be between 1 and {maximum} buckets for "
                    f"bucket_width={self.bucket_width}, got {self.limit}"
                )
        allowed = self.endpoint.group_by_fields
        unknown = [name for name in self.group_by if name not in allowed]
        if unknown:
            yield f"group_by fields {unknown} are not supported; allowed: {list(allowed)}"
        if len(set(self.group_by)) != len(self.group_by):
            yield f"group_by lists a field twice: {list(self.group_by)}"
        for name, values in self.filters.items():
            yield from self._filter_problems(name, values)

    def _filter_problems(self, name: str, values: FilterValue) -> Iterable[str]:
        described = self.endpoint.filter(name)
        if described is None:
            names = [f.name for f in self.endpoint.filters]
            yield f"{name} is not a filter of the {self.endpoint.name} endpoint; allowed: {names}"
        elif described.kind == "boolean":
            if values is not None and not isinstance(values, bool):
                yield f"{name} must be true, false or unset, got {values!r}"
        elif (
            isinstance(values, str | bool)
            or values is None
            or not all(isinstance(v, str) and v for v in values)
        ):
            yield f"{name} must be a sequence of non-empty strings, got {values!r}"
        elif described.allowed and (bad := [v for v in values if v not in described.allowed]):
            yield f"{name} values {bad} are not documented; allowed: {list(described.allowed)}"

    @property
    def bucket_seconds(self) -> int:
        return BUCKET_SECONDS[self.bucket_width]

    def to_params(self) -> list[tuple[str, str]]:
        return encode_query_params(
            {
                "start_time": self.start_time,
                "end_time": self.end_time,
                "bucket_width": self.bucket_width,
                **{
                    f.name: self.filters.get(f.name)
                    for f in self.endpoint.filters
                    if f.name in self.filters
                },
                "group_by": self.group_by,
                "limit": self.limit,
            }
        )


def CompletionsUsageQuery(
    *,
    start_time: int,
    end_time: int | None = None,
    bucket_width: str = "1d",
    project_ids: tuple[str, ...] = (),
    user_ids: tuple[str, ...] = (),
    api_key_ids: tuple[str, ...] = (),
    models: tuple[str, ...] = (),
    batch: bool | None = None,
    group_by: tuple[str, ...] = (),
    limit: int | None = None,
) -> UsageQuery:
    """A completions `UsageQuery` with the endpoint's filters as keyword arguments (empty
    arrays and an unset batch flag are left out)."""
    arrays = {
        "project_ids": project_ids,
        "user_ids": user_ids,
        "api_key_ids": api_key_ids,
        "models": models,
    }
    filters: dict[str, FilterValue] = {
        name: values
        for name, values in arrays.items()
        if isinstance(values, str) or not isinstance(values, Iterable) or tuple(values)
    }
    if batch is not None:
        filters["batch"] = batch
    return UsageQuery(
        start_time=start_time,
        end_time=end_time,
        bucket_width=bucket_width,
        group_by=tuple(group_by) if isinstance(group_by, list) else group_by,
        limit=limit,
        filters=filters,
        endpoint=COMPLETIONS,
    )


@dataclass
class UsageBucket:
    """One time bucket; `results` are the raw result objects, kept whole: a list, or (from
    the API) `UsageResults`, each decoded from its JSON as it is read."""

    start_time: int
    end_time: int
    results: Sequence[Any]

    @classmethod
    def parse(cls, raw: Any, query: UsageQuery, plain_text: bool = False) -> UsageBucket:
        """The bucket `raw` of a page of `query`, validated; `plain_text` says the page's
        strings need no check (`usage_pages.PLAIN_TEXT`)."""
        start, end, results = bucket_envelope(raw, "usage")
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
        named = "" if query.endpoint is COMPLETIONS else f"{query.endpoint.name} "
        when = dt.datetime.fromtimestamp(start, dt.UTC).isoformat()
        return cls(start, end, UsageResults(results, f"{named}usage bucket {when}", plain_text))

    def take_results(self) -> Sequence[Any]:
        """Hand the results over, keeping none, so they are freed once the taker is done
        (iterating `UsageResults` decodes one result at a time)."""
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


def iter_usage_buckets(client: AdminAPIClient, query: UsageQuery) -> Iterator[UsageBucket]:
    """Buckets as the pages bring them, each validated: a bucket split across pages comes
    out as consecutive parts with the same start. Only the current page is held. Consumers
    check the order with `in_time_order` (`iter_usage` and
    `normalize.split_by_day` do)."""
    pages = client.iter_pages(query.endpoint.path, query.to_params(), fast_decode=decode_usage_page)
    for page in pages:
        yield from page_buckets(page, query)
        del page


def page_buckets(page: dict[str, Any], query: UsageQuery) -> Iterator[UsageBucket]:
    """The buckets of one decoded page of `query`, each validated, taken out of the page as
    they go (a consumed bucket is not kept alive by it)."""
    data = page["data"]
    plain_text = page.get(PLAIN_TEXT) is True
    data.reverse()
    while data:
        yield UsageBucket.parse(data.pop(), query, plain_text)


def iter_usage(client: AdminAPIClient, query: UsageQuery) -> Iterator[UsageBucket]:
    """Whole buckets in time order; a bucket continued on the next page comes out as one."""
    pending: UsageBucket | None = None
    for bucket in in_time_order(iter_usage_buckets(client, query)):
        if pending is not None and bucket.start_time == pending.start_time:
            pending.results = UsageResults.joined(pending.results, bucket.results)
            continue
        if pending is not None:
            yield pending
        pending = bucket
    if pending is not None:
        yield pending
