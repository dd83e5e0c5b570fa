"""Turn API result objects into table rows, refusing payloads that drifted from the contract.

Every check runs before the first write: a wrong type, a negative count or a group listed twice
names the bucket and field and fails the partition with the previous data untouched. Fields the
API adds tomorrow are not an error: they stay in the `result` JSON column.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from usage_assets.admin_api import UsageBucket
from usage_assets.errors import PayloadError
from usage_assets.models import DIMENSIONS, OPTIONAL_METRICS, REQUIRED_METRICS

RESULT_OBJECT = "organization.usage.completions.result"

#: One row in `models.USAGE_COPY_COLUMNS` order.
UsageRow = tuple[Any, ...]


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _count(result: dict[str, Any], name: str, where: str, *, required: bool) -> int | None:
    value = result.get(name)
    if value is None:
        if required:
            raise PayloadError(f"{where}: required field {name!r} is missing or null")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{where}: {name}={value!r} is not an integer token count")
    if value < 0:
        raise PayloadError(f"{where}: {name}={value} is negative")
    return value


def normalize_result(result: Any, bucket: UsageBucket, index: int) -> UsageRow:
    """One result object as a row; raises PayloadError naming the bucket and field."""
    where = f"usage bucket {_utc(bucket.start_time).isoformat()} result #{index}"
    if not isinstance(result, dict):
        raise PayloadError(f"{where} is a {type(result).__name__}, expected an object")
    kind = result.get("object", RESULT_OBJECT)
    if kind != RESULT_OBJECT:
        raise PayloadError(f"{where}: object={kind!r}, expected {RESULT_OBJECT!r}")
    dims: list[Any] = []
    for name in DIMENSIONS:
        value = result.get(name)
        if name == "batch":
            if value is not None and not isinstance(value, bool):
                raise PayloadError(f"{where}: batch={value!r} is not a boolean")
        elif value is not None and not isinstance(value, str):
            raise PayloadError(f"{where}: {name}={value!r} is not a string")
        dims.append(value)
    metrics = [_count(result, name, where, required=True) for name in REQUIRED_METRICS]
    metrics += [_count(result, name, where, required=False) for name in OPTIONAL_METRICS]
    return (
        _utc(bucket.start_time),
        _utc(bucket.end_time),
        *dims,
        *metrics,
        json.dumps(result, separators=(",", ":"), ensure_ascii=False),
    )


@dataclass
class DayRows:
    """Rows of one UTC day, plus the totals its metadata reports."""

    day: dt.date
    rows: list[UsageRow] = field(default_factory=list)
    bucket_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    num_model_requests: int = 0
    tokens_by_project: dict[str | None, int] = field(default_factory=dict)
    _groups: set[tuple[Any, ...]] = field(default_factory=set, repr=False)
    _released: int = field(default=0, repr=False)

    @property
    def row_count(self) -> int:
        """Rows of the day, including those already released after writing."""
        return self._released + len(self.rows)

    def release(self) -> None:
        """Drop the rows once written, keeping the totals: a range run holds one day at most."""
        self._released += len(self.rows)
        self.rows = []
        self._groups = set()

    def add_bucket(self, bucket: UsageBucket) -> None:
        start = _utc(bucket.start_time)
        if start.date() != self.day or _utc(bucket.end_time - 1).date() != self.day:
            raise PayloadError(
                f"usage bucket {start.isoformat()}..{_utc(bucket.end_time).isoformat()} "
                f"does not lie inside UTC day {self.day}"
            )
        self.bucket_count += 1
        project_at = 2  # after bucket_start, bucket_end
        first_metric = 2 + len(DIMENSIONS)
        for index, result in enumerate(bucket.results):
            row = normalize_result(result, bucket, index)
            group = (bucket.start_time, *row[2:first_metric])
            if group in self._groups:
                raise PayloadError(
                    f"usage bucket {start.isoformat()} lists the group "
                    f"{dict(zip(DIMENSIONS, group[1:], strict=True))} twice"
                )
            self._groups.add(group)
            self.rows.append(row)
            inp, out, req = row[first_metric : first_metric + 3]
            self.input_tokens += inp
            self.output_tokens += out
            self.num_model_requests += req
            project = row[project_at]
            self.tokens_by_project[project] = self.tokens_by_project.get(project, 0) + inp + out


def split_by_day(buckets: Iterable[UsageBucket]) -> Iterable[DayRows]:
    """Group time-ordered buckets into whole UTC days, yielding each day once it is complete."""
    current: DayRows | None = None
    for bucket in buckets:
        day = _utc(bucket.start_time).date()
        if current is not None and day != current.day:
            if day < current.day:
                raise PayloadError(f"usage buckets went back in time from {current.day} to {day}")
            yield current
            current = None
        if current is None:
            current = DayRows(day)
        current.add_bucket(bucket)
    if current is not None:
        yield current
