"""The raw usage asset: one UTC day of completions usage per partition."""

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from usage_assets import policies, settings
from usage_assets.ingest import ingest_days
from usage_assets.markdown import md_table
from usage_assets.models import SCHEMA, Base, CompletionsUsageHourly
from usage_assets.normalize import DaySummary
from usage_assets.partitions import daily_utc_partitions
from usage_assets.policies import (
    API_STEP_RETRY,
    DAILY_FRESHNESS,
    RANGE_BACKFILL,
    permanent_errors_fail_fast,
    report_days,
    window_days,
)
from usage_assets.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.storage import LoadInfo
from usage_assets.table_schema import column_schema
from usage_assets.usage_query import GROUP_BY_FIELDS

USAGE_TABLE = f"{SCHEMA}.{CompletionsUsageHourly.__tablename__}"
ADMIN_API_POOL = "openai_admin_api"
OWNER = "team:finops"


class CompletionsUsageConfig(dg.Config):
    group_by: list[str] = Field(
        default=list(GROUP_BY_FIELDS),
        description="Dimensions to group usage by; default: every field the API accepts.",
    )


def admin_api_asset(
    table: type[Base], endpoint: str, **options: Any
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for an asset that copies an Admin API endpoint into a table of ours."""
    return policies.asset(
        retry_policy=API_STEP_RETRY,
        group_name="openai_usage",
        kinds={"openai", "postgres"},
        owners=[OWNER],
        pool=ADMIN_API_POOL,
        metadata={
            "dagster/table_name": f"{SCHEMA}.{table.__tablename__}",
            "dagster/column_schema": column_schema(table.__table__),
            "endpoint": endpoint,
        },
        **options,
    )


def day_metadata(day: DaySummary) -> dict[str, dg.MetadataValue]:
    """What a FinOps user wants to see for one landed day."""
    top = sorted(day.tokens_by_project.items(), key=lambda item: item[1], reverse=True)[:10]
    return {
        "dagster/row_count": dg.MetadataValue.int(day.row_count),
        "dagster/table_name": dg.MetadataValue.text(USAGE_TABLE),
        "usage_date": dg.MetadataValue.text(day.day.isoformat()),
        "hourly_buckets": dg.MetadataValue.int(day.bucket_count),
        "input_tokens": dg.MetadataValue.int(day.input_tokens),
        "output_tokens": dg.MetadataValue.int(day.output_tokens),
        "num_model_requests": dg.MetadataValue.int(day.num_model_requests),
        "projects": dg.MetadataValue.int(len(day.tokens_by_project)),
        "top_projects_by_tokens": dg.MetadataValue.md(
            md_table(
                ["project_id", "tokens"],
                [(project or "(default project)", f"{tokens:,}") for project, tokens in top],
                right=[1],
            )
            if top
            else "_no usage_"
        ),
        **revision_metadata(day),
    }


def revision_metadata(day: DaySummary) -> dict[str, dg.MetadataValue]:
    """How much the day changed after the fact: vs the load it replaced and vs its first."""
    revision = day.revision
    if revision is None:
        return {}
    metadata: dict[str, dg.MetadataValue] = {
        "revision": dg.MetadataValue.int(revision.revision),
        "day_closed": dg.MetadataValue.bool(revision.closed),
        "rows_vs_first_load": dg.MetadataValue.int(
            revision.new.row_count - revision.first.row_count
        ),
        "tokens_vs_first_load": dg.MetadataValue.int(revision.new.tokens - revision.first.tokens),
    }
    if revision.previous is not None:
        metadata["rows_vs_previous_load"] = dg.MetadataValue.int(
            revision.new.row_count - revision.previous.row_count
        )
        metadata["tokens_vs_previous_load"] = dg.MetadataValue.int(
            revision.new.tokens - revision.previous.tokens
        )
    return metadata


RELOAD_CHECK = "reloads_do_not_lose_usage"


def reload_check(days: Sequence[DaySummary], tolerance: float) -> dg.AssetCheckResult:
    """Late usage only adds: a reload of a closed day whose tokens (input + output) fall by
    more than `tolerance` of the load it replaced fails, naming each day's before and after."""
    compared = 0
    losses: list[dict[str, Any]] = []
    for day in days:
        revision = day.revision
        if revision is None or revision.previous is None or not revision.closed:
            continue
        compared += 1
        before, after = revision.previous, revision.new
        if before.tokens - after.tokens > tolerance * before.tokens:
            losses.append(
                {
                    "usage_date": day.day.isoformat(),
                    "revision": revision.revision,
                    "tokens_before": before.tokens,
                    "tokens_after": after.tokens,
                    "tokens_change": after.tokens - before.tokens,
                    "tokens_change_pct": round(
                        100 * (after.tokens - before.tokens) / before.tokens, 4
                    ),
                    "rows_before": before.row_count,
                    "rows_after": after.row_count,
                }
            )
    return dg.AssetCheckResult(
        check_name=RELOAD_CHECK,
        passed=not losses,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "tolerance": dg.MetadataValue.float(tolerance),
            "days_in_run": dg.MetadataValue.int(len(days)),
            "closed_days_reloaded": dg.MetadataValue.int(compared),
            "days_losing_usage": dg.MetadataValue.int(len(losses)),
            "losses": dg.MetadataValue.json(losses),
            "losses_table": dg.MetadataValue.md(
                md_table(
                    ["day", "tokens before", "tokens after", "change", "rows before", "rows after"],
                    [
                        (
                            loss["usage_date"],
                            f"{loss['tokens_before']:,}",
                            f"{loss['tokens_after']:,}",
                            f"{loss['tokens_change_pct']}%",
                            f"{loss['rows_before']:,}",
                            f"{loss['rows_after']:,}",
                        )
                        for loss in losses
                    ],
                    right=range(1, 6),
                )
                if losses
                else "_no reloaded closed day lost usage_"
            ),
        },
    )


