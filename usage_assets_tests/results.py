"""What the `result` column holds since migration 0018, for tests that compare rows with what
the API served: only the fields without a column; the whole object is the columns plus those
(in SQL: `openai_usage.api_result(row)`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from usage_assets.admin_api.endpoints import COMPLETIONS, UsageEndpoint


def fields(endpoint: UsageEndpoint = COMPLETIONS) -> tuple[str, ...]:
    return (*endpoint.dimension_names, *endpoint.metric_names)


def as_served(result: Mapping[str, Any], endpoint: UsageEndpoint = COMPLETIONS) -> dict[str, Any]:
    """`result` as the rebuild gives it back: the object name, every dimension and metric (JSON
    null when the API left it out), then the rest."""
    return {"object": endpoint.result_object, **dict.fromkeys(fields(endpoint)), **result}


def kept(record: Mapping[str, Any]) -> dict[str, Any]:
    """The `result` column of a row's record (a COPY row's JSON text, or a jsonb read back)."""
    value = record["result"]
    if value is None:
        return {}
    loaded = json.loads(value) if isinstance(value, str) else value
    assert isinstance(loaded, dict) and loaded, f"result column holds {value!r}, not NULL"
    return loaded


def whole_result(
    record: Mapping[str, Any], endpoint: UsageEndpoint = COMPLETIONS
) -> dict[str, Any]:
    """A row's record rebuilt into the API's object, as `openai_usage.api_result` does."""
    columns = {name: record[name] for name in fields(endpoint)}
    return {"object": endpoint.result_object, **columns, **kept(record)}
