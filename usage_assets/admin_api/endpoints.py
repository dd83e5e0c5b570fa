"""One description per Admin API usage endpoint: everything endpoint-specific lives here.

The query validation (`usage_query`), the parsing and validation of results (`normalize`), the
table and its COPY columns (`models`), the day's totals and metadata, and the Dagster asset
(`assets`) are all made from these descriptions; adding an endpoint is one `UsageEndpoint`
below plus its Alembic migration. Written from `../shared/reference/openai-admin-api.md`
("The other usage endpoints"); the simulator keeps its own, independent copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

#: (default, max) buckets per page for each width, the same for every usage endpoint.
BUCKET_SECONDS: Final = {"1m": 60, "1h": 3600, "1d": 86400}
BUCKET_LIMITS: Final = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


@dataclass(frozen=True)
class Dimension:
    """A `group_by` field: null in a result when not grouped by it (or genuinely absent)."""

    name: str
    type: Literal["text", "boolean"] = "text"
    comment: str = ""


@dataclass(frozen=True)
class Filter:
    """A query parameter that narrows the results: an array of ids/values, or a boolean."""

    name: str
    kind: Literal["array", "boolean"] = "array"
    #: Documented values; empty: any non-empty string.
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    """A count in every result (bigint). `gauge`: a size at a point in time (never summed over
    hours); `required`: a result without it is refused as drift."""

    name: str
    required: bool = True
    gauge: bool = False
    comment: str = ""


@dataclass(frozen=True)
class UsageEndpoint:
    """`GET /v1/organization/usage/<name>`, as far as usage_assets relies on it."""

    name: str
    #: The `object` of each result.
    result_object: str
    dimensions: tuple[Dimension, ...]
    metrics: tuple[Metric, ...]
    filters: tuple[Filter, ...]
    #: What the asset and table hold, in a sentence (the asset's description starts with it).
    summary: str
    #: The metrics whose sum is the day's "volume": what a reload must not lose, what the top
    #: projects are ranked by. Their sum is named `volume_label` in metadata.
    volume_metrics: tuple[str, ...]
    volume_label: str
    #: Metrics reported as the day's totals in metadata and `usage_loads.totals`.
    total_metrics: tuple[str, ...] = field(default=())

    @property
    def path(self) -> str:
        return f"/organization/usage/{self.name}"

    @property
    def table_name(self) -> str:
        """The table and the asset: `<name>_usage_hourly` (a public contract)."""
        return f"{self.name}_usage_hourly"

    @property
    def asset_name(self) -> str:
        return self.table_name

    @property
    def group_by_fields(self) -> tuple[str, ...]:
        """Every field the endpoint accepts in `group_by`: the default grouping is all."""
        return tuple(d.name for d in self.dimensions)

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return self.group_by_fields

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    @property
    def required_metrics(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics if m.required)

    @property
    def optional_metrics(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics if not m.required)

    @property
    def summed_metrics(self) -> tuple[str, ...]:
        """The day's totals: `total_metrics`, else every metric."""
        return self.total_metrics or self.metric_names

    @property
    def copy_columns(self) -> tuple[str, ...]:
        """Columns the bulk writer fills, in COPY order (everything but `id`, `ingested_at`):
        the organization the rows belong to, then the API's bucket and result."""
        return (
            "organization",
            "bucket_start",
            "bucket_end",
            *self.dimension_names,
            *self.metric_names,
            "result",
        )

    def comment_of(self, column: str) -> str:
        """The column comment of a dimension or metric (the table's and the README's wording)."""
        by_name = {d.name: d.comment for d in self.dimensions} | {
            m.name: m.comment for m in self.metrics
        }
        return by_name[column]

    def filter(self, name: str) -> Filter | None:
        return next((f for f in self.filters if f.name == name), None)

    def __post_init__(self) -> None:
        # The metric order puts the required ones first: `normalize` relies on it.
        names = self.metric_names
        assert names[: len(self.required_metrics)] == self.required_metrics, self.name
        assert set(self.volume_metrics) <= set(names), self.name
        assert set(self.summed_metrics) <= set(names), self.name


# The comments are the tables' column comments (and so the README's table dictionary and the
# Dagster UI's column descriptions): a FinOps reader's wording.
PROJECT = Dimension(
    "project_id", comment="Project; NULL for usage of the default project or when not grouped."
)
USER = Dimension("user_id", comment="User; NULL for service-account keys or when not grouped.")
API_KEY = Dimension(
    "api_key_id",
    comment="API key; NULL for usage without a key (e.g. playground) or when not grouped.",
)
MODEL = Dimension(
    "model",
    comment="Model as reported, including dated snapshots (gpt-4o-mini-2024-07-18) and "
    "fine-tunes (ft:...); NULL when not grouped.",
)
API_SOURCE = Dimension("api_source", comment="agents_api or unlabeled; NULL when not grouped.")
_IDS = (Filter("project_ids"), Filter("user_ids"), Filter("api_key_ids"))
_REQUESTS_OPTIONAL = Metric(
    "num_model_requests",
    required=False,
    comment="Model requests; NULL where the API does not report them.",
)

