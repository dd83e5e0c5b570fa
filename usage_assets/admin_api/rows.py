"""Turn API result objects into table rows, refusing payloads that drifted from the contract.

Rows are produced one at a time, as the pages arrive, so a day of any size is never held in
memory: the caller streams them into the day's COPY. A wrong type, a negative count or a bucket
outside its day raises PayloadError naming the bucket and field, which rolls the day's
transaction back with the previous rows untouched. A group listed twice in one bucket is caught
while the day is written, in the same transaction (see `warehouse.usage_days`), and a day
missing some of its hours by `DaySummary.check_complete` once its buckets are exhausted. So is
what PostgreSQL cannot store: a count beyond bigint, a NUL character in a dimension. Fields the
API adds tomorrow are not an error: they are kept in the `result` JSON column (which holds only
the fields without a column of their own), where a NUL character (which jsonb rejects) is kept
as the six characters `\\u0000`.

A result still held as its JSON (a `msgspec.Raw` of `UsageResults`) is decoded straight into its
endpoint's struct (`_result_struct`), which accepts only what the dict path passes with no
unknown field (its text dimensions are then checked for a NUL as before), so the row is the
struct's fields: 4.6 -> 1.6 us a row on a page of 10,000 completions results (5.0 -> 2.0 us
with the page's envelope). Whatever the struct refuses (a field added tomorrow, any drift) is
decoded into a dict and takes the dict path, whose checks and messages decide as before.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, cast

import msgspec

from usage_assets.admin_api.endpoints import COMPLETIONS, UsageEndpoint
from usage_assets.admin_api.usage import UsageBucket, in_time_order
from usage_assets.admin_api.usage_pages import UsageResults
from usage_assets.errors import IncompleteDayError, PayloadError
from usage_assets.settings import DEFAULT_ORGANIZATION_LABEL

RESULT_OBJECT = COMPLETIONS.result_object
#: The organization of rows whose writer names none.
DEFAULT_ORGANIZATION = DEFAULT_ORGANIZATION_LABEL

#: One row in the endpoint's `copy_columns` order.
UsageRow = tuple[Any, ...]

#: The largest value of a PostgreSQL bigint, the type of every count column.
BIGINT_MAX = 2**63 - 1
#: The `result` column: compact, and non-ASCII kept as is (the C encoder, built once). NaN and
#: Infinity are refused (jsonb has no such numbers) and handled by `_extra_json`.
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
#: How the encoder writes a NUL character; jsonb refuses it. Its absence from a result's JSON
#: proves the result has no NUL (the common case, one substring search); its presence may also
#: be an escaped backslash followed by "u0000", which `_jsonb_safe` keeps as it is.
_NUL_ESCAPE = "\\u0000"
#: What a NUL character in an unknown field or key is stored as: the six characters \u0000.
NUL_REPLACEMENT = "\\u0000"


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def bucket_day(bucket: UsageBucket) -> dt.date:
    return _utc(bucket.start_time).date()


def _is_valid(
    kind: Any,
    expected: str,
    dims: list[Any],
    dim_types: tuple[type, ...],
    metrics: list[Any],
    required: int,
    _max: int = BIGINT_MAX,
) -> bool:
    """The fast check every row passes; `_refuse` explains a failure in detail. (`_max` is a
    local, not a global looked up for every count.) A NUL in a dimension is found later, in
    the row's JSON (see `_rows`)."""
    if kind != expected:
        return False
    for value, kind_of in zip(dims, dim_types, strict=True):
        if value is not None and type(value) is not kind_of:
            return False
    for at, value in enumerate(metrics):
        if value is None:
            if at < required:
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


def _where(bucket: UsageBucket, index: int, endpoint: UsageEndpoint = COMPLETIONS) -> str:
    named = "" if endpoint is COMPLETIONS else f"{endpoint.name} "
    return f"{named}usage bucket {_utc(bucket.start_time).isoformat()} result #{index}"


def _refuse(result: Any, bucket: UsageBucket, index: int, endpoint: UsageEndpoint) -> PayloadError:
    """The PayloadError for a result that failed `_is_valid`, naming the bucket and field."""
    where = _where(bucket, index, endpoint)
    if not isinstance(result, dict):
        return PayloadError(f"{where} is a {type(result).__name__}, expected an object")
    expected = endpoint.result_object
    kind = result.get("object", expected)
    if kind != expected:
        return PayloadError(f"{where}: object={kind!r}, expected {expected!r}")
    try:
        for dimension in endpoint.dimensions:
            value = result.get(dimension.name)
            if dimension.type == "boolean":
                if value is not None and not isinstance(value, bool):
                    raise PayloadError(f"{where}: {dimension.name}={value!r} is not a boolean")
            elif value is not None and not isinstance(value, str):
                raise PayloadError(f"{where}: {dimension.name}={value!r} is not a string")
        for metric in endpoint.metrics:
            _count(result, metric.name, where, required=metric.required)
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