@admin_api_asset(
    CompletionsUsageHourly,
    "GET /v1/organization/usage/completions (bucket_width=1h)",
    name="completions_usage_hourly",
    partitions_def=daily_utc_partitions,
    backfill_policy=RANGE_BACKFILL,
    freshness_policy=DAILY_FRESHNESS,
    description=(
        "Hourly OpenAI token usage for one UTC day, per project, user, API key, model, batch "
        "flag, service tier and API source, exactly as the Admin Usage API reports it. Each "
        "partition replaces that day's rows in one transaction, so re-running a day is safe. "
        "Token counts only: cost attribution is computed downstream. Complete days only: a "
        "closed day must come with all 24 hourly buckets, or the day is refused and its "
        "previous rows stay."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            RELOAD_CHECK,
            asset="completions_usage_hourly",
            description=(
                "Late usage only adds: no closed day of the run, reloaded, has fewer tokens "
                "(input + output) than the load it replaced, beyond USAGE_REVISION_TOLERANCE. "
                "Before and after figures per day in the metadata; the history is in "
                "openai_usage.usage_day_revisions."
            ),
        )
    ],
)
def completions_usage_hourly(
    context: dg.AssetExecutionContext,
    config: CompletionsUsageConfig,
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """Each day is written in its own transaction as soon as its buckets are in (a backfill
    range fetches 168 hours per request), and reported with that day's own figures."""
    first_day, end_day = window_days(context)
    single_day = end_day - first_day == dt.timedelta(days=1)
    reports: list[tuple[dt.date, dict[str, Any]]] = []
    days: list[DaySummary] = []
    with permanent_errors_fail_fast():
        tolerance = settings.revision_tolerance()
        engine = usage_db.engine()  # schema checked before anything is fetched
        with openai_admin.connect(context.log) as api:
            info = LoadInfo(
                group_by=config.group_by,
                simulated=api.simulated,
                source_url=api.source_url,
                dagster_run_id=context.run.run_id,
            )
            for day in ingest_days(api.client, engine, first_day, end_day, config.group_by, info):
                context.log.info(
                    f"{day.day}: wrote {day.row_count:,} rows from {day.bucket_count} hourly "
                    "buckets"
                )
                metadata = day_metadata(day) | api.metadata(include_request_count=single_day)
                metadata["group_by"] = dg.MetadataValue.text(", ".join(config.group_by))
                reports.append((day.day, metadata))
                days.append(day)
            context.log.info(f"{api.client.request_count} Admin API requests for this run")
    if info.simulated:
        context.log.warning("Materialized SIMULATED usage; set OPENAI_ADMIN_KEY for real data.")
    return report_days(context, reports, [reload_check(days, tolerance)])