COMPLETIONS: Final = UsageEndpoint(
    name="completions",
    result_object="organization.usage.completions.result",
    dimensions=(
        PROJECT,
        USER,
        API_KEY,
        MODEL,
        Dimension(
            "batch",
            "boolean",
            "True: Batch API usage (billed at a discount); NULL when not grouped.",
        ),
        Dimension(
            "service_tier", comment="default, flex, priority, scale, ...; NULL when not grouped."
        ),
        API_SOURCE,
    ),
    metrics=(
        # The endpoint document's first group: every result carries them.
        Metric(
            "input_tokens",
            comment="All input tokens, including cached and cache-write tokens, across text, "
            "audio and image.",
        ),
        Metric("output_tokens", comment="All output tokens across text, audio and image."),
        Metric("num_model_requests", comment="Model requests."),
        # The API reference's breakdown: older data and API versions may omit them (NULL).
        Metric(
            "input_cached_tokens",
            required=False,
            comment="Input served from the prompt cache; NULL where not reported.",
        ),
        Metric(
            "input_cache_write_tokens",
            required=False,
            comment="All input written to the cache, 30-minute and 12-hour retention together.",
        ),
        Metric(
            "input_cache_write_30m_tokens",
            required=False,
            comment="Of the cache writes, those for 30 minutes; NULL in older responses: then "
            "input_cache_write_tokens - input_cache_write_12h_tokens.",
        ),
        Metric(
            "input_cache_write_12h_tokens",
            required=False,
            comment="Of the cache writes, those for 12 hours.",
        ),
        Metric(
            "input_uncached_tokens",
            required=False,
            comment="Uncached input, excluding cache writes.",
        ),
        Metric("input_text_tokens", required=False, comment="Uncached text input."),
        Metric("input_audio_tokens", required=False, comment="Uncached audio input."),
        Metric("input_image_tokens", required=False, comment="Uncached image input."),
        Metric("input_cached_text_tokens", required=False, comment="Cached text input."),
        Metric("input_cached_audio_tokens", required=False, comment="Cached audio input."),
        Metric("input_cached_image_tokens", required=False, comment="Cached image input."),
        Metric("output_text_tokens", required=False, comment="Text output."),
        Metric("output_audio_tokens", required=False, comment="Audio output."),
        Metric("output_image_tokens", required=False, comment="Image output."),
    ),
    filters=(*_IDS, Filter("models"), Filter("batch", "boolean")),
    summary=(
        "Hourly OpenAI token usage of the completions endpoint, per project, user, API key, "
        "model, batch flag, service tier and API source"
    ),
    volume_metrics=("input_tokens", "output_tokens"),
    volume_label="tokens",
    total_metrics=("input_tokens", "output_tokens", "num_model_requests"),
)

EMBEDDINGS: Final = UsageEndpoint(
    name="embeddings",
    result_object="organization.usage.embeddings.result",
    dimensions=(PROJECT, USER, API_KEY, MODEL),
    metrics=(Metric("input_tokens", comment="Input tokens embedded."), _REQUESTS_OPTIONAL),
    filters=(*_IDS, Filter("models")),
    summary="Hourly embeddings usage (input tokens), per project, user, API key and model",
    volume_metrics=("input_tokens",),
    volume_label="input_tokens",
)

MODERATIONS: Final = UsageEndpoint(
    name="moderations",
    result_object="organization.usage.moderations.result",
    dimensions=(PROJECT, USER, API_KEY, MODEL),
    metrics=(
        Metric("input_tokens", comment="Input tokens moderated (moderations are free)."),
        _REQUESTS_OPTIONAL,
    ),
    filters=(*_IDS, Filter("models")),
    summary="Hourly moderations usage (input tokens, free), per project, user, API key and model",
    volume_metrics=("input_tokens",),
    volume_label="input_tokens",
)

IMAGE_SIZES: Final = ("256x256", "512x512", "1024x1024", "1792x1792", "1024x1792")
IMAGE_SOURCES: Final = ("image.generation", "image.edit", "image.variation")