def _refuse_text(dims: list[Any], bucket: UsageBucket, index: int, endpoint: UsageEndpoint) -> None:
    """Raise PayloadError for a dimension PostgreSQL text cannot store: a NUL character or a
    lone surrogate (their columns are text; an unknown field is kept, see `_extra_json`)."""
    where = _where(bucket, index, endpoint)
    for name, value in zip(endpoint.dimension_names, dims, strict=True):
        if isinstance(value, str) and "\x00" in value:
            raise PayloadError(
                f"{where}: {name}={value!r} contains a NUL character, which "
                "PostgreSQL text cannot store"
            )
        if isinstance(value, str) and not _is_utf8(value):
            raise PayloadError(
                f"{where}: {name}={value!r} contains a lone surrogate, which is "
                "not valid Unicode text"
            )


def _extra_json(result: dict[str, Any], known: frozenset[str]) -> str | None:
    """The `result` column: the JSON of the fields without a column of their own (tomorrow's
    fields), None when there are none (nearly always). What jsonb cannot store in them (a NUL
    escape, a lone surrogate, NaN or Infinity) is kept in a form it can (`_jsonb_safe`)."""
    if result.keys() <= known:
        return None
    extra = {key: value for key, value in result.items() if key not in known}
    try:
        encoded = _to_json(extra)
        if _NUL_ESCAPE not in encoded and _is_utf8(encoded):
            return encoded
    except ValueError:  # NaN or Infinity
        pass
    return _to_json(_jsonb_safe(extra))


def normalize_result(
    result: Any,
    bucket: UsageBucket,
    index: int,
    endpoint: UsageEndpoint = COMPLETIONS,
    organization: str = DEFAULT_ORGANIZATION,
) -> UsageRow:
    """One result object as a row; raises PayloadError naming the bucket and field."""
    return next(_rows(bucket, [result], endpoint, index, organization))


_PYTHON_TYPES = {"text": str, "boolean": bool}
#: A count as the struct accepts it: an int (never a bool, a float or null), 0..bigint.
_Count = Annotated[int, msgspec.Meta(ge=0, le=BIGINT_MAX)]
_STRUCT_REFUSALS = (msgspec.DecodeError, msgspec.ValidationError)


@dataclass(frozen=True)
class _ResultStruct:
    """The fast path of one endpoint's results: a result's JSON decoded straight into a struct
    of exactly its known fields, which accepts only what `_is_valid` passes."""

    #: The struct of the result; raises a `_STRUCT_REFUSALS` error for anything else.
    decode: Callable[[msgspec.Raw], Any]
    #: The struct's dimensions and metrics, in column order.
    values: Callable[[Any], tuple[Any, ...]]
    #: Positions of the text dimensions in `values`, checked for a NUL or a lone surrogate (not
    #: on a page `usage_pages.PLAIN_TEXT` vouches for).
    text_at: tuple[int, ...]


@functools.cache
def _result_struct(endpoint: UsageEndpoint) -> _ResultStruct:
    """`endpoint`'s result struct: `object` (its `result_object`, or absent), each dimension a
    str or bool or null (or absent), each required metric a count, each optional one a count or
    null (or absent). An unknown field, a wrong type, a bool for a count, a negative or too
    large count, a required metric absent or null: all refused, and left to the dict path."""
    dimensions = [
        (d.name, (str if d.type == "text" else bool) | None, None) for d in endpoint.dimensions
    ]
    metrics = [
        (m.name, _Count) if m.required else (m.name, _Count | None, None) for m in endpoint.metrics
    ]
    kind = endpoint.result_object
    struct = msgspec.defstruct(
        f"{endpoint.name}_result",
        [("object", Literal[kind], kind), *dimensions, *metrics],
        kw_only=True,  # required metrics may follow fields with a default
        forbid_unknown_fields=True,
        gc=False,  # nothing but str, bool, int and None: no cycles to collect
    )
    names = (*endpoint.dimension_names, *endpoint.metric_names)
    return _ResultStruct(
        msgspec.json.Decoder(struct).decode,
        operator.attrgetter(*names),
        tuple(at for at, d in enumerate(endpoint.dimensions) if d.type == "text"),
    )


