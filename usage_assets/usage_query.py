"""The query of `GET /v1/organization/usage/completions`, validated before any request is sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from usage_assets.errors import QueryValidationError
from usage_assets.models import DIMENSIONS

COMPLETIONS_USAGE_PATH: Final = "/organization/usage/completions"

BUCKET_SECONDS: Final = {"1m": 60, "1h": 3600, "1d": 86400}
#: (default, max) buckets per page for each width, as documented.
BUCKET_LIMITS: Final = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
#: Every field the API accepts in `group_by` today; the default grouping is all of them.
GROUP_BY_FIELDS: Final[tuple[str, ...]] = DIMENSIONS

ParamValue = str | int | bool | None | Iterable[str]


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
class CompletionsUsageQuery:
    """Every parameter of the endpoint; `page` is supplied by the pager."""

    start_time: int
    end_time: int | None = None
    bucket_width: str = "1d"
    project_ids: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    batch: bool | None = None
    group_by: tuple[str, ...] = field(default=())
    limit: int | None = None

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise QueryValidationError("Invalid completions usage query: " + "; ".join(problems))

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
        unknown = [name for name in self.group_by if name not in GROUP_BY_FIELDS]
        if unknown:
            yield f"group_by fields {unknown} are not supported; allowed: {list(GROUP_BY_FIELDS)}"
        if len(set(self.group_by)) != len(self.group_by):
            yield f"group_by lists a field twice: {list(self.group_by)}"
        for name in ("project_ids", "user_ids", "api_key_ids", "models"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
                yield f"{name} must be a sequence of non-empty strings, got {values!r}"
        if self.batch is not None and not isinstance(self.batch, bool):
            yield f"batch must be true, false or unset, got {self.batch!r}"

    @property
    def bucket_seconds(self) -> int:
        return BUCKET_SECONDS[self.bucket_width]

    def to_params(self) -> list[tuple[str, str]]:
        return encode_query_params(
            {
                "start_time": self.start_time,
                "end_time": self.end_time,
                "bucket_width": self.bucket_width,
                "project_ids": self.project_ids,
                "user_ids": self.user_ids,
                "api_key_ids": self.api_key_ids,
                "models": self.models,
                "batch": self.batch,
                "group_by": self.group_by,
                "limit": self.limit,
            }
        )
