"""Turn API result objects into table rows, refusing payloads that drifted from the contract.

Rows are produced one at a time, as the pages arrive, so a day of any size is never held in
memory: the caller streams them into the day's COPY. A wrong type, a negative count or a bucket
outside its day raises PayloadError naming the bucket and field, which rolls the day's
transaction back with the previous rows untouched. A group listed twice in one bucket is caught
by the table's unique key in the same transaction (see `storage.replace_day`), and a day
missing some of its hours by `DaySummary.check_complete` once its buckets are exhausted. So is
what PostgreSQL cannot store: a count beyond bigint, a NUL character in a dimension. Fields the
API adds tomorrow are not an error: they stay in the `result` JSON column, where a NUL character
(which jsonb rejects) is kept as the six characters `\\u0000`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from usage_assets.admin_api import UsageBucket, in_time_order
from usage_assets.errors import IncompleteDayError, PayloadError
from usage_assets.models import DIMENSIONS, METRICS, OPTIONAL_METRICS, REQUIRED_METRICS

RESULT_OBJECT = "organization.usage.completions.result"

#: One row in `models.USAGE_COPY_COLUMNS` order.
UsageRow = tuple[Any, ...]

_BATCH_AT = DIMENSIONS.index("batch")
_REQUIRED = len(REQUIRED_METRICS)
#: The largest value of a PostgreSQL bigint, the type of every count column.
BIGINT_MAX = 2**63 - 1
#: The `result` column: compact, and non-ASCII kept as is (the C encoder, built once). NaN and
#: Infinity are refused (jsonb has no such numbers) and handled by `_storable_json`.
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
#: How the encoder writes a NUL character; jsonb refuses it. Its absence from a result's JSON
#: proves the result has no NUL (the common case, one substring search); its presence may also
#: be an escaped backslash followed by "u0000", which `_storable_json` tells apart.
_NUL_ESCAPE = "\\u0000"
#: What a NUL character in an unknown field or key is stored as: the six characters \u0000.
NUL_REPLACEMENT = "\\u0000"


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def bucket_day(bucket: UsageBucket) -> dt.date:
    return _utc(bucket.start_time).date()


def _is_valid(kind: Any, dims: list[Any], metrics: list[Any], _max: int = BIGINT_MAX) -> bool:
    """The fast check every row passes; `_refuse` explains a failure in detail. (`_max` is a
    local, not a global looked up for every count.) A NUL in a dimension is found later, in
    the row's JSON (see `_rows`)."""
    if kind != RESULT_OBJECT:
        return False
    for at, value in enumerate(dims):
        if value is not None and type(value) is not (bool if at == _BATCH_AT else str):
            return False
    for at, value in enumerate(metrics):
        if value is None:
            if at < _REQUIRED:
                return False
        elif type(value) is not int or value < 0 or value > _max:
            return False
    return True


def _count(result: dict[str, Any], name: str, where: str, *, required: bool) -> None:
    value = result.get(name)
    if value is None:
        if required:
            raise PayloadError(f"{where}: required field {name!r} is missing or null")
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{where}: {name}={value!r} is not an integer token count")
    if value < 0:
        raise PayloadError(f"{where}: {name}={value} is negative")
    if value > BIGINT_MAX:
        raise PayloadError(
            f"{where}: {name}={value} is larger than a PostgreSQL bigint can hold ({BIGINT_MAX})"
        )


def _where(bucket: UsageBucket, index: int) -> str:
    return f"usage bucket {_utc(bucket.start_time).isoformat()} result #{index}"


def _refuse(result: Any, bucket: UsageBucket, index: int) -> PayloadError:
    """The PayloadError for a result that failed `_is_valid`, naming the bucket and field."""
    where = _where(bucket, index)
    if not isinstance(result, dict):
        return PayloadError(f"{where} is a {type(result).__name__}, expected an object")
    kind = result.get("object", RESULT_OBJECT)
    if kind != RESULT_OBJECT:
        return PayloadError(f"{where}: object={kind!r}, expected {RESULT_OBJECT!r}")
    try:
        for name in DIMENSIONS:
            value = result.get(name)
            if name == "batch":
                if value is not None and not isinstance(value, bool):
                    raise PayloadError(f"{where}: batch={value!r} is not a boolean")
            elif value is not None and not isinstance(value, str):
                raise PayloadError(f"{where}: {name}={value!r} is not a string")
        for name in REQUIRED_METRICS:
            _count(result, name, where, required=True)
        for name in OPTIONAL_METRICS:
            _count(result, name, where, required=False)
    except PayloadError as exc:
        return exc
    return PayloadError(f"{where} is not a valid usage result")  # pragma: no cover