def _rows(
    bucket: UsageBucket,
    results: Iterable[Any],
    endpoint: UsageEndpoint = COMPLETIONS,
    first_index: int = 0,
    organization: str = DEFAULT_ORGANIZATION,
) -> Iterator[UsageRow]:
    start, end = _utc(bucket.start_time), _utc(bucket.end_time)
    dimensions, metrics = endpoint.dimension_names, endpoint.metric_names
    dim_types = tuple(_PYTHON_TYPES[d.type] for d in endpoint.dimensions)
    expected, required = endpoint.result_object, len(endpoint.required_metrics)
    known = frozenset(("object", *dimensions, *metrics))
    # A bucket's results from the API may hold Raw views: those take the fast path.
    fast = _result_struct(endpoint) if isinstance(results, UsageResults) else None
    items: Iterable[Any] = results.items if isinstance(results, UsageResults) else results
    # Text the struct decoded is checked unless the page could not hold a NUL or a surrogate.
    text_at = () if fast is None or cast("UsageResults", results).plain_text else fast.text_at
    raw = msgspec.Raw
    for index, result in enumerate(items, first_index):
        if fast is not None and type(result) is raw:
            # The common case: the JSON is the row, with no field unknown (the result column
            # None). Anything the struct refuses is decoded as before and meets the dict path.
            try:
                values = fast.values(fast.decode(result))
            except _STRUCT_REFUSALS:
                result = cast("UsageResults", results)[index - first_index]
            else:
                for at in text_at:
                    value = values[at]
                    if value is not None and ("\x00" in value or not _is_utf8(value)):
                        _refuse_text(list(values[: len(dimensions)]), bucket, index, endpoint)
                yield (organization, start, end, *values, None)
                continue
        if type(result) is dict:
            get = result.get
            dims = [get(name) for name in dimensions]
            counts = [get(name) for name in metrics]
            if _is_valid(get("object", expected), expected, dims, dim_types, counts, required):
                for value in dims:
                    if type(value) is str and ("\x00" in value or not _is_utf8(value)):
                        _refuse_text(dims, bucket, index, endpoint)
                yield (organization, start, end, *dims, *counts, _extra_json(result, known))
                continue
        raise _refuse(result, bucket, index, endpoint)


