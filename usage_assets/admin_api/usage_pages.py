"""How a Usage API page is decoded: the envelope typed, each result kept as its JSON text (a
zero-copy view into the page's body) and decoded only when its row is built.

Measured on one 7.3 MiB page of 10,000 completions results (the benchmark's 10,000 groups, all
seven `group_by` fields), CPU per page (parse plus building the dict the row builder reads,
median of 15) and peak memory of the data in a fresh process (RSS above the baseline, over the
page's size, body included):

| decoder | CPU | peak / page |
|---|---|---|
| `json.loads` of the text (before) | 37 ms | 3.1x |
| msgspec, the whole page into dicts | 24 ms | 3.3x |
| ijson (yajl2_c), `items(..., "data.item.results.item")` | 44 ms | 1.0x |
| msgspec: envelope typed, results `Raw`, one decoded at a time (here) | 17 ms | 1.06x |

msgspec with `Raw` results is both the fastest and within 6% of the body itself: a `Raw`
decoded from a bytearray is a view into it (48 bytes a result), and a result's dict lives only
while its row is built. ijson would not even need the body, but costs 2.6x the CPU.

Anything this fast path cannot vouch for is left to the `json` module, which decides exactly
as before (`AdminAPIClient._parse`): a body that is not JSON (or not UTF-8) is retried, and an
envelope that drifted is a PayloadError naming the page, bucket and field (`_check_page_envelope`,
`UsageBucket.parse`). msgspec also refuses a few texts `json` accepts (NaN, a lone surrogate
escape, 1e400): the page (envelope) or the result is then decoded by `json`, as before.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NotRequired, TypedDict, cast, overload

import msgspec

from usage_assets.errors import PayloadError

__all__ = ["PLAIN_TEXT", "UsageResults", "decode_usage_page"]


class _Bucket(TypedDict):
    """A bucket as the fast path accepts it; unknown fields are dropped (`UsageBucket.parse`
    reads no other)."""

    object: NotRequired[str]
    start_time: int
    end_time: int
    results: list[msgspec.Raw]


class _Page(TypedDict):
    object: NotRequired[str]
    data: list[_Bucket]
    has_more: bool
    next_page: NotRequired[str | None]


_decode_page = msgspec.json.Decoder(_Page).decode
_decode_result = msgspec.json.Decoder().decode
_MSGSPEC_REFUSALS = (msgspec.DecodeError, msgspec.ValidationError)
#: Non-ASCII bodies are checked for UTF-8 this many bytes at a time (a str of at most this
#: size at once): msgspec does not look inside a `Raw`, `json` refused invalid UTF-8 anywhere.
_UTF8_SLICE = 1 << 16


def _is_utf8(body: bytes | bytearray) -> bool:
    if body.isascii():  # the common case: 0.5 ms for a 7 MiB page
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(body)
    try:
        for start in range(0, len(view), _UTF8_SLICE):
            decoder.decode(view[start : start + _UTF8_SLICE])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


#: The key `decode_usage_page` adds to a page it decoded (True) when no string of the page can
#: hold what PostgreSQL's text refuses, so the row builder need not look. No page from the API
#: carries it: the fast path's typed page drops unknown keys, and a page `json` decoded has no
#: `msgspec.Raw` results, the only ones read unchecked.
PLAIN_TEXT = "usage_assets.plain_text"
#: The only escapes msgspec decodes into a NUL or a lone surrogate (a raw control character or
#: invalid UTF-8 in a string is malformed JSON, which msgspec refuses): \u0000, \uD800-\uDFFF.
_UNSAFE_ESCAPES = (b"\\u0000", b"\\ud", b"\\uD")


def decode_usage_page(body: bytes | bytearray) -> dict[str, Any] | None:
    """The page as a dict whose buckets' `results` are `msgspec.Raw` views into `body`, or None
    when the fast path cannot vouch for it (the caller then decodes it with `json`); marked
    `PLAIN_TEXT` when none of its strings holds an escape that could decode to a NUL or a lone
    surrogate (a search of the body: under a millisecond for a 7 MiB page, instead of a check
    of every text field of every result)."""
    if not _is_utf8(body):
        return None
    try:
        page = cast("dict[str, Any]", _decode_page(body))
    except _MSGSPEC_REFUSALS:
        return None
    # A backslash is looked for first (memchr: 0.5 ms for 7 MiB; each escape's search, 5 ms).
    page[PLAIN_TEXT] = b"\\" not in body or not any(escape in body for escape in _UNSAFE_ESCAPES)
    return page


def _decoded_by_json(item: msgspec.Raw, index: int, where: str) -> Any:
    """A result msgspec refused (NaN, 1e400): what `json.loads` of the page made of it."""
    try:
        return json.loads(bytes(item))
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise PayloadError(f"{where} result #{index} cannot be decoded: {exc}") from None


class UsageResults(Sequence[Any]):
    """The result objects of one bucket, each decoded from its JSON when it is read.

    Items are `msgspec.Raw` (from the fast path) or already decoded objects (from `json`);
    reading one gives the decoded object, a fresh one each time. Iterating decodes one at a
    time, so the row builder holds one result's dict, never the bucket's.
    """

    __slots__ = ("_items", "_where", "plain_text")

    def __init__(
        self, items: Iterable[Any] = (), where: str = "usage bucket", plain_text: bool = False
    ) -> None:
        self._items = list(items)
        self._where = where
        #: True when no string of the `msgspec.Raw` items can decode to a NUL or a lone
        #: surrogate (`PLAIN_TEXT`): their text needs no check.
        self.plain_text = plain_text

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> list[Any]:
        """The results as held, undecoded: `msgspec.Raw` views (the fast path) or objects
        `json` decoded. `rows._rows` decodes a Raw one straight into its endpoint's struct,
        and reads one the struct refuses as `self[position]`, the object `json` would make."""
        return self._items

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> UsageResults: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return UsageResults(self._items[index], self._where, self.plain_text)
        position = range(len(self._items))[index]  # an IndexError like a list's
        item = self._items[position]
        if type(item) is not msgspec.Raw:
            return item
        try:
            return _decode_result(item)
        except _MSGSPEC_REFUSALS:
            return _decoded_by_json(item, position, self._where)

    def __iter__(self) -> Iterator[Any]:
        raw, decode = msgspec.Raw, _decode_result  # as `__getitem__`, inlined: once a result
        for index, item in enumerate(self._items):
            if type(item) is not raw:
                yield item
                continue
            try:
                decoded = decode(item)
            except _MSGSPEC_REFUSALS:
                decoded = _decoded_by_json(item, index, self._where)
            yield decoded

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UsageResults | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content, like a list

    def __repr__(self) -> str:  # what a failed assertion shows: the decoded results
        return f"UsageResults({list(self)!r})"

    @classmethod
    def joined(cls, first: Sequence[Any], second: Sequence[Any]) -> UsageResults:
        """The results of two parts of one bucket (split across pages), still undecoded."""
        where = first._where if isinstance(first, UsageResults) else "usage bucket"
        plain = all(isinstance(part, UsageResults) and part.plain_text for part in (first, second))
        return cls([*_items_of(first), *_items_of(second)], where, plain)


def _items_of(results: Sequence[Any]) -> Sequence[Any]:
    return results._items if isinstance(results, UsageResults) else results