def _is_utf8(text: str) -> bool:
    """False for a string holding a lone surrogate, which UTF-8 (and PostgreSQL) cannot encode."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _jsonb_safe(value: Any) -> Any:
    """`value` with every NUL in strings and keys spelled as the text \\u0000, a lone surrogate
    as its escape (\\ud800), and NaN or Infinity as a string: what jsonb cannot store, kept in a
    form it can."""
    if isinstance(value, str):
        value = value.replace("\x00", NUL_REPLACEMENT)
        # A lone surrogate (JSON's "\ud800" escape alone) has no UTF-8 form: kept as its text.
        return value if _is_utf8(value) else value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {
            _jsonb_safe(k) if isinstance(k, str) else k: _jsonb_safe(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_jsonb_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _storable_json(result: dict[str, Any], bucket: UsageBucket, index: int) -> str:
    """The slow path of the `result` column, for a result whose JSON has a NUL escape, a lone
    surrogate or a non-finite number: in a dimension it is refused (its text column cannot
    store it); elsewhere it is kept as text (see `_jsonb_safe`)."""
    for name in DIMENSIONS:
        value = result.get(name)
        if isinstance(value, str) and "\x00" in value:
            raise PayloadError(
                f"{_where(bucket, index)}: {name}={value!r} contains a NUL character, which "
                "PostgreSQL text cannot store"
            )
        if isinstance(value, str) and not _is_utf8(value):
            raise PayloadError(
                f"{_where(bucket, index)}: {name}={value!r} contains a lone surrogate, which is "
                "not valid Unicode text"
            )
    return _to_json(_jsonb_safe(result))


def normalize_result(result: Any, bucket: UsageBucket, index: int) -> UsageRow:
    """One result object as a row; raises PayloadError naming the bucket and field."""
    return next(_rows(bucket, [result], index))


def _rows(bucket: UsageBucket, results: Iterable[Any], first_index: int = 0) -> Iterator[UsageRow]:
    start, end = _utc(bucket.start_time), _utc(bucket.end_time)
    for index, result in enumerate(results, first_index):
        if type(result) is dict:
            get = result.get
            dims = [get(name) for name in DIMENSIONS]
            metrics = [get(name) for name in METRICS]
            if _is_valid(get("object", RESULT_OBJECT), dims, metrics):
                try:
                    encoded = _to_json(result)
                    storable = _NUL_ESCAPE not in encoded and _is_utf8(encoded)
                except ValueError:  # NaN or Infinity in an unknown field
                    storable = False
                if not storable:
                    encoded = _storable_json(result, bucket, index)
                yield (start, end, *dims, *metrics, encoded)
                continue
        raise _refuse(result, bucket, index)


@dataclass(frozen=True)
class DayTotals:
    """One load of a day, as `usage_loads` and `usage_day_revisions` record it."""

    row_count: int
    input_tokens: int
    output_tokens: int
    num_model_requests: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class DayRevision:
    """What a reload changed: `previous` is None on a day's first load; `first` is the first
    load known (the load before migration 0005 for a day landed earlier)."""

    revision: int
    closed: bool
    new: DayTotals
    previous: DayTotals | None
    first: DayTotals


def _hour_ranges(hours: Iterable[int]) -> str:
    """[0, 1, 2, 5] -> '00:00-02:00, 05:00'."""
    spans: list[list[int]] = []
    for hour in sorted(hours):
        if spans and hour == spans[-1][1] + 1:
            spans[-1][1] = hour
        else:
            spans.append([hour, hour])
    return ", ".join(f"{a:02d}:00" if a == b else f"{a:02d}:00-{b:02d}:00" for a, b in spans)


@dataclass
class DaySummary:
    """One UTC day's totals, counted while its rows stream past: what its metadata reports."""

    day: dt.date
    row_count: int = 0
    bucket_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    num_model_requests: int = 0
    tokens_by_project: dict[str | None, int] = field(default_factory=dict)
    #: Hours of the day begun when it was fetched: 24 for a closed day, fewer for today.
    hours_begun: int = 24
    #: The UTC hour of each bucket received, once per bucket (parts of one bucket count once).
    hours: list[int] = field(default_factory=list)
    #: Set by `storage.replace_day` once the day is written.
    revision: DayRevision | None = None
    _last_start: int | None = field(default=None, repr=False)

    @property
    def closed(self) -> bool:
        return self.hours_begun >= 24

    def rows(self, buckets: Iterable[UsageBucket]) -> Iterator[UsageRow]:
        """Validated rows of the day's buckets, in order; a bucket split across pages may come
        as several consecutive parts and counts once."""
        project_at, first_metric = 2, 2 + len(DIMENSIONS)  # after bucket_start, bucket_end
        by_project = self.tokens_by_project
        for bucket in buckets:
            self._admit(bucket)
            for row in _rows(bucket, bucket.take_results()):
                inp, out, requests = row[first_metric : first_metric + 3]
                self.row_count += 1
                self.input_tokens += inp
                self.output_tokens += out
                self.num_model_requests += requests
                project = row[project_at]
                by_project[project] = by_project.get(project, 0) + inp + out
                yield row

    def _admit(self, bucket: UsageBucket) -> None:
        start = _utc(bucket.start_time)
        if start.date() != self.day or _utc(bucket.end_time - 1).date() != self.day:
            raise PayloadError(
                f"usage bucket {start.isoformat()}..{_utc(bucket.end_time).isoformat()} "
                f"does not lie inside UTC day {self.day}"
            )
        if start.hour >= self.hours_begun and bucket.results:
            # An empty bucket for an hour still ahead is the rest of the window, answered as the
            # API answers every period; usage in it means a clock (ours or the API's) is off.
            raise PayloadError(
                f"{self.day}: usage bucket {start:%H:%M} reports usage for an hour that has not "
                f"begun yet (the API was asked when {self.hours_begun} hours of the day had begun)"
            )
        if bucket.start_time != self._last_start:
            self.bucket_count += 1
            self._last_start = bucket.start_time
            self.hours.append(start.hour)

    def check_complete(self) -> None:
        """Refuse a day whose buckets are not its hours from 00:00, each once: all 24 for a
        closed day; for the open day a contiguous run from 00:00 up to the current hour at
        most. Call it once the day's buckets are exhausted, before its transaction commits.

        The Usage API returns one bucket per period of the window, empty ones included, so a
        missing hour is a short answer (`IncompleteDayError`, worth asking again), never "no
        usage". Usage in an hour that has not begun yet is refused as it streams (`_admit`).
        """
        day = self.day
        got = {hour for hour in self.hours if hour < self.hours_begun}  # empty ones ahead pass
        if self.closed:
            missing = sorted(set(range(24)) - got)
            if missing:
                raise IncompleteDayError(
                    f"{day}: missing hourly buckets {_hour_ranges(missing)} (got {len(got)} of 24)",
                    day=day,
                )
            return
        last = max(got, default=-1)
        missing = sorted(set(range(last + 1)) - got)
        if missing:
            raise IncompleteDayError(
                f"{day}: missing hourly buckets {_hour_ranges(missing)} (got {len(got)} of the "
                f"{last + 1} hours up to {last:02d}:00; the day is still open)",
                day=day,
            )


def split_by_day(
    buckets: Iterable[UsageBucket],
) -> Iterator[tuple[DaySummary, Iterator[UsageRow]]]:
    """Each UTC day of time-ordered buckets, as its summary and a lazy stream of its rows.

    Consume a day's rows before asking for the next day: the summary is complete once they
    are exhausted, and nothing but the current bucket is held.
    """
    for day, day_buckets in itertools.groupby(in_time_order(buckets), key=bucket_day):
        summary = DaySummary(day)
        yield summary, summary.rows(day_buckets)