@dataclass(frozen=True)
class DayTotals:
    """One load of a day, as `usage_loads` and `usage_day_revisions` record it: its rows, the
    sum of each of the endpoint's summed metrics, and its volume (what a reload must not lose;
    completions: input + output tokens)."""

    row_count: int
    totals: Mapping[str, int]
    volume: int

    @property
    def tokens(self) -> int:
        """Completions' name for the volume."""
        return self.volume

    @property
    def input_tokens(self) -> int | None:
        return self.totals.get("input_tokens")

    @property
    def output_tokens(self) -> int | None:
        return self.totals.get("output_tokens")

    @property
    def num_model_requests(self) -> int | None:
        return self.totals.get("num_model_requests")

    @classmethod
    def of(cls, endpoint: UsageEndpoint, row_count: int, totals: Mapping[str, int]) -> DayTotals:
        volume = sum(totals.get(name, 0) for name in endpoint.volume_metrics)
        return cls(row_count, dict(totals), volume)


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
    #: Each of the endpoint's summed metrics (`UsageEndpoint.summed_metrics`) over the day.
    totals: dict[str, int] = field(default_factory=dict)
    #: The endpoint's volume per project (completions: input + output tokens).
    volume_by_project: dict[str | None, int] = field(default_factory=dict)
    #: Hours of the day begun when it was fetched: 24 for a closed day, fewer for today.
    hours_begun: int = 24
    #: The UTC hour of each bucket received, once per bucket (parts of one bucket count once).
    hours: list[int] = field(default_factory=list)
    #: bucket_start of each hour in which two groups' dimensions hashed alike (`watch`).
    suspect_hours: list[dt.datetime] = field(default_factory=list)
    #: Set by `storage.replace_day` once the day is written.
    revision: DayRevision | None = None
    endpoint: UsageEndpoint = COMPLETIONS
    #: The organization the day's rows belong to (`usage_loads.organization`, ...).
    organization: str = DEFAULT_ORGANIZATION
    _last_start: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in self.endpoint.summed_metrics:
            self.totals.setdefault(name, 0)

    @property
    def closed(self) -> bool:
        return self.hours_begun >= 24

    @property
    def volume(self) -> int:
        return sum(self.totals[name] for name in self.endpoint.volume_metrics)

    # Completions' figures by their names (0 for an endpoint without the metric).
    @property
    def input_tokens(self) -> int:
        return self.totals.get("input_tokens", 0)

    @property
    def output_tokens(self) -> int:
        return self.totals.get("output_tokens", 0)

    @property
    def num_model_requests(self) -> int:
        return self.totals.get("num_model_requests", 0)

    @property
    def tokens_by_project(self) -> dict[str | None, int]:
        return self.volume_by_project

    def rows(self, buckets: Iterable[UsageBucket]) -> DayRows:
        """Validated rows of the day's buckets, in order, counted as they pass (`watch`); a
        bucket split across pages may come as several consecutive parts and counts once."""
        return DayRows(self, self.watch(self._built(buckets)))

    def _built(self, buckets: Iterable[UsageBucket]) -> Iterator[UsageRow]:
        endpoint, organization = self.endpoint, self.organization
        for bucket in buckets:
            self._admit(bucket)
            yield from _rows(bucket, bucket.take_results(), endpoint, 0, organization)

    def watch(self, rows: Iterable[UsageRow]) -> Iterator[UsageRow]:
        """`rows` (the endpoint's `copy_columns`, in time order) passed through, counted in one
        pass: the row count, each summed metric, the volume per project, and `suspect_hours`.

        A group listed twice in one hour is found with a set of the groups' hashes for the
        current hour only (a bucket split across pages comes as consecutive parts): a few bytes
        a group, where a unique index over the dimensions cost 40% of the table's bytes. NULL
        dimensions compare equal, as they must. A repeated hash is only a suspect (two groups
        may share a hash): the writer decides in SQL once the rows are in."""
        endpoint = self.endpoint
        columns = endpoint.copy_columns
        project_at, start_at = columns.index("project_id"), columns.index("bucket_start")
        first = columns.index(endpoint.dimension_names[0])
        end = first + len(endpoint.dimension_names)
        summed = [(name, columns.index(name)) for name in endpoint.summed_metrics]
        volume_at = [columns.index(name) for name in endpoint.volume_metrics]
        sums = [0] * len(summed)
        by_project, suspects = self.volume_by_project, self.suspect_hours
        seen: set[int] = set()
        current: dt.datetime | None = None
        count = 0
        try:
            for row in rows:
                count += 1
                for at, (_, column) in enumerate(summed):
                    sums[at] += row[column] or 0
                project = row[project_at]
                volume = 0
                for column in volume_at:
                    volume += row[column] or 0
                by_project[project] = by_project.get(project, 0) + volume
                if row[start_at] != current:
                    seen.clear()
                    current = row[start_at]
                group = hash(row[first:end])
                if group in seen:
                    if not suspects or suspects[-1] != current:
                        suspects.append(current)
                else:
                    seen.add(group)
                yield row
        finally:
            self.row_count += count
            for at, (name, _) in enumerate(summed):
                self.totals[name] += sums[at]

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


class DayRows:
    """A day's rows as `DaySummary.rows` streams them (an iterator, once): consuming them
    fills `summary`, so its writer (`replace_day`) takes the day's figures from it."""

    __slots__ = ("_stream", "summary")

    def __init__(self, summary: DaySummary, stream: Iterator[UsageRow]) -> None:
        self.summary = summary
        self._stream = stream

    def __iter__(self) -> Iterator[UsageRow]:
        return self._stream  # the generator itself: no call of ours per row

    def __next__(self) -> UsageRow:
        return next(self._stream)

    def then_check_complete(self) -> DayRows:
        """These rows, then `summary.check_complete()`: a short day fails before the commit."""
        return DayRows(self.summary, self._then_check())

    def _then_check(self) -> Iterator[UsageRow]:
        yield from self._stream
        self.summary.check_complete()


def split_by_day(
    buckets: Iterable[UsageBucket],
    endpoint: UsageEndpoint = COMPLETIONS,
    organization: str = DEFAULT_ORGANIZATION,
) -> Iterator[tuple[DaySummary, DayRows]]:
    """Each UTC day of time-ordered buckets, as its summary and a lazy stream of its rows.

    Consume a day's rows before asking for the next day: the summary is complete once they
    are exhausted, and nothing but the current bucket is held.
    """
    for day, day_buckets in itertools.groupby(in_time_order(buckets), key=bucket_day):
        summary = DaySummary(day, endpoint=endpoint, organization=organization)
        yield summary, summary.rows(day_buckets)
