"""Synthetic usage of the usage endpoints other than completions, and the grouping every usage
endpoint shares.

Each endpoint has a few streams (one combination of every dimension the endpoint groups by) over
the organization's projects, users and keys, with their own random source per endpoint, so that
adding or changing one endpoint's usage never moves another's numbers (completions included).
An hour's usage is a pure function of (seed, endpoint, hour).

Grouping (`group_results`) is linear in the hourly results: within an hour the members of a
group are summed; across hours a count is summed, and a gauge (`usage_bytes`) takes its largest
hourly value, since a size summed over hours means nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from usage_assets.simulator.contract import USAGE_ENDPOINTS, UsageEndpoint

GIB = 2**30
MIB = 2**20


@dataclass(frozen=True)
class Offering:
    """What a stream uses, besides who uses it: its non-key dimensions, and since when."""

    values: Mapping[str, str]
    released: dt.date


def _offer(released: dt.date, **values: str) -> Offering:
    return Offering(values, released)


_TEXT_EMBEDDING_3 = dt.date(2024, 1, 25)
_DEV_DAY_2023 = dt.date(2023, 11, 6)

#: The non-key dimension values each endpoint's streams choose from.
OFFERINGS: Mapping[str, tuple[Offering, ...]] = {
    "embeddings": (
        _offer(_TEXT_EMBEDDING_3, model="text-embedding-3-small"),
        _offer(_TEXT_EMBEDDING_3, model="text-embedding-3-large"),
        _offer(dt.date(2022, 12, 15), model="text-embedding-ada-002"),
    ),
    "moderations": (_offer(dt.date(2024, 9, 26), model="omni-moderation-2024-09-26"),),
    "images": (
        _offer(_DEV_DAY_2023, model="dall-e-3", size="1024x1024", source="image.generation"),
        _offer(_DEV_DAY_2023, model="dall-e-3", size="1024x1792", source="image.generation"),
        *(
            _offer(dt.date(2022, 11, 3), model="dall-e-2", size=size, source=source)
            for size in ("256x256", "512x512", "1024x1024")
            for source in ("image.generation", "image.edit", "image.variation")
        ),
    ),
    "audio_speeches": (
        _offer(_DEV_DAY_2023, model="tts-1"),
        _offer(_DEV_DAY_2023, model="tts-1-hd"),
    ),
    "audio_transcriptions": (_offer(dt.date(2023, 3, 1), model="whisper-1"),),
    "web_search_calls": tuple(
        _offer(dt.date(2025, 3, 11), model=model, context_level=level, api_source=source)
        for model in ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18")
        for level in ("low", "medium", "high")
        for source in ("unlabeled", "unlabeled", "unlabeled", "agents_api")
    ),
}

#: Default first UTC day of usage of each endpoint (an organization can move them).
DEFAULT_ENDPOINT_SINCE: Mapping[str, dt.date] = {
    "embeddings": dt.date(2023, 6, 1),
    "moderations": dt.date(2024, 9, 26),
    "images": _DEV_DAY_2023,
    "audio_speeches": _DEV_DAY_2023,
    "audio_transcriptions": dt.date(2023, 6, 1),
    "vector_stores": dt.date(2024, 4, 17),
    "code_interpreter_sessions": _DEV_DAY_2023,
    "file_search_calls": dt.date(2024, 4, 17),
    "web_search_calls": dt.date(2025, 3, 11),
}


@dataclass(frozen=True)
class Profile:
    """How much an endpoint's streams use: how many, requests an hour, and per-request sizes."""

    streams: int
    volume: tuple[float, float]
    #: (low, high) of the endpoint's first metric per request; None: one per request.
    per_request: tuple[float, float] | None = None


PROFILES: Mapping[str, Profile] = {
    "embeddings": Profile(8, (1, 60), (150, 2500)),
    "moderations": Profile(5, (1, 80), (40, 800)),
    "images": Profile(8, (1, 6)),
    "audio_speeches": Profile(5, (1, 10), (80, 2500)),
    "audio_transcriptions": Profile(4, (1, 8), (15, 900)),
    "code_interpreter_sessions": Profile(5, (1, 5)),
    "file_search_calls": Profile(8, (1, 30)),
    "web_search_calls": Profile(8, (1, 15)),
    "vector_stores": Profile(0, (0, 0)),
}


@dataclass(frozen=True)
class KeyUse:
    """Who can use an endpoint: a project, a key (None: no key) and the key's user."""

    project_id: str | None
    api_key_id: str | None
    user_id: str | None


