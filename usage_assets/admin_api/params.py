"""How the Admin API takes its query parameters (one tested function for every endpoint)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
