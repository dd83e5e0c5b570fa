"""A deterministic synthetic OpenAI organization: projects, users, keys and their hourly usage
of every usage endpoint.

Usage is a pure function of (seed, endpoint, hour): any process, any paging and any query order
see the same numbers, so tests and the quickstart can compare what landed in PostgreSQL with
what the simulator serves. The organization has what real ones have: several projects (one of
them the default project, reported with a null project_id; one archived, without usage), users,
service-account keys with no user, playground usage with no key, dated snapshots and a
fine-tuned model, batch and every service tier, quiet hours with no usage, and data before
`breakdown_since` that lacks the newer breakdown fields (as older API data does). Cache writes
come as the API reports them: `input_cache_write_tokens` is the total of both retentions, split
into `input_cache_write_30m_tokens` (absent before `cache_write_30m_since`, as in older
responses) and `input_cache_write_12h_tokens`.

The other usage endpoints (embeddings, moderations, images, audio speeches and transcriptions,
vector stores, code interpreter sessions, file search and web search calls; see
`endpoint_usage`) have a few streams each over the same projects, keys and users, from random
sources of their own, so completions usage is the same with or without them. Their ground
truth: `endpoint_hour_results` (one hour grouped by every dimension), `endpoint_results`
(grouped and filtered like the API) and `endpoint_totals` (per project).
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from usage_assets.simulator import endpoint_usage
from usage_assets.simulator.contract import COMPLETIONS, USAGE_ENDPOINTS
from usage_assets.simulator.endpoint_usage import (
    DEFAULT_ENDPOINT_SINCE,
    EndpointStream,
    KeyUse,
    group_results,
)

RESULT_OBJECT = COMPLETIONS.result_object
#: The dimensions and metrics of a completions result, in the order a result lists them.
DIMENSIONS = COMPLETIONS.dimensions
METRICS = COMPLETIONS.metrics
#: Fields present in results before `breakdown_since` (the endpoint document's example).
LEGACY_METRICS = (
    "input_tokens",
    "output_tokens",
    "input_cached_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "num_model_requests",
)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    released: dt.date
    input_per_request: int
    output_per_request: int
    audio: bool = False
    image: bool = False
    tiers: tuple[str, ...] = ("default",)


MODELS: tuple[ModelProfile, ...] = (
    ModelProfile("gpt-4o-mini-2024-07-18", dt.date(2024, 7, 18), 1800, 350, image=True),
    ModelProfile("gpt-4o-2024-08-06", dt.date(2024, 8, 6), 2500, 500, image=True,
                 tiers=("default", "scale")),
    ModelProfile("gpt-4o-audio-preview-2024-12-17", dt.date(2024, 12, 17), 900, 600, audio=True),
    ModelProfile("o3-mini-2025-01-31", dt.date(2025, 1, 31), 1500, 2200,
                 tiers=("default", "flex")),
    ModelProfile("gpt-4.1-2025-04-14", dt.date(2025, 4, 14), 6000, 700, image=True,
                 tiers=("default", "priority")),
    ModelProfile("gpt-4.1-mini-2025-04-14", dt.date(2025, 4, 14), 3000, 400),
    ModelProfile("o4-mini-2025-04-16", dt.date(2025, 4, 16), 2000, 2500,
                 tiers=("default", "flex", "priority")),
    ModelProfile("gpt-5-2025-08-07", dt.date(2025, 8, 7), 4000, 1800,
                 tiers=("default", "flex", "priority")),
    ModelProfile("gpt-5-mini-2025-08-07", dt.date(2025, 8, 7), 2500, 900,
                 tiers=("default", "flex")),
    ModelProfile("ft:gpt-4o-mini-2024-07-18:acme::B7xQ9kLm", dt.date(2024, 9, 1), 1200, 200),
    # An old model so that the first months have usage, priced by its own rule.
    ModelProfile("gpt-3.5-turbo-0125", dt.date(2023, 1, 1), 1000, 250),
)  # fmt: skip

PROJECT_NAMES = (
    "Support Copilot", "Search Ranking", "Sales Email Drafts", "Data Platform Evals",
    "Voice Agent", "Docs Q&A", "Fraud Review", "Marketing Images", "Internal Tools",
)  # fmt: skip
FIRST_NAMES = ("Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances",
               "Guido", "Radia", "Edsger", "Katherine")  # fmt: skip


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=n))


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created_at: int
    status: str = "active"
    archived_at: int | None = None


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    role: str
    added_at: int


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    project_id: str
    owner_user_id: str | None  # None: a service account's key
    created_at: int

    @property
    def redacted_value(self) -> str:
        return f"sk-proj-****{self.id[-4:]}"


@dataclass(frozen=True)
class Stream:
    """One combination of every dimension that produces usage."""

    project_id: str | None
    user_id: str | None
    api_key_id: str | None
    model: ModelProfile
    batch: bool
    service_tier: str
    api_source: str
    activity: float  # chance of usage in a given busy hour
    volume: float  # requests scale


@dataclass
class SyntheticOrganization:
    seed: int = 20240101
    project_count: int = 6
    user_count: int = 10
    stream_count: int = 48
    #: Results before this UTC day lack the breakdown fields, like older real data.
    breakdown_since: dt.date = dt.date(2025, 1, 1)
    #: Results before this UTC day (and after `breakdown_since`) have the cache-write total and
    #: its 12-hour part, but no `input_cache_write_30m_tokens`, like older responses.
    cache_write_30m_since: dt.date = dt.date(2025, 9, 1)
    #: Extra fields added to every result, to rehearse API drift ("fields added tomorrow").
    extra_result_fields: Mapping[str, Any] = field(default_factory=dict)
    #: Chance that a whole hour has no usage at all.
    quiet_hour_share: float = 0.04
    #: Every stream active every hour (for benchmarks of large organizations).
    always_active: bool = False
    #: Streams of each usage endpoint other than completions (None: each endpoint's few, see
    #: `endpoint_usage.PROFILES`); a large organization's embeddings, images, ... have
    #: hundreds. Vector stores and code interpreter sessions are per project whatever this is.
    endpoint_stream_count: int | None = None
    #: Cost amount objects served verbatim by `GET /v1/organization/costs` (in any grouping by
    #: project_id and line_item, as one result without key, user or source) for (UTC day
    #: "YYYY-MM-DD", project_id, line_item), replacing the billed line item or adding one:
    #: rehearses exact decimals, odd line items and malformed amounts.
    billed_amount_overrides: Mapping[tuple[str, str | None, str | None], Any] = field(
        default_factory=dict
    )
    #: Whether `GET /v1/organization/costs` accepts group_by user_id together with project_id;
    #: False answers 400 (param group_by), as the API does for some organizations.
    costs_user_grouping: bool = True
    #: First UTC day of usage of each endpoint other than completions (hours before it are
    #: empty); endpoints not named here start on their `DEFAULT_ENDPOINT_SINCE` day.
    endpoint_since: Mapping[str, dt.date] = field(default_factory=dict)
    #: (low, high) GiB a project's vector stores hold: each starts in the lower half and grows
    #: slowly towards `high`.
    vector_store_gib: tuple[float, float] = (0.2, 3.0)
    #: Planted spend anomalies: (UTC day "YYYY-MM-DD", project id or name) -> a factor that
    #: multiplies that project's requests of every usage endpoint that day (6.0: a spike; 0.0:
    #: a sudden stop), or (day, project, api_key_id) -> a factor for that key's usage alone
    #: (both multiply where both apply). The project None (or "default") is the default
    #: project. Tokens, images, calls, ... follow the requests, and so does the bill, which
    #: prices the usage served. Stored vector store bytes are a size, not a flow: a planted
    #: factor leaves them (and their storage line item) as they are.
    anomalies: Mapping[tuple[str, str | None] | tuple[str, str | None, str], float] = field(
        default_factory=dict
    )

    projects: list[Project] = field(init=False)
    users: list[User] = field(init=False)
    api_keys: list[ApiKey] = field(init=False)
    streams: list[Stream] = field(init=False)
    #: The vector stores of each project (None: the default project), for file search usage.
    vector_store_ids: dict[str | None, tuple[str, ...]] = field(init=False)
    #: The streams of each usage endpoint other than completions.
    endpoint_streams: dict[str, list[EndpointStream]] = field(init=False)
    #: `anomalies` resolved: (day, project_id, api_key_id or None for the whole project).
    planted: dict[tuple[dt.date, str | None, str | None], float] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        created = int(dt.datetime(2023, 6, 1, tzinfo=dt.UTC).timestamp())
        self.projects = [
            Project(
                id=f"proj_{_token(rng, 24)}",
                name=PROJECT_NAMES[i % len(PROJECT_NAMES)] + (f" {i}" if i >= 9 else ""),
                created_at=created + i * 86400,
            )
            for i in range(self.project_count)
        ]
        self.users = []
        for i in range(self.user_count):
            first = FIRST_NAMES[i % len(FIRST_NAMES)]
            self.users.append(
                User(
                    id=f"user-{_token(rng, 24)}",
                    name=f"{first} {chr(65 + i % 26)}.",
                    email=f"{first.lower()}.{i}@example.com",
                    role="owner" if i == 0 else "reader",
                    added_at=created,
                )
            )
        self.api_keys = []
        for i, project in enumerate(self.projects):
            for k in range(2):
                owner = None if k == 1 else self.users[(i + k) % len(self.users)].id
                self.api_keys.append(
                    ApiKey(
                        id=f"key_{_token(rng, 16)}",
                        name=f"{project.name} {'service' if owner is None else 'dev'} key",
                        project_id=project.id,
                        owner_user_id=owner,
                        created_at=project.created_at,
                    )
                )
        self.streams = self._make_streams(rng)
        self._add_archived_project(created)
        self._make_endpoint_streams()
        self.planted = self._resolve_anomalies()
        self._hour_cache = lru_cache(maxsize=64)(self._hour_results)
        self._endpoint_cache = lru_cache(maxsize=64 * len(self.endpoint_streams))(
            self._endpoint_hour_results
        )

    def _add_archived_project(self, created: int) -> None:
        """One archived project with a key and no usage, so that `include_archived` matters.

        Added after the streams, from its own random source, so usage is unchanged by it.
        """
        rng = random.Random(f"{self.seed}:archived")
        project = Project(
            id=f"proj_{_token(rng, 24)}",
            name="Legacy Chatbot",
            created_at=created - 90 * 86400,
            status="archived",
            archived_at=created - 7 * 86400,
        )
        self.projects.append(project)
        self.api_keys.append(
            ApiKey(
                id=f"key_{_token(rng, 16)}",
                name=f"{project.name} dev key",
                project_id=project.id,
                owner_user_id=self.users[0].id if self.users else None,
                created_at=project.created_at,
            )
        )

    def _resolve_anomalies(self) -> dict[tuple[dt.date, str | None, str | None], float]:
        """`anomalies` keyed by (day, project id, key id or None), every part checked."""
        by_name = {p.name: p.id for p in self.projects}
        project_ids = {p.id for p in self.projects}
        planted: dict[tuple[dt.date, str | None, str | None], float] = {}
        for key, factor in self.anomalies.items():
            if len(key) not in (2, 3):
                raise ValueError(f"anomaly {key!r}: expected (day, project) or (day, project, key)")
            day_text, project = key[0], key[1]
            api_key_id = key[2] if len(key) == 3 else None
            try:
                day = dt.date.fromisoformat(day_text)
            except (TypeError, ValueError):
                raise ValueError(f"anomaly {key!r}: {day_text!r} is not a YYYY-MM-DD day") from None
            if project in (None, "default"):
                project_id = None
            elif project in project_ids:
                project_id = project
            elif project in by_name:
                project_id = by_name[project]
            else:
                raise ValueError(f"anomaly {key!r}: no project with the id or name {project!r}")
            if api_key_id is not None and not any(
                k.id == api_key_id and k.project_id == project_id for k in self.api_keys
            ):
                raise ValueError(f"anomaly {key!r}: {api_key_id!r} is not a key of the project")
            if not 0 <= factor < float("inf"):
                raise ValueError(f"anomaly {key!r}: the factor must be 0 or more, not {factor!r}")
            planted[(day, project_id, api_key_id)] = float(factor)
        return planted

    def factor(self, day: dt.date, project_id: str | None, api_key_id: str | None) -> float:
        """What planted anomalies multiply the requests of (day, project, key) by (1: none)."""
        if not self.planted:
            return 1.0
        factor = self.planted.get((day, project_id, None), 1.0)
        if api_key_id is not None:
            factor *= self.planted.get((day, project_id, api_key_id), 1.0)
        return factor

    def _make_endpoint_streams(self) -> None:
        """Streams of the other usage endpoints over the active projects, their keys and users,
        each endpoint from its own random source (so completions usage is unchanged by them)."""
        active = [p.id for p in self.projects if p.status != "archived"]
        projects: list[str | None] = [None, *active]  # None: the default project
        rng = random.Random(f"{self.seed}:vector_store_ids")
        self.vector_store_ids = {
            project: tuple(f"vs_{_token(rng, 24)}" for _ in range(rng.choice((1, 2))))
            for project in projects
        }
        uses = [
            KeyUse(key.project_id, key.id, key.owner_user_id)
            for key in self.api_keys
            if key.project_id in active
        ]
        uses += [KeyUse(None, None, user.id) for user in self.users[:3]]  # playground, no key
        self.endpoint_streams = {
            name: endpoint_usage.make_streams(
                self.seed,
                name,
                uses=uses,
                projects=projects,
                vector_store_ids=self.vector_store_ids,
                always_active=self.always_active,
                gib_range=self.vector_store_gib,
                count=self.endpoint_stream_count,
            )
            for name in USAGE_ENDPOINTS
            if name != COMPLETIONS.name
        }

    def _make_streams(self, rng: random.Random) -> list[Stream]:
        streams: dict[tuple[Any, ...], Stream] = {}
        attempts = 0
        while len(streams) < self.stream_count and attempts < self.stream_count * 20:
            attempts += 1
            kind = rng.random()
            if kind < 0.06:  # playground / ChatGPT-style usage: default project, no key
                project_id, key_id = None, None
                user_id: str | None = rng.choice(self.users).id
            else:
                key = rng.choice(self.api_keys)
                project_id, key_id, user_id = key.project_id, key.id, key.owner_user_id
            model = rng.choice(MODELS)
            batch = rng.random() < 0.12 and not model.audio
            tier = "default" if batch else rng.choice(model.tiers)
            stream = Stream(
                project_id=project_id,
                user_id=user_id,
                api_key_id=key_id,
                model=model,
                batch=batch,
                service_tier=tier,
                api_source="agents_api" if rng.random() < 0.15 else "unlabeled",
                activity=1.0 if self.always_active else rng.uniform(0.2, 0.9),
                volume=rng.uniform(1, 40),
            )
            streams.setdefault(_stream_key(stream), stream)
        return list(streams.values())

    # ------------------------------------------------------------------ usage

    def hour_results(self, hour_start: int) -> list[dict[str, Any]]:
        """Usage of one UTC hour grouped by every dimension (cached; do not mutate)."""
        return self._hour_cache(hour_start)

    def _hour_results(self, hour_start: int) -> list[dict[str, Any]]:
        if hour_start % 3600:
            raise ValueError("hour_start must be aligned to the hour")
        when = dt.datetime.fromtimestamp(hour_start, dt.UTC)
        rng = random.Random((self.seed << 40) ^ (hour_start // 3600))
        if not self.always_active and rng.random() < self.quiet_hour_share:
            return []
        daylight = 0.35 + 0.65 * max(0.0, 1 - abs(when.hour - 15) / 10)
        modern = when.date() >= self.breakdown_since
        with_30m = when.date() >= self.cache_write_30m_since
        results = []
        for stream in self.streams:
            roll, size = rng.random(), rng.random()
            if when.date() < stream.model.released:
                continue
            if not self.always_active and roll > stream.activity * daylight:
                continue
            requests = 1 + int(stream.volume * size * (3 if stream.batch else 1))
            planted = self.factor(when.date(), stream.project_id, stream.api_key_id)
            scaled = requests if planted == 1 else round(requests * planted)
            # Drawn even when planted away, so that every other stream's numbers are unchanged.
            result = self._result(stream, max(scaled, 1), rng, modern, with_30m)
            if scaled > 0:
                results.append(result)
        return results

    def _result(
        self, stream: Stream, requests: int, rng: random.Random, modern: bool, with_30m: bool
    ) -> dict[str, Any]:
        model = stream.model
        per_in = model.input_per_request * rng.uniform(0.5, 1.5)
        per_out = model.output_per_request * rng.uniform(0.5, 1.5)
        total_in = int(per_in * requests)
        cached_share = rng.choice((0.0, 0.1, 0.4, 0.8))
        audio_in = int(total_in * 0.6) if model.audio else 0
        image_in = int(total_in * 0.2) if model.image and rng.random() < 0.3 else 0
        text_in = total_in - audio_in - image_in
        cached_text = int(text_in * cached_share)
        cached_audio = int(audio_in * cached_share * 0.5)
        cached_image = 0
        cache_write_30m = int((text_in - cached_text) * 0.05) if modern and cached_share else 0
        cache_write_12h = int((text_in - cached_text) * 0.02) if cached_share >= 0.4 else 0
        uncached_text = text_in - cached_text - cache_write_30m - cache_write_12h
        uncached_audio = audio_in - cached_audio
        total_out = int(per_out * requests)
        audio_out = int(total_out * 0.7) if model.audio else 0
        metrics = {
            "input_tokens": total_in,
            "output_tokens": total_out,
            "num_model_requests": requests,
            "input_cached_tokens": cached_text + cached_audio + cached_image,
            # The total of both retentions, and its two parts.
            "input_cache_write_tokens": cache_write_30m + cache_write_12h,
            "input_cache_write_30m_tokens": cache_write_30m,
            "input_cache_write_12h_tokens": cache_write_12h,
            "input_uncached_tokens": uncached_text + uncached_audio + image_in,
            "input_text_tokens": uncached_text,
            "input_audio_tokens": uncached_audio,
            "input_image_tokens": image_in,
            "input_cached_text_tokens": cached_text,
            "input_cached_audio_tokens": cached_audio,
            "input_cached_image_tokens": cached_image,
            "output_text_tokens": total_out - audio_out,
            "output_audio_tokens": audio_out,
            "output_image_tokens": 0,
        }
        if not modern:
            # Older data: no cache writes existed, and only the original fields were reported.
            metrics["input_cached_tokens"] = cached_text + cached_audio
            metrics = {name: metrics[name] for name in LEGACY_METRICS}
        elif not with_30m:
            del metrics["input_cache_write_30m_tokens"]  # total and 12h only, as older responses
        result: dict[str, Any] = {"object": RESULT_OBJECT}
        result.update(zip(DIMENSIONS, _stream_key(stream), strict=True))
        result.update(metrics)
        return result

    def usage_results(
        self,
        start: int,
        end: int,
        *,
        group_by: Sequence[str],
        project_ids: Iterable[str] = (),
        user_ids: Iterable[str] = (),
        api_key_ids: Iterable[str] = (),
        models: Iterable[str] = (),
        batch: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Results for [start, end) (whole hours), filtered and grouped as the API does."""
        filters = {
            "project_id": set(project_ids),
            "user_id": set(user_ids),
            "api_key_id": set(api_key_ids),
            "model": set(models),
        }
        hours = range(start - start % 3600, end, 3600)
        if (
            len(hours) == 1
            and set(group_by) >= set(DIMENSIONS)
            and batch is None
            and not any(filters.values())
        ):
            # One hour grouped by every dimension: each stream already is one group.
            return [
                {**result, **self.extra_result_fields} for result in self.hour_results(hours[0])
            ]
        grouped: dict[tuple[Any, ...], dict[str, Any]] = {}
        for hour in hours:
            for result in self.hour_results(hour):
                if batch is not None and result["batch"] is not batch:
                    continue
                if any(
                    allowed and result[name] not in allowed for name, allowed in filters.items()
                ):
                    continue
                key = tuple(result[d] if d in group_by else None for d in DIMENSIONS)
                merged = grouped.get(key)
                if merged is None:
                    merged = {"object": RESULT_OBJECT, **dict(zip(DIMENSIONS, key, strict=True))}
                    for name in METRICS:
                        if name in result:
                            merged[name] = 0
                    grouped[key] = merged
                for name in METRICS:
                    if name in result:
                        merged[name] = merged.get(name, 0) + result[name]
        out = list(grouped.values())
        if self.extra_result_fields:
            for result in out:
                result.update(self.extra_result_fields)
        return out

    # ------------------------------------------------------------------ every usage endpoint

    def since(self, endpoint: str) -> dt.date:
        """The first UTC day with usage of `endpoint` (other than completions)."""
        return self.endpoint_since.get(endpoint, DEFAULT_ENDPOINT_SINCE[endpoint])

    def endpoint_hour_results(self, endpoint: str, hour_start: int) -> list[dict[str, Any]]:
        """Usage of `endpoint` in one UTC hour, grouped by every one of its dimensions (cached;
        do not mutate). A pure function of (seed, endpoint, hour)."""
        if endpoint == COMPLETIONS.name:
            return self.hour_results(hour_start)
        if endpoint not in self.endpoint_streams:
            raise KeyError(f"unknown usage endpoint {endpoint!r}")
        return self._endpoint_cache(endpoint, hour_start)

    def _endpoint_hour_results(self, endpoint: str, hour_start: int) -> list[dict[str, Any]]:
        return endpoint_usage.hour_results(
            self.seed,
            endpoint,
            self.endpoint_streams[endpoint],
            hour_start,
            since=self.since(endpoint),
            quiet_hour_share=self.quiet_hour_share,
            always_active=self.always_active,
            factor=self.factor if self.planted else None,
        )

    def endpoint_results(
        self,
        endpoint: str,
        start: int,
        end: int,
        *,
        group_by: Sequence[str],
        filters: Mapping[str, Iterable[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Results of `endpoint` for [start, end) (whole hours), grouped by `group_by` and kept
        where each dimension named in `filters` is one of its values, as the API does. Counts
        are summed over the hours; a gauge (`usage_bytes`) is its largest hourly value."""
        filters = filters or {}
        if endpoint == COMPLETIONS.name:
            batch = filters.get("batch")
            batches = set(batch) if batch is not None else set()
            return self.usage_results(
                start,
                end,
                group_by=group_by,
                project_ids=filters.get("project_id", ()),
                user_ids=filters.get("user_id", ()),
                api_key_ids=filters.get("api_key_id", ()),
                models=filters.get("model", ()),
                batch=batches.pop() if len(batches) == 1 else None,
            )
        hours = range(start - start % 3600, end, 3600)
        out = group_results(
            USAGE_ENDPOINTS[endpoint],
            (self.endpoint_hour_results(endpoint, hour) for hour in hours),
            group_by=group_by,
            filters=filters,
        )
        if self.extra_result_fields:
            for result in out:
                result.update(self.extra_result_fields)
        return out

    def endpoint_totals(
        self, endpoint: str, start: int, end: int
    ) -> dict[str | None, dict[str, int]]:
        """Ground truth for tests: each metric of `endpoint` per project over [start, end),
        summed over the hours (a gauge: its largest hourly value). Counted here from the
        hourly results, independently of `endpoint_results`."""
        spec = USAGE_ENDPOINTS[endpoint]
        totals: dict[str | None, dict[str, int]] = {}
        for hour in range(start - start % 3600, end, 3600):
            this_hour: dict[str | None, dict[str, int]] = {}
            for result in self.endpoint_hour_results(endpoint, hour):
                acc = this_hour.setdefault(result["project_id"], dict.fromkeys(spec.metrics, 0))
                for name in spec.metrics:
                    acc[name] += result[name]
            for project, metrics in this_hour.items():
                total = totals.setdefault(project, dict.fromkeys(spec.metrics, 0))
                for name, value in metrics.items():
                    gauge = name in spec.gauges
                    total[name] = max(total[name], value) if gauge else total[name] + value
        return totals

    def totals_by_project(self, start: int, end: int) -> dict[str | None, dict[str, int]]:
        """Ground truth for tests: token and request sums per project over [start, end)."""
        totals: dict[str | None, dict[str, int]] = {}
        for hour in range(start, end, 3600):
            for result in self.hour_results(hour):
                acc = totals.setdefault(
                    result["project_id"],
                    {"input_tokens": 0, "output_tokens": 0, "num_model_requests": 0},
                )
                for name in acc:
                    acc[name] += result[name]
        return totals


def _stream_key(stream: Stream) -> tuple[Any, ...]:
    return (
        stream.project_id,
        stream.user_id,
        stream.api_key_id,
        stream.model.name,
        stream.batch,
        stream.service_tier,
        stream.api_source,
    )


def parse_anomaly(
    spec: str,
) -> tuple[tuple[str, str | None] | tuple[str, str | None, str], float]:
    """`DAY:PROJECT=FACTOR` or `DAY:PROJECT:API_KEY_ID=FACTOR` (PROJECT an id or a name,
    `default` the default project) as an `anomalies` entry, e.g. `2025-06-10:Docs Q&A=6`."""
    where, equals, factor_text = spec.rpartition("=")
    parts = where.split(":")
    if not equals or len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"anomaly {spec!r}: expected DAY:PROJECT[:API_KEY_ID]=FACTOR")
    try:
        factor = float(factor_text)
    except ValueError:
        raise ValueError(f"anomaly {spec!r}: {factor_text!r} is not a number") from None
    day, project = parts[0], parts[1]
    if len(parts) == 3:
        return (day, project, parts[2]), factor
    return (day, project), factor