IMAGES: Final = UsageEndpoint(
    name="images",
    result_object="organization.usage.images.result",
    dimensions=(
        PROJECT,
        USER,
        API_KEY,
        MODEL,
        Dimension(
            "size",
            comment="Image size: 256x256, 512x512, 1024x1024, 1792x1792 or 1024x1792; NULL "
            "when not grouped.",
        ),
        Dimension(
            "source",
            comment="image.generation, image.edit or image.variation; NULL when not grouped.",
        ),
    ),
    metrics=(Metric("images", comment="Images produced."), _REQUESTS_OPTIONAL),
    filters=(
        *_IDS,
        Filter("models"),
        Filter("sizes", allowed=IMAGE_SIZES),
        Filter("sources", allowed=IMAGE_SOURCES),
    ),
    summary="Hourly image usage, per project, user, API key, model, size and source",
    volume_metrics=("images",),
    volume_label="images",
)

AUDIO_SPEECHES: Final = UsageEndpoint(
    name="audio_speeches",
    result_object="organization.usage.audio_speeches.result",
    dimensions=(PROJECT, USER, API_KEY, MODEL),
    metrics=(Metric("characters", comment="Characters turned into speech."), _REQUESTS_OPTIONAL),
    filters=(*_IDS, Filter("models")),
    summary="Hourly text-to-speech usage (characters), per project, user, API key and model",
    volume_metrics=("characters",),
    volume_label="characters",
)

AUDIO_TRANSCRIPTIONS: Final = UsageEndpoint(
    name="audio_transcriptions",
    result_object="organization.usage.audio_transcriptions.result",
    dimensions=(PROJECT, USER, API_KEY, MODEL),
    metrics=(Metric("seconds", comment="Seconds of audio transcribed."), _REQUESTS_OPTIONAL),
    filters=(*_IDS, Filter("models")),
    summary="Hourly transcription usage (audio seconds), per project, user, API key and model",
    volume_metrics=("seconds",),
    volume_label="seconds",
)

VECTOR_STORES: Final = UsageEndpoint(
    name="vector_stores",
    result_object="organization.usage.vector_stores.result",
    dimensions=(PROJECT,),
    metrics=(
        Metric(
            "usage_bytes",
            gauge=True,
            comment="Bytes stored in the hour: a size, never summed over hours (see "
            "v_vector_store_storage_daily for GiB-days).",
        ),
    ),
    filters=(Filter("project_ids"),),
    summary="Hourly vector store storage (bytes stored, a gauge), per project",
    volume_metrics=("usage_bytes",),
    volume_label="byte_hours",
)

CODE_INTERPRETER_SESSIONS: Final = UsageEndpoint(
    name="code_interpreter_sessions",
    result_object="organization.usage.code_interpreter_sessions.result",
    dimensions=(PROJECT,),
    metrics=(Metric("num_sessions", comment="Code interpreter sessions started."),),
    filters=(Filter("project_ids"),),
    summary="Hourly code interpreter sessions, per project",
    volume_metrics=("num_sessions",),
    volume_label="sessions",
)

FILE_SEARCH_CALLS: Final = UsageEndpoint(
    name="file_search_calls",
    result_object="organization.usage.file_searches.result",
    dimensions=(
        PROJECT,
        USER,
        API_KEY,
        Dimension("vector_store_id", comment="The vector store searched; NULL when not grouped."),
    ),
    metrics=(Metric("num_requests", comment="File search tool calls."),),
    filters=(*_IDS, Filter("vector_store_ids")),
    summary="Hourly file search tool calls, per project, user, API key and vector store",
    volume_metrics=("num_requests",),
    volume_label="calls",
)

WEB_SEARCH_CONTEXT_LEVELS: Final = ("low", "medium", "high")

WEB_SEARCH_CALLS: Final = UsageEndpoint(
    name="web_search_calls",
    result_object="organization.usage.web_searches.result",
    dimensions=(
        PROJECT,
        USER,
        API_KEY,
        MODEL,
        Dimension(
            "context_level",
            comment="Search context size: low, medium or high; NULL when not grouped.",
        ),
        API_SOURCE,
    ),
    metrics=(Metric("num_requests", comment="Web search tool calls."), _REQUESTS_OPTIONAL),
    filters=(*_IDS, Filter("models"), Filter("context_levels", allowed=WEB_SEARCH_CONTEXT_LEVELS)),
    summary=(
        "Hourly web search tool calls, per project, user, API key, model, context level and "
        "API source"
    ),
    volume_metrics=("num_requests",),
    volume_label="calls",
)

#: Every usage endpoint, completions first; their order is the order of the assets.
USAGE_ENDPOINTS: Final[tuple[UsageEndpoint, ...]] = (
    COMPLETIONS,
    EMBEDDINGS,
    MODERATIONS,
    IMAGES,
    AUDIO_SPEECHES,
    AUDIO_TRANSCRIPTIONS,
    VECTOR_STORES,
    CODE_INTERPRETER_SESSIONS,
    FILE_SEARCH_CALLS,
    WEB_SEARCH_CALLS,
)
ENDPOINTS_BY_NAME: Final = {endpoint.name: endpoint for endpoint in USAGE_ENDPOINTS}
