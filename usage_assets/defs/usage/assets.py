"""The raw usage assets: one per Admin API usage endpoint, one UTC day per partition.

Every `<name>_usage_hourly` asset is made by `usage_asset` from its endpoint's description
(`endpoints.USAGE_ENDPOINTS`): the same config, policies, pool, checks and metadata for all.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field, create_model

from usage_assets import settings
from usage_assets.admin_api.endpoints import USAGE_ENDPOINTS, UsageEndpoint
from usage_assets.admin_api.rows import DaySummary
from usage_assets.defs.partitions import daily_utc_partitions
from usage_assets.defs.policies import (
    DAILY_FRESHNESS,
    RANGE_BACKFILL,
    admin_api_asset,
    permanent_errors_fail_fast,
    report_days,
    window_days,
)
from usage_assets.defs.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.defs.usage.ingest import ingest_days
from usage_assets.markdown import md_table, named
from usage_assets.warehouse.names import project_names
from usage_assets.warehouse.usage_days import LoadInfo, usage_table


def usage_config(endpoint: UsageEndpoint) -> type[dg.Config]:
    """The run config of an endpoint's asset: `group_by`, defaulting to every field it accepts."""
    return create_model(
        f"{endpoint.name.title().replace('_', '')}UsageConfig",
        __base__=dg.Config,
        group_by=(
            list[str],
            Field(
                default=list(endpoint.group_by_fields),
                description="Dimensions to group usage by; default: every field the API "
                f"accepts ({', '.join(endpoint.group_by_fields)}).",
            ),
        ),
    )


GIB = 2**30


def day_metadata(
    day: DaySummary, project_names: Mapping[str, str | None] | None = None
) -> dict[str, dg.MetadataValue]:
    """What a FinOps user wants to see for one landed day; the top projects by name, their id
    beside it (`project_names`: the organization's, from `projects`)."""
    names = project_names or {}
    endpoint = day.endpoint
    label = endpoint.volume_label
    top = sorted(day.volume_by_project.items(), key=lambda item: item[1], reverse=True)[:10]
    metadata: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(day.row_count),
        "dagster/table_name": dg.MetadataValue.text(usage_table(endpoint).fullname),
        "usage_date": dg.MetadataValue.text(day.day.isoformat()),
        "organization": dg.MetadataValue.text(day.organization),
        "hourly_buckets": dg.MetadataValue.int(day.bucket_count),
    }
    gauges = {m.name for m in endpoint.metrics if m.gauge}
    for name, total in day.totals.items():
        if name in gauges:  # a size per hour: its day is a mean, in GiB-days
            metadata[f"{name}_gib_days"] = dg.MetadataValue.float(round(total / 24 / GIB, 6))
        else:
            metadata[name] = dg.MetadataValue.int(total)
    metadata["projects"] = dg.MetadataValue.int(len(day.volume_by_project))
    metadata[f"top_projects_by_{label}"] = dg.MetadataValue.md(
        md_table(
            ["project", label],
            [
                (named(project, names.get(project) if project else None), f"{volume:,}")
                for project, volume in top
            ],
            right=[1],
        )
        if top
        else "_no usage_"
    )
    return metadata | revision_metadata(day)


def revision_metadata(day: DaySummary) -> dict[str, dg.MetadataValue]:
    """How much the day changed after the fact: vs the load it replaced and vs its first."""
    revision = day.revision
    if revision is None:
        return {}
    label = day.endpoint.volume_label
    metadata: dict[str, dg.MetadataValue] = {
        "revision": dg.MetadataValue.int(revision.revision),
        "day_closed": dg.MetadataValue.bool(revision.closed),
        "rows_vs_first_load": dg.MetadataValue.int(
            revision.new.row_count - revision.first.row_count
        ),
        f"{label}_vs_first_load": dg.MetadataValue.int(revision.new.volume - revision.first.volume),
    }
    if revision.previous is not None:
        metadata["rows_vs_previous_load"] = dg.MetadataValue.int(
            revision.new.row_count - revision.previous.row_count
        )
        metadata[f"{label}_vs_previous_load"] = dg.MetadataValue.int(
            revision.new.volume - revision.previous.volume
        )
    return metadata


RELOAD_CHECK = "reloads_do_not_lose_usage"


