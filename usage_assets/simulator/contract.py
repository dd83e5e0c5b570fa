"""The documented Admin API contract the simulator serves, written out from the reference
(`openai-admin-api.md`, "The other usage endpoints", and the completions endpoint document).

The simulator is an independent implementation of the API: nothing here is imported from the
client (`usage_assets.usage_query`, `usage_assets.models`), so a client bug in a path, a limit
or a field name shows up as a disagreement with the simulator instead of being mirrored by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

API_PREFIX: Final = "/v1"
USAGE_PATH_PREFIX: Final = "/organization/usage/"

#: Seconds in a bucket of each documented `bucket_width`.
BUCKET_SECONDS: Final[Mapping[str, int]] = MappingProxyType({"1m": 60, "1h": 3600, "1d": 86400})
#: (default, max) buckets a page, per `bucket_width` (the same for every usage endpoint).
BUCKET_LIMITS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
)
DEFAULT_BUCKET_WIDTH: Final = "1d"

#: Documented values of the enumerated filters (anything else is a 400 naming the filter).
IMAGE_SIZES: Final = ("256x256", "512x512", "1024x1024", "1792x1792", "1024x1792")
IMAGE_SOURCES: Final = ("image.generation", "image.edit", "image.variation")
CONTEXT_LEVELS: Final = ("low", "medium", "high")


@dataclass(frozen=True)
class Filter:
    """One query filter of a usage endpoint: `param` (an array, or a boolean) restricting the
    results to those whose `dimension` is one of the values given."""

    param: str
    dimension: str
    #: The documented values, where the filter is an enumeration; None: any string.
    allowed: tuple[str, ...] | None = None
    boolean: bool = False


@dataclass(frozen=True)
class UsageEndpoint:
    """One `GET /v1/organization/usage/<name>` endpoint as documented."""

    name: str
    #: The `object` of each result.
    result_object: str
    #: The `group_by` fields, in the order a result lists its dimensions. Every result carries
    #: each of them (null when not grouped by it).
    dimensions: tuple[str, ...]
    filters: tuple[Filter, ...]
    #: Every documented metric (integers); each result carries all of them.
    metrics: tuple[str, ...]
    #: Metrics that are sizes, not counts: a bucket wider than an hour reports the largest
    #: hourly value within it, never a sum over hours.
    gauges: tuple[str, ...] = field(default=())

    @property
    def path(self) -> str:
        """The path under the API prefix, e.g. `/organization/usage/embeddings`."""
        return USAGE_PATH_PREFIX + self.name

    def filter(self, param: str) -> Filter | None:
        return next((f for f in self.filters if f.param == param), None)


def _filters(*dimensions: str, **allowed: tuple[str, ...]) -> tuple[Filter, ...]:
    """Array filters named after their dimension (`model` -> `models`, `size` -> `sizes`)."""
    return tuple(
        Filter(f"{dimension}s", dimension, allowed.get(dimension)) for dimension in dimensions
    )


_KEYED = ("project_id", "user_id", "api_key_id")

COMPLETIONS_METRICS: Final = (
    "input_tokens",
    "output_tokens",
    "num_model_requests",
    "input_cached_tokens",
    "input_cache_write_tokens",
    "input_cache_write_30m_tokens",
    "input_cache_write_12h_tokens",
    "input_uncached_tokens",
    "input_text_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "input_cached_text_tokens",
    "input_cached_audio_tokens",
    "input_cached_image_tokens",
    "output_text_tokens",
    "output_audio_tokens",
    "output_image_tokens",
)

COMPLETIONS: Final = UsageEndpoint(
    name="completions",
    result_object="organization.usage.completions.result",
    dimensions=(*_KEYED, "model", "batch", "service_tier", "api_source"),
    filters=(
        *_filters(*_KEYED, "model"),
        Filter("batch", "batch", boolean=True),
    ),
    metrics=COMPLETIONS_METRICS,
)

_ENDPOINTS: tuple[UsageEndpoint, ...] = (
    COMPLETIONS,
    UsageEndpoint(
        name="embeddings",
        result_object="organization.usage.embeddings.result",
        dimensions=(*_KEYED, "model"),
        filters=_filters(*_KEYED, "model"),
        metrics=("input_tokens", "num_model_requests"),
    ),
    UsageEndpoint(
        name="moderations",
        result_object="organization.usage.moderations.result",
        dimensions=(*_KEYED, "model"),
        filters=_filters(*_KEYED, "model"),
        metrics=("input_tokens", "num_model_requests"),
    ),
    UsageEndpoint(
        name="images",
        result_object="organization.usage.images.result",
        dimensions=(*_KEYED, "model", "size", "source"),
        filters=_filters(
            *_KEYED, "model", "size", "source", size=IMAGE_SIZES, source=IMAGE_SOURCES
        ),
        metrics=("images", "num_model_requests"),
    ),
    UsageEndpoint(
        name="audio_speeches",
        result_object="organization.usage.audio_speeches.result",
        dimensions=(*_KEYED, "model"),
        filters=_filters(*_KEYED, "model"),
        metrics=("characters", "num_model_requests"),
    ),
    UsageEndpoint(
        name="audio_transcriptions",
        result_object="organization.usage.audio_transcriptions.result",
        dimensions=(*_KEYED, "model"),
        filters=_filters(*_KEYED, "model"),
        metrics=("seconds", "num_model_requests"),
    ),
    UsageEndpoint(
        name="vector_stores",
        result_object="organization.usage.vector_stores.result",
        dimensions=("project_id",),
        filters=_filters("project_id"),
        metrics=("usage_bytes",),
        gauges=("usage_bytes",),
    ),
    UsageEndpoint(
        name="code_interpreter_sessions",
        result_object="organization.usage.code_interpreter_sessions.result",
        dimensions=("project_id",),
        filters=_filters("project_id"),
        metrics=("num_sessions",),
    ),
    UsageEndpoint(
        name="file_search_calls",
        result_object="organization.usage.file_searches.result",
        dimensions=(*_KEYED, "vector_store_id"),
        filters=_filters(*_KEYED, "vector_store_id"),
        metrics=("num_requests",),
    ),
    UsageEndpoint(
        name="web_search_calls",
        result_object="organization.usage.web_searches.result",
        dimensions=(*_KEYED, "model", "context_level", "api_source"),
        filters=_filters(*_KEYED, "model", "context_level", context_level=CONTEXT_LEVELS),
        metrics=("num_requests", "num_model_requests"),
    ),
)

#: Every usage endpoint the simulator serves, by name (completions first).
USAGE_ENDPOINTS: Final[Mapping[str, UsageEndpoint]] = MappingProxyType(
    {endpoint.name: endpoint for endpoint in _ENDPOINTS}
)
#: The usage endpoints other than completions.
OTHER_USAGE_ENDPOINTS: Final = tuple(name for name in USAGE_ENDPOINTS if name != "completions")
#: The endpoint of each result `object`.
ENDPOINT_OF_RESULT_OBJECT: Final[Mapping[str, UsageEndpoint]] = MappingProxyType(
    {endpoint.result_object: endpoint for endpoint in _ENDPOINTS}
)
COMPLETIONS_USAGE_PATH: Final = COMPLETIONS.path

# ---------------------------------------------------------------------------- costs

COSTS_PATH: Final = "/organization/costs"
COSTS_RESULT_OBJECT: Final = "organization.costs.result"
#: (default, max) 1d buckets a page.
COSTS_BUCKET_LIMITS: Final = (7, 180)
#: The costs endpoint's `group_by` fields (the API reference), in the order of a result's key.
COSTS_GROUP_BY_FIELDS: Final = ("project_id", "line_item", "api_key_id", "user_id", "api_source")

# ---------------------------------------------------------------------------- directory

PROJECTS_PATH: Final = "/organization/projects"
USERS_PATH: Final = "/organization/users"
API_KEYS_PATH: Final = "/organization/projects/{project_id}/api_keys"
#: (default, max) objects per page of the list endpoints.
LIST_LIMITS: Final = (20, 100)