@dataclass(frozen=True)
class EndpointStream:
    """One combination of every dimension of an endpoint that produces usage."""

    endpoint: str
    #: The value of each of the endpoint's dimensions, in its order.
    values: tuple[Any, ...]
    since: dt.date
    activity: float  # chance of usage in a given busy hour
    volume: float  # requests scale; for vector stores the bytes stored on `since`
    growth: float = 0.0  # vector stores: bytes added a day

    def value(self, dimension: str) -> Any:
        return self.values[USAGE_ENDPOINTS[self.endpoint].dimensions.index(dimension)]


def make_streams(
    seed: int,
    endpoint: str,
    *,
    uses: Sequence[KeyUse],
    projects: Sequence[str | None],
    vector_store_ids: Mapping[str | None, Sequence[str]],
    always_active: bool,
    gib_range: tuple[float, float],
    count: int | None = None,
) -> list[EndpointStream]:
    """The streams of `endpoint`, from a random source of its own: the profile's number of
    them, or `count` (fewer when the organization has fewer combinations); vector stores and
    code interpreter sessions are per project, so `count` only caps the latter."""
    rng = random.Random(f"{seed}:{endpoint}:streams")
    spec = USAGE_ENDPOINTS[endpoint]
    profile = PROFILES[endpoint]
    wanted = profile.streams if count is None else count
    if endpoint == "vector_stores":
        low, high = gib_range
        streams = []
        for project in projects:
            base = rng.uniform(low, low + (high - low) / 2) * GIB
            streams.append(
                EndpointStream(
                    endpoint,
                    (project,),
                    DEFAULT_ENDPOINT_SINCE[endpoint],
                    1.0,
                    base,
                    growth=rng.uniform(0, (high * GIB - base) / 1000),
                )
            )
        return streams
    if spec.dimensions == ("project_id",):  # code interpreter: per project
        chosen = rng.sample(list(projects), min(wanted, len(projects)))
        return [
            EndpointStream(
                endpoint,
                (project,),
                DEFAULT_ENDPOINT_SINCE[endpoint],
                1.0 if always_active else rng.uniform(0.2, 0.8),
                rng.uniform(*profile.volume),
            )
            for project in chosen
        ]
    keyless = [u for u in uses if u.api_key_id is None]
    service = [u for u in uses if u.api_key_id is not None and u.user_id is None]
    keyed = [u for u in uses if u.api_key_id is not None]
    by_key: dict[tuple[Any, ...], EndpointStream] = {}
    attempts = 0
    while len(by_key) < wanted and attempts < wanted * 20:
        # The first stream has no key (the default project, from the playground), the second
        # a service account's key (no user); the rest any key.
        pool = keyless if attempts == 0 else service if attempts == 1 else keyed
        attempts += 1
        use = rng.choice(pool or keyed)
        values: dict[str, Any] = {
            "project_id": use.project_id,
            "user_id": use.user_id,
            "api_key_id": use.api_key_id,
        }
        since = DEFAULT_ENDPOINT_SINCE[endpoint]
        if endpoint == "file_search_calls":
            values["vector_store_id"] = rng.choice(vector_store_ids[use.project_id])
        else:
            # A model first (each as likely as another), then one of its offerings.
            offerings = OFFERINGS[endpoint]
            model = rng.choice(sorted({o.values["model"] for o in offerings}))
            offering = rng.choice([o for o in offerings if o.values["model"] == model])
            values.update(offering.values)
            since = max(since, offering.released)
        stream = EndpointStream(
            endpoint,
            tuple(values[d] for d in spec.dimensions),
            since,
            1.0 if always_active else rng.uniform(0.2, 0.9),
            rng.uniform(*profile.volume),
        )
        by_key.setdefault(stream.values, stream)
    return list(by_key.values())


