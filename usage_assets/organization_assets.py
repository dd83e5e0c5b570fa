"""Billed costs and the organization's names: the other half of what a FinOps dashboard needs.

- `costs_daily` (daily partitions): `GET /v1/organization/costs`, what OpenAI actually bills,
  per UTC day, project, line item, API key, user and API source (or the finest coarser grouping
  the organization accepts, see COSTS_GROUPINGS), kept exact in `numeric` (never float).
- `openai_projects`, `openai_users`, `openai_api_keys`: the Admin API's list endpoints, so BI
  shows project and key names instead of ids. Of a key only its id, project, name and redacted
  value are stored.

Every payload is fetched and validated completely before the first write; each write is one
transaction (per day for costs, per table for names), so a failure leaves the previous rows.
A NUL character, which PostgreSQL text cannot store, fails the run when it is in an id, a
project id or a line item; in a name, email, role or status it is stored as U+FFFD (one odd
name is not worth refusing the organization's names); in the `result` JSON it is kept as the
text `\\u0000`, as in the usage table.
"""

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import dagster as dg
from sqlalchemy import Engine, Table, delete, insert, select

from usage_assets.admin_api.costs import COSTS_BUCKET_LIMITS, CostBucket, CostsQuery, iter_costs
from usage_assets.admin_api.rows import NUL_REPLACEMENT
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.defs.partitions import daily_utc_partitions
from usage_assets.defs.policies import (
    DAILY_FRESHNESS,
    NAMES_FRESHNESS,
    RANGE_BACKFILL,
    permanent_errors_fail_fast,
    report_days,
    window_days,
)
from usage_assets.defs.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.defs.usage.assets import admin_api_asset
from usage_assets.defs.usage.ingest import epoch_seconds
from usage_assets.errors import AdminAPIError, PayloadError
from usage_assets.markdown import md_table
from usage_assets.models import SCHEMA, ApiKey, Base, CostDaily, Project, User
from usage_assets.warehouse.replace import partition_transaction, replace_partition

COSTS_TABLE = f"{SCHEMA}.{CostDaily.__tablename__}"
PROJECTS_TABLE = f"{SCHEMA}.{Project.__tablename__}"
USERS_TABLE = f"{SCHEMA}.{User.__tablename__}"
API_KEYS_TABLE = f"{SCHEMA}.{ApiKey.__tablename__}"
#: The groupings asked for, finest first. Whether `user_id` can be combined with `project_id`
#: depends on the organization (and the time range); an unsupported combination is a 400, and
#: the next, coarser grouping is asked instead. The one used is stored in `costs_daily.group_by`.
COSTS_GROUPINGS: tuple[tuple[str, ...], ...] = (
    ("project_id", "line_item", "api_key_id", "user_id", "api_source"),
    ("project_id", "line_item", "api_key_id", "api_source"),
    ("project_id", "line_item", "user_id", "api_source"),
    ("project_id", "line_item", "api_source"),
    ("project_id", "line_item"),
)
#: The finest grouping, asked first.
COSTS_GROUP_BY = COSTS_GROUPINGS[0]
#: Columns the costs writer fills, in COPY order (everything but `id` and `ingested_at`).
COSTS_COPY_COLUMNS = (
    "usage_date",
    "project_id",
    "line_item",
    "api_key_id",
    "user_id",
    "api_source",
    "line_item_model",
    "line_item_kind",
    "amount_usd",
    "currency",
    "quantity",
    "quantity_unit",
    "group_by",
    "result",
)
#: Objects per page of the list endpoints (their maximum).
LIST_PAGE_SIZE = 100
PROJECTS_PATH = "/organization/projects"
USERS_PATH = "/organization/users"


# --------------------------------------------------------------------------- billed costs


def parse_line_item(line_item: str | None) -> tuple[str | None, str | None]:
    """`"gpt-4o-2024-08-06, cached input"` -> (model, kind), split on the last ", ".

    Any kind is kept as its text, known or not ("gpt-image-1, image generation" -> kind
    "image generation"). A line item without ", " ("web search tool calls", "vector store
    storage", or none at all) gives (None, None): the row is kept, with its line item unparsed.
    """
    if line_item is None:
        return None, None
    model, sep, kind = line_item.rpartition(", ")
    if not sep:
        return None, None
    return model or None, kind or None


def _json_text(text: str) -> str:
    """A JSON string; a NUL (which jsonb refuses) is kept as the six characters \\u0000."""
    return json.dumps(text.replace("\x00", NUL_REPLACEMENT), ensure_ascii=False)


