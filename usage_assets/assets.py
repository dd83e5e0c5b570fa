"""The raw usage asset: one UTC day of completions usage per partition."""

import datetime as dt
from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import Field

from usage_assets import policies
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
    }


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
        "Token counts only: cost attribution is computed downstream."
    ),
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
    with permanent_errors_fail_fast():
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
            context.log.info(f"{api.client.request_count} Admin API requests for this run")
    if info.simulated:
        context.log.warning("Materialized SIMULATED usage; set OPENAI_ADMIN_KEY for real data.")
    return report_days(context, reports)
