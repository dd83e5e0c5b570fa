"""The query of `GET /v1/organization/usage/<endpoint>`, validated before any request is sent.

One `UsageQuery` class serves every usage endpoint: what it may filter and group by comes from
the endpoint's description (`endpoints.UsageEndpoint`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from usage_assets.endpoints import BUCKET_LIMITS, BUCKET_SECONDS, COMPLETIONS, UsageEndpoint
from usage_assets.errors import QueryValidationError

__all__ = [
    "BUCKET_LIMITS",
    "BUCKET_SECONDS",
    "COMPLETIONS_USAGE_PATH",
    "GROUP_BY_FIELDS",
    "CompletionsUsageQuery",
    "UsageQuery",
    "encode_query_params",
]

COMPLETIONS_USAGE_PATH: Final = COMPLETIONS.path
#: Every field the completions endpoint accepts in `group_by` today (the default grouping).
GROUP_BY_FIELDS: Final[tuple[str, ...]] = COMPLETIONS.group_by_fields

ParamValue = str | int | bool | None | Iterable[str]
FilterValue = tuple[str, ...] | bool | None


def encode_query_params(params: Mapping[str, ParamValue]) -> list[tuple[str, str]]:
    """Encode query parameters the way the API reference's examples do.

    Arrays become repeated parameters (`group_by=project_id&group_by=model`), booleans
    `true`/`false`, and None or empty arrays are left out.
    """
    encoded: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            encoded.append((name, "true" if value else "false"))
        elif isinstance(value, int | str):
            encoded.append((name, str(value)))
        else:
            encoded.extend((name, str(item)) for item in value)
    return encoded


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
