"""What every simulated endpoint shares: the OpenAI error body, query parameter parsing and the
opaque page cursor. The endpoint modules (usage, billing, directory) import this module; the
server imports them and routes to them, so there is no import loop."""

from __future__ import annotations

import base64
import binascii
from typing import Any

Query = dict[str, list[str]]


class ApiError(Exception):
    """An OpenAI error answer: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": str(self),
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def encode_cursor(bucket_start: int, offset: int) -> str:
    """The `next_page` of a page that continues at `offset` results into `bucket_start`."""
    raw = f"{bucket_start}:{offset}".encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        if not cursor.startswith("page_"):
            raise ValueError
        start, offset = base64.urlsafe_b64decode(cursor[5:]).decode().split(":")
        return int(start), int(offset)
    except (ValueError, binascii.Error):
        raise ApiError(400, f"Invalid page cursor: '{cursor}'", param="page") from None


def int_param(query: Query, name: str, *, required: bool = False) -> int | None:
    values = query.get(name)
    if not values:
        if required:
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise ApiError(
            400, f"Invalid value for '{name}': expected an integer.", param=name
        ) from None


def limit_param(query: Query, limits: tuple[int, int], detail: str = "") -> int:
    """`limit`, or its default; outside [1, max] is a 400 naming the max (and `detail`)."""
    default_limit, max_limit = limits
    limit = int_param(query, "limit")
    if limit is None:
        return default_limit
    if not 1 <= limit <= max_limit:
        raise ApiError(
            400, f"Invalid limit {limit}: must be between 1 and {max_limit}{detail}.", param="limit"
        )
    return limit


def array_param(query: Query, name: str) -> list[str]:
    """An array parameter, sent repeated (`name=a&name=b`) or bracketed (`name[]=a`)."""
    return query.get(name, []) + query.get(f"{name}[]", [])


def bool_param(query: Query, name: str) -> bool | None:
    """A boolean parameter (`true`/`false`), or None when absent."""
    values = query.get(name)
    if not values:
        return None
    if values[-1] not in ("true", "false"):
        raise ApiError(400, f"Invalid value for '{name}': expected a boolean.", param=name)
    return values[-1] == "true"