def reload_check(
    days: Sequence[DaySummary], tolerance: float, endpoint: UsageEndpoint | None = None
) -> dg.AssetCheckResult:
    """Late usage only adds: a reload of a closed day whose volume (completions: input +
    output tokens) falls by more than `tolerance` of the load it replaced fails, naming each
    day's before and after."""
    label = (endpoint or (days[0].endpoint if days else USAGE_ENDPOINTS[0])).volume_label
    compared = 0
    losses: list[dict[str, Any]] = []
    for day in days:
        revision = day.revision
        if revision is None or revision.previous is None or not revision.closed:
            continue
        compared += 1
        before, after = revision.previous.volume, revision.new.volume
        if before - after > tolerance * before:
            losses.append(
                {
                    "usage_date": day.day.isoformat(),
                    "revision": revision.revision,
                    f"{label}_before": before,
                    f"{label}_after": after,
                    f"{label}_change": after - before,
                    f"{label}_change_pct": round(100 * (after - before) / before, 4),
                    "rows_before": revision.previous.row_count,
                    "rows_after": revision.new.row_count,
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
                    [
                        "day",
                        f"{label} before",
                        f"{label} after",
                        "change",
                        "rows before",
                        "rows after",
                    ],
                    [
                        (
                            loss["usage_date"],
                            f"{loss[f'{label}_before']:,}",
                            f"{loss[f'{label}_after']:,}",
                            f"{loss[f'{label}_change_pct']}%",
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


def _description(endpoint: UsageEndpoint) -> str:
    gauges = [m.name for m in endpoint.metrics if m.gauge]
    gauge = (
        f" {', '.join(gauges)} is a size per hour, never summed over hours; "
        "v_vector_store_storage_daily gives GiB-days."
        if gauges
        else ""
    )
    return (
        f"{endpoint.summary}, exactly as the Admin Usage API reports it "
        f"(GET /v1/organization/usage/{endpoint.name}, 1h buckets, full group_by). Each "
        "partition replaces that day's rows in one transaction, so re-running a day is safe. "
        "Usage only: cost attribution is computed downstream. Complete days only: a closed "
        "day must come with all 24 hourly buckets, or the day is refused and its previous "
        f"rows stay.{gauge}"
    )


def usage_asset(endpoint: UsageEndpoint) -> dg.AssetsDefinition:
    """The `<name>_usage_hourly` asset of `endpoint`: one UTC day per partition, range
    backfills in one run per 31 days, the Admin API pool, freshness and the reload check."""
    config_class = usage_config(endpoint)

    @admin_api_asset(
        usage_table(endpoint),
        f"GET /v1/organization/usage/{endpoint.name} (bucket_width=1h)",
        name=endpoint.asset_name,
        partitions_def=daily_utc_partitions,
        backfill_policy=RANGE_BACKFILL,
        freshness_policy=DAILY_FRESHNESS,
        description=_description(endpoint),
        check_specs=[
            dg.AssetCheckSpec(
                RELOAD_CHECK,
                asset=endpoint.asset_name,
                description=(
                    f"Late usage only adds: no closed day of the run, reloaded, has less "
                    f"{endpoint.volume_label} ({' + '.join(endpoint.volume_metrics)}) than the "
                    "load it replaced, beyond USAGE_REVISION_TOLERANCE. Before and after "
                    "figures per day in the metadata; the history is in "
                    "openai_usage.usage_day_revisions."
                ),
            )
        ],
    )
    def materialize(
        context: dg.AssetExecutionContext,
        config: config_class,  # type: ignore[valid-type]
        openai_admin: OpenAIAdminResource,
        usage_db: UsageDatabase,
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        """Each day is written in its own transaction as soon as its buckets are in (a backfill
        range fetches 168 hours per request), and reported with that day's own figures."""
        return _materialize(context, endpoint, config.group_by, openai_admin, usage_db)  # type: ignore[attr-defined]

    return materialize


def _materialize(
    context: dg.AssetExecutionContext,
    endpoint: UsageEndpoint,
    group_by: list[str],
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    first_day, end_day = window_days(context)
    single_day = end_day - first_day == dt.timedelta(days=1)
    reports: list[tuple[dt.date, dict[str, Any]]] = []
    days: list[DaySummary] = []
    with permanent_errors_fail_fast(context):
        tolerance = settings.revision_tolerance()
        engine = usage_db.engine()  # schema checked before anything is fetched
        with openai_admin.connect(context.log) as api:
            info = LoadInfo(
                group_by=group_by,
                simulated=api.simulated,
                source_url=api.source_url,
                dagster_run_id=context.run.run_id,
                organization=usage_db.organization,
            )
            loaded = ingest_days(
                api.client, engine, first_day, end_day, group_by, info, endpoint=endpoint
            )
            names = project_names(engine, usage_db.organization)
            for day in loaded:
                context.log.info(
                    f"{day.day}: wrote {day.row_count:,} {endpoint.name} rows from "
                    f"{day.bucket_count} hourly buckets"
                )
                metadata = day_metadata(day, names) | api.metadata(include_request_count=single_day)
                metadata["group_by"] = dg.MetadataValue.text(", ".join(group_by))
                reports.append((day.day, metadata))
                days.append(day)
            context.log.info(f"{api.client.request_count} Admin API requests for this run")
    if info.simulated:
        context.log.warning("Materialized SIMULATED usage; set OPENAI_ADMIN_KEY for real data.")
    return report_days(context, reports, [reload_check(days, tolerance, endpoint)])


#: Every usage asset, in the order of `USAGE_ENDPOINTS` (completions first).
USAGE_ASSETS: list[dg.AssetsDefinition] = [usage_asset(e) for e in USAGE_ENDPOINTS]
completions_usage_hourly = USAGE_ASSETS[0]