def hour_results(
    seed: int,
    endpoint: str,
    streams: Sequence[EndpointStream],
    hour_start: int,
    *,
    since: dt.date,
    quiet_hour_share: float,
    always_active: bool,
    factor: Callable[[dt.date, str | None, str | None], float] | None = None,
) -> list[dict[str, Any]]:
    """One hour of `endpoint`'s usage, one result per active stream (grouped by everything).
    `factor(day, project_id, api_key_id)` multiplies a stream's requests (planted anomalies;
    a result scaled to no request is left out); stored vector store bytes are not scaled."""
    if hour_start % 3600:
        raise ValueError("hour_start must be aligned to the hour")
    spec = USAGE_ENDPOINTS[endpoint]
    when = dt.datetime.fromtimestamp(hour_start, dt.UTC)
    if when.date() < since:
        return []
    rng = random.Random(f"{seed}:{endpoint}:{hour_start // 3600}")
    if endpoint == "vector_stores":  # stored bytes: there every hour, quiet or not
        return [_vector_store_result(spec, s, when, rng) for s in streams if when.date() >= s.since]
    if not always_active and rng.random() < quiet_hour_share:
        return []
    daylight = 0.35 + 0.65 * max(0.0, 1 - abs(when.hour - 15) / 10)
    profile = PROFILES[endpoint]
    results = []
    for stream in streams:
        roll, size = rng.random(), rng.random()
        if when.date() < stream.since:
            continue
        if not always_active and roll > stream.activity * daylight:
            continue
        requests = 1 + int(stream.volume * size)
        scaled = requests
        if factor is not None:
            planted = factor(when.date(), stream.value("project_id"), _key_of(spec, stream))
            scaled = requests if planted == 1 else round(requests * planted)
        # Drawn even when planted away, so that every other stream's numbers are unchanged.
        result = _result(spec, stream, max(scaled, 1), profile, rng)
        if scaled > 0:
            results.append(result)
    return results


def _key_of(spec: UsageEndpoint, stream: EndpointStream) -> str | None:
    return stream.value("api_key_id") if "api_key_id" in spec.dimensions else None


def _result(
    spec: UsageEndpoint, stream: EndpointStream, requests: int, profile: Profile, rng: random.Random
) -> dict[str, Any]:
    first = requests
    if profile.per_request is not None:
        first = max(1, int(requests * rng.uniform(*profile.per_request)))
    elif spec.name == "images" and stream.value("model") == "dall-e-2":
        first = requests * rng.choice((1, 1, 2, 4))  # dall-e-2 takes n up to 10
    metrics = {spec.metrics[0]: first}
    if spec.name == "web_search_calls":  # calls made by model requests, some make several
        metrics["num_model_requests"] = max(1, requests - int(requests * rng.uniform(0, 0.4)))
    elif "num_model_requests" in spec.metrics:
        metrics["num_model_requests"] = requests
    result: dict[str, Any] = {"object": spec.result_object}
    result.update(zip(spec.dimensions, stream.values, strict=True))
    result.update((name, metrics[name]) for name in spec.metrics)
    return result


def _vector_store_result(
    spec: UsageEndpoint, stream: EndpointStream, when: dt.datetime, rng: random.Random
) -> dict[str, Any]:
    days = (when - dt.datetime.combine(stream.since, dt.time(), dt.UTC)).total_seconds() / 86400
    stored = stream.volume + stream.growth * days + rng.uniform(0, MIB)
    result: dict[str, Any] = {"object": spec.result_object}
    result.update(zip(spec.dimensions, stream.values, strict=True))
    result["usage_bytes"] = int(stored)
    return result


def group_results(
    spec: UsageEndpoint,
    hours: Iterable[Sequence[Mapping[str, Any]]],
    *,
    group_by: Sequence[str],
    filters: Mapping[str, Iterable[Any]],
) -> list[dict[str, Any]]:
    """Results grouped by `group_by` over `hours` (each hour's results grouped by everything),
    keeping only those whose dimension is one of the values of each non-empty filter (by
    dimension name). A dimension not grouped by is null; every metric is present."""
    allowed = {name: set(values) for name, values in filters.items()}
    allowed = {name: values for name, values in allowed.items() if values}
    grouped_dims = [d in group_by for d in spec.dimensions]
    counts = [m for m in spec.metrics if m not in spec.gauges]
    grouped: dict[tuple[Any, ...], dict[str, Any]] = {}
    for results in hours:
        this_hour: dict[tuple[Any, ...], dict[str, Any]] = {}
        for result in results:
            if any(result[name] not in values for name, values in allowed.items()):
                continue
            key = tuple(
                result[d] if grouped else None
                for d, grouped in zip(spec.dimensions, grouped_dims, strict=True)
            )
            acc = this_hour.get(key)
            if acc is None:
                this_hour[key] = acc = dict.fromkeys(spec.metrics, 0)
            for name in spec.metrics:
                acc[name] += result[name]
        for key, metrics in this_hour.items():
            merged = grouped.get(key)
            if merged is None:
                merged = {"object": spec.result_object}
                merged.update(zip(spec.dimensions, key, strict=True))
                merged.update(metrics)
                grouped[key] = merged
                continue
            for name in counts:
                merged[name] += metrics[name]
            for name in spec.gauges:
                merged[name] = max(merged[name], metrics[name])
    return list(grouped.values())
