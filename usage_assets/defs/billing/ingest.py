"""Billed costs: `GET /v1/organization/costs`, what OpenAI actually bills, per UTC day, project,
line item, API key, user and API source (or the finest coarser grouping the organization
accepts, see COSTS_GROUPINGS), validated completely before the day is replaced in one
transaction and kept exact in `numeric` (never float). A NUL character fails the day when it is
in an id, a project id or a line item; in the `result` JSON it is kept as the text `\\u0000`, as
in the usage tables.
"""

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy import Engine, Table

from usage_assets.admin_api.costs import COSTS_BUCKET_LIMITS, CostBucket, CostsQuery, iter_costs
from usage_assets.admin_api.rows import NUL_REPLACEMENT
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.defs.usage.ingest import epoch_seconds
from usage_assets.errors import AdminAPIError, PayloadError
from usage_assets.markdown import md_table
from usage_assets.warehouse.models import DEFAULT_ORGANIZATION, SCHEMA, CostDaily
from usage_assets.warehouse.replace import partition_transaction, replace_partition

COSTS_TABLE = f"{SCHEMA}.{CostDaily.__tablename__}"
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


def replace_cost_day(engine: Engine, day: CostDay, organization: str = DEFAULT_ORGANIZATION) -> int:
    """Replace `organization`'s billed costs of the day in one transaction, under the day's
    advisory lock (the other organizations' rows of the day are left alone)."""
    table = CostDaily.__table__
    assert isinstance(table, Table)
    what = f"billed costs of {day.day} ({COSTS_TABLE})"
    with partition_transaction(engine, table, f"{organization}/{day.day}", what) as conn:
        return replace_partition(
            conn,
            table,
            [CostDaily.organization == organization, CostDaily.usage_date == day.day],
            ("organization", *COSTS_COPY_COLUMNS),
            ((organization, *row) for row in day.rows),
            f"The Costs API listed one grouping key twice on {day.day}.",
        )


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