def dump_json(value: Any) -> str:
    """JSON text of a parsed payload, with `Decimal` numbers written exactly as received, in a
    form jsonb accepts: NUL characters as text (see `_json_text`), NaN and Infinity, which JSON
    numbers cannot be, as strings."""
    if isinstance(value, dict):
        items = (f"{_json_text(str(k))}:{dump_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    if isinstance(value, str):
        return _json_text(value)
    if isinstance(value, Decimal | float) and not Decimal(value).is_finite():
        return json.dumps(str(Decimal(value)))  # "NaN", "Infinity", "-Infinity"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


@dataclass
class CostDay:
    """One UTC day of billed costs, validated and ready to write."""

    day: dt.date
    #: The grouping the day was fetched with (see COSTS_GROUPINGS); stored on every row.
    group_by: tuple[str, ...] = COSTS_GROUP_BY
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    billed_usd: Decimal = Decimal(0)
    by_project: dict[str | None, Decimal] = field(default_factory=dict)
    #: The API returned the day's bucket (possibly empty); a day without one is not written.
    seen: bool = False

    def add(self, bucket: CostBucket) -> None:
        self.seen = True
        for result in bucket.results:
            model, kind = parse_line_item(result.line_item)
            self.rows.append(
                (
                    self.day,
                    result.project_id,
                    result.line_item,
                    result.api_key_id,
                    result.user_id,
                    result.api_source,
                    model,
                    kind,
                    result.amount,
                    result.currency,
                    result.quantity,
                    result.quantity_unit,
                    list(self.group_by),
                    dump_json(result.result),
                )
            )
            self.billed_usd += result.amount
            project = result.project_id
            self.by_project[project] = self.by_project.get(project, Decimal(0)) + result.amount


def costs_query_for_days(
    first_day: dt.date, end_day: dt.date, group_by: tuple[str, ...] = COSTS_GROUP_BY
) -> CostsQuery:
    """Daily buckets for [first_day, end_day) by `group_by`, few pages."""
    return CostsQuery(
        start_time=epoch_seconds(first_day),
        end_time=epoch_seconds(end_day),
        bucket_width="1d",
        group_by=group_by,
        limit=min((end_day - first_day).days, COSTS_BUCKET_LIMITS[1]),
    )


#: Extra requests when a closed day came back without its bucket, before giving up.
COSTS_REASKS = 2
ONE_DAY = dt.timedelta(days=1)


def fetch_cost_days(
    client: AdminAPIClient,
    first_day: dt.date,
    end_day: dt.date,
    *,
    now: dt.datetime | None = None,
) -> list[CostDay]:
    """Every day of [first_day, end_day) that the API returned a bucket for, fetched and
    validated completely before returning.

    The Costs API returns one bucket per day of the window, empty ones included, so a closed
    day without one is a short answer: asked again up to COSTS_REASKS times, then a
    PayloadError, and its stored billed costs are never replaced by nothing. Today (or a later
    day, by `now`) without a bucket is left out: nothing to write yet.
    """
    now = now or dt.datetime.now(dt.UTC)
    failures = 0
    groupings = COSTS_GROUPINGS
    while True:
        days = _fetch_with_finest_grouping(client, first_day, end_day, groupings)
        # Asked again, a short answer starts from the grouping that was accepted.
        groupings = groupings[groupings.index(days[0].group_by) :] if days else groupings
        missing = [
            day.day
            for day in days
            if not day.seen and dt.datetime.combine(day.day + ONE_DAY, dt.time(), dt.UTC) <= now
        ]
        if not missing:
            return [day for day in days if day.seen]
        problem = f"costs: no bucket for closed day(s) {', '.join(map(str, missing))}"
        failures += 1
        if failures > COSTS_REASKS:
            raise PayloadError(f"{problem}; their stored billed costs are kept")
        client.log.warning(
            f"{problem}; asking again (attempt {failures + 1} of {COSTS_REASKS + 1})."
        )


def is_group_by_rejection(exc: AdminAPIError) -> bool:
    """A 400 about the grouping (OpenAI names `param: group_by`, or the message says so); any
    other 400 (a bad date, a bad limit) is not cured by a coarser grouping."""
    return exc.status == 400 and "group_by" in str(exc)


def _fetch_with_finest_grouping(
    client: AdminAPIClient,
    first_day: dt.date,
    end_day: dt.date,
    groupings: tuple[tuple[str, ...], ...],
) -> list[CostDay]:
    """The days fetched with the first grouping of `groupings` the API accepts; each refusal
    is a warning, all of them an AdminAPIError naming every grouping tried."""
    refusals = []
    for group_by, coarser in zip(groupings, (*groupings[1:], None), strict=True):
        try:
            return _fetch_cost_buckets(client, first_day, end_day, group_by)
        except AdminAPIError as exc:
            if not is_group_by_rejection(exc):
                raise
            refusals.append(f"{list(group_by)}: {exc}")
            if coarser is not None:
                client.log.warning(
                    f"costs: the API refused group_by={list(group_by)} ({exc}); asking with "
                    f"the coarser group_by={list(coarser)} instead, recorded in "
                    f"{COSTS_TABLE}.group_by."
                )
    raise AdminAPIError(
        "costs: the API refused every grouping of billed costs, even by project and line item "
        f"({'; '.join(refusals)}). Nothing was written; the stored billed costs are kept.",
        status=400,
    )


def _fetch_cost_buckets(
    client: AdminAPIClient, first_day: dt.date, end_day: dt.date, group_by: tuple[str, ...]
) -> list[CostDay]:
    days = {
        first_day + dt.timedelta(days=n): CostDay(first_day + dt.timedelta(days=n), group_by)
        for n in range((end_day - first_day).days)
    }
    for bucket in iter_costs(client, costs_query_for_days(first_day, end_day, group_by)):
        day = days.get(bucket.day)
        if day is None:  # pragma: no cover - CostBucket.parse checks the window already
            raise PayloadError(f"costs bucket {bucket.day} is outside {first_day}..{end_day}")
        day.add(bucket)
    return list(days.values())


def replace_cost_day(engine: Engine, day: CostDay) -> int:
    """Replace the day's billed costs in one transaction, under the day's advisory lock."""
    table = CostDaily.__table__
    assert isinstance(table, Table)
    what = f"billed costs of {day.day} ({COSTS_TABLE})"
    with partition_transaction(engine, table, day.day.isoformat(), what) as conn:
        return replace_partition(
            conn,
            table,
            [CostDaily.usage_date == day.day],
            COSTS_COPY_COLUMNS,
            day.rows,
            f"The Costs API listed one grouping key twice on {day.day}.",
        )


def _project_names(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return {pid: name for pid, name in conn.execute(select(Project.id, Project.name))}


def costs_metadata(
    days: list[CostDay], names: dict[str, str | None]
) -> dict[str, dg.MetadataValue]:
    """What a FinOps user wants to see for the billed days just landed."""
    by_project: dict[str | None, Decimal] = {}
    for day in days:
        for project, amount in day.by_project.items():
            by_project[project] = by_project.get(project, Decimal(0)) + amount
    billed = sum((day.billed_usd for day in days), Decimal(0))
    top = sorted(by_project.items(), key=lambda item: item[1], reverse=True)[:10]
    table = [
        (
            (names.get(project) or project) if project else "(default project)",
            project or "",
            f"${amount:,.2f}",
        )
        for project, amount in top
    ]
    return {
        "dagster/row_count": dg.MetadataValue.int(sum(len(day.rows) for day in days)),
        "dagster/table_name": dg.MetadataValue.text(COSTS_TABLE),
        "usage_dates": dg.MetadataValue.text(
            days[0].day.isoformat()
            if len(days) == 1
            else f"{days[0].day.isoformat()} .. {days[-1].day.isoformat()}"
        ),
        "billed_usd": dg.MetadataValue.float(float(billed)),
        "billed_usd_exact": dg.MetadataValue.text(str(billed)),
        "projects": dg.MetadataValue.int(len(by_project)),
        "group_by": dg.MetadataValue.text(
            ", ".join(sorted({",".join(day.group_by) for day in days}))
        ),
        "top_projects_by_billed_usd": dg.MetadataValue.md(
            md_table(["project", "project_id", "billed"], table, right=[2])
            if table
            else "_nothing billed_"
        ),
    }


@admin_api_asset(
    CostDaily,
    "GET /v1/organization/costs (bucket_width=1d, group_by project_id, line_item, api_key_id, "
    "user_id, api_source, or the finest coarser grouping the organization accepts)",
    name="costs_daily",
    partitions_def=daily_utc_partitions,
    backfill_policy=RANGE_BACKFILL,
    freshness_policy=DAILY_FRESHNESS,
    description=(
        "What OpenAI bills, in USD, per UTC day, project and line item (a model and a token "
        "kind, e.g. 'gpt-4o-2024-08-06, cached input'), split by API key, user and API source "
        "where the organization allows that grouping (the grouping used is in `group_by`), "
        "with the billed quantity and its unit, exactly as the Admin Costs API reports it. "
        "Amounts are exact decimals. Use it to reconcile estimated costs with the invoice; "
        "billing can lag usage by a day or more, so re-run recent days. Each partition replaces "
        "its day in one transaction, so re-running is safe."
    ),
)
def costs_daily(
    context: dg.AssetExecutionContext,
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first_day, end_day = window_days(context)
    single_day = end_day - first_day == dt.timedelta(days=1)
    with permanent_errors_fail_fast():
        engine = usage_db.engine()  # schema checked before anything is fetched
        with openai_admin.connect(context.log) as api:
            days = fetch_cost_days(api.client, first_day, end_day)
            source = api.metadata(include_request_count=single_day)
    names = _project_names(engine)
    reports = []
    with permanent_errors_fail_fast():
        for day in days:
            replace_cost_day(engine, day)
            reports.append((day.day, source | costs_metadata([day], names)))
    # One line per run: each day's figures are in its own materialization.
    context.log.info(
        f"{first_day}..{end_day - dt.timedelta(days=1)}: wrote "
        f"{sum(len(day.rows) for day in days):,} billed line items, "
        f"${sum(day.billed_usd for day in days):,.2f}"
    )
    if api.simulated:
        context.log.warning("Materialized SIMULATED costs; set OPENAI_ADMIN_KEY for real data.")
    return report_days(context, reports)


# --------------------------------------------------------------------------- names


def _text(item: dict[str, Any], name: str, where: str, *, required: bool = False) -> str | None:
    """A string field that identifies something (an id): a NUL in it is refused."""
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise PayloadError(f"{where}: {name}={value!r} is not a {'non-empty ' * required}string")
    if "\x00" in value:
        raise PayloadError(
            f"{where}: {name}={value!r} contains a NUL character, which PostgreSQL text cannot "
            "store"
        )
    return value


#: What a NUL character in a name, email, role or status is stored as (the Unicode
#: replacement character, visible in a dashboard).
NAME_NUL_REPLACEMENT = "\ufffd"


def _label(item: dict[str, Any], name: str, where: str) -> str | None:
    """A string field people read (a name, an email): a NUL in it becomes U+FFFD, so that one
    odd name does not refuse the whole refresh."""
    value = item.get(name)
    if isinstance(value, str):
        return value.replace("\x00", NAME_NUL_REPLACEMENT)
    return _text(item, name, where)


def _timestamp(item: dict[str, Any], name: str, where: str) -> dt.datetime | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{where}: {name}={value!r} is not Unix seconds")
    return dt.datetime.fromtimestamp(value, dt.UTC)


def _unique(rows: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise PayloadError(f"{what} {row['id']!r} is listed twice")
        seen.add(row["id"])
    return rows


def project_rows(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for index, item in enumerate(items):
        where = f"project #{index}"
        rows.append(
            {
                "id": _text(item, "id", where, required=True),
                "name": _label(item, "name", where),
                "status": _label(item, "status", where),
                "created_at": _timestamp(item, "created_at", where),
                "archived_at": _timestamp(item, "archived_at", where),
            }
        )
    return _unique(rows, "project")


def user_rows(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for index, item in enumerate(items):
        where = f"user #{index}"
        rows.append(
            {
                "id": _text(item, "id", where, required=True),
                "name": _label(item, "name", where),
                "email": _label(item, "email", where),
                "role": _label(item, "role", where),
            }
        )
    return _unique(rows, "user")


def api_key_rows(project_id: str, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Id, project, name and redacted value: nothing else of a key (owner, dates) is kept."""
    rows = []
    for index, item in enumerate(items):
        where = f"API key #{index} of project {project_id}"
        rows.append(
            {
                "id": _text(item, "id", where, required=True),
                "project_id": project_id,
                "name": _label(item, "name", where),
                "redacted_value": _label(item, "redacted_value", where),
            }
        )
    return rows


def fetch_projects(client: AdminAPIClient) -> list[dict[str, Any]]:
    """Every project, archived ones included (their keys and past costs still need names)."""
    params = [("limit", str(LIST_PAGE_SIZE)), ("include_archived", "true")]
    return project_rows(client.iter_list(PROJECTS_PATH, params))


def fetch_users(client: AdminAPIClient) -> list[dict[str, Any]]:
    return user_rows(client.iter_list(USERS_PATH, [("limit", str(LIST_PAGE_SIZE))]))


def fetch_api_keys(client: AdminAPIClient, project_ids: Iterable[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for project_id in project_ids:
        path = f"{PROJECTS_PATH}/{quote(project_id, safe='')}/api_keys"
        items = client.iter_list(path, [("limit", str(LIST_PAGE_SIZE))])
        rows.extend(api_key_rows(project_id, items))
    return _unique(rows, "API key")


def replace_table(engine: Engine, model: type[Base], rows: list[dict[str, Any]]) -> int:
    """Replace a whole names table in one transaction (readers see the old rows until commit)."""
    table = model.__table__
    assert isinstance(table, Table)
    with partition_transaction(engine, table, "", f"the names table {table.fullname}") as conn:
        conn.execute(delete(model))
        if rows:
            conn.execute(insert(model), rows)  # one executemany, not row-by-row ORM adds
    return len(rows)


def _names_metadata(table: str, rows: int) -> dict[str, dg.MetadataValue]:
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/table_name": dg.MetadataValue.text(table),
    }


@admin_api_asset(
    Project,
    "GET /v1/organization/projects?include_archived=true",
    name="openai_projects",
    freshness_policy=NAMES_FRESHNESS,
    description=(
        "Every project of the OpenAI organization (archived ones included) with its name and "
        "status, so that dashboards show project names instead of ids. Each run replaces the "
        "whole table."
    ),
)
def openai_projects(
    context: dg.AssetExecutionContext,
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
        with openai_admin.connect(context.log) as api:
            rows = fetch_projects(api.client)
            metadata = api.metadata(include_request_count=True)
        replace_table(engine, Project, rows)
    archived = sum(1 for row in rows if row["status"] == "archived")
    context.log.info(f"wrote {len(rows)} projects ({archived} archived)")
    metadata.update(_names_metadata(PROJECTS_TABLE, len(rows)))
    metadata["archived_projects"] = dg.MetadataValue.int(archived)
    return dg.MaterializeResult(metadata=metadata)


@admin_api_asset(
    User,
    "GET /v1/organization/users",
    name="openai_users",
    freshness_policy=NAMES_FRESHNESS,
    description=(
        "The OpenAI organization's users (name, email, role), so that usage per user shows "
        "who it was. Each run replaces the whole table."
    ),
)
def openai_users(
    context: dg.AssetExecutionContext,
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
        with openai_admin.connect(context.log) as api:
            rows = fetch_users(api.client)
            metadata = api.metadata(include_request_count=True)
        replace_table(engine, User, rows)
    context.log.info(f"wrote {len(rows)} users")
    metadata.update(_names_metadata(USERS_TABLE, len(rows)))
    return dg.MaterializeResult(metadata=metadata)


@admin_api_asset(
    ApiKey,
    "GET /v1/organization/projects/{project_id}/api_keys",
    name="openai_api_keys",
    freshness_policy=NAMES_FRESHNESS,
    deps=[openai_projects],
    description=(
        "The project API keys of every project (archived ones included): id, project, name "
        "and the redacted value (sk-…abcd) only, never the owner or anything secret. Lets "
        "dashboards show which key spent what. Each run replaces the whole table."
    ),
)
def openai_api_keys(
    context: dg.AssetExecutionContext,
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    with permanent_errors_fail_fast():
        engine = usage_db.engine()
        with openai_admin.connect(context.log) as api:
            # The project list is fetched again, not read from `projects`: keys of every
            # project that exists now, even when that table is stale.
            projects = fetch_projects(api.client)
            rows = fetch_api_keys(api.client, [project["id"] for project in projects])
            metadata = api.metadata(include_request_count=True)
        replace_table(engine, ApiKey, rows)
    context.log.info(f"wrote {len(rows)} API keys of {len(projects)} projects")
    metadata.update(_names_metadata(API_KEYS_TABLE, len(rows)))
    metadata["projects"] = dg.MetadataValue.int(len(projects))
    return dg.MaterializeResult(metadata=metadata)


#: Every asset of this module, for `definitions.py`.
ORGANIZATION_ASSETS: list[dg.AssetsDefinition] = [
    costs_daily,
    openai_projects,
    openai_users,
    openai_api_keys,
]
