"""The names assets: projects, users and project API keys, each table replaced whole."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.defs.names.ingest import (
    fetch_api_keys,
    fetch_projects,
    fetch_users,
    names_metadata,
)
from usage_assets.defs.policies import (
    NAMES_FRESHNESS,
    admin_api_asset,
    permanent_errors_fail_fast,
)
from usage_assets.defs.resources import OpenAIAdminResource, UsageDatabase
from usage_assets.warehouse.models import ApiKey, Project, User
from usage_assets.warehouse.replace import replace_table

#: A new instance loads the names at once (not at the first daily run), so the first backfill's
#: metadata and every BI view already show project and key names; a failed load is not retried
#: every tick (the daily names job, or a click, runs it again).
LAND_WHEN_MISSING = (
    dg.AutomationCondition.missing()
    & ~dg.AutomationCondition.in_progress()
    & ~dg.AutomationCondition.execution_failed()
).with_label("load when missing")


def _land(
    context: dg.AssetExecutionContext,
    openai_admin: OpenAIAdminResource,
    usage_db: UsageDatabase,
    model: type[Any],
    fetch: Callable[[AdminAPIClient], list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fetch a names table completely, then replace this organization's rows of it in one
    transaction; returns the rows and the metadata every names asset reports."""
    with permanent_errors_fail_fast(context):
        engine = usage_db.engine()
        with openai_admin.connect(context.log) as api:
            rows = fetch(api.client)
            metadata: dict[str, Any] = api.metadata(include_request_count=True)
        replace_table(engine, model, rows, usage_db.organization)
    table = model.__table__
    metadata.update(names_metadata(table.fullname, len(rows)))
    metadata["organization"] = dg.MetadataValue.text(usage_db.organization)
    return rows, metadata


@admin_api_asset(
    Project,
    "GET /v1/organization/projects?include_archived=true",
    name="openai_projects",
    freshness_policy=NAMES_FRESHNESS,
    automation_condition=LAND_WHEN_MISSING,
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
    rows, metadata = _land(context, openai_admin, usage_db, Project, fetch_projects)
    archived = sum(1 for row in rows if row["status"] == "archived")
    context.log.info(f"wrote {len(rows)} projects ({archived} archived)")
    metadata["archived_projects"] = dg.MetadataValue.int(archived)
    return dg.MaterializeResult(metadata=metadata)


@admin_api_asset(
    User,
    "GET /v1/organization/users",
    name="openai_users",
    freshness_policy=NAMES_FRESHNESS,
    automation_condition=LAND_WHEN_MISSING,
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
    rows, metadata = _land(context, openai_admin, usage_db, User, fetch_users)
    context.log.info(f"wrote {len(rows)} users")
    return dg.MaterializeResult(metadata=metadata)


@admin_api_asset(
    ApiKey,
    "GET /v1/organization/projects/{project_id}/api_keys",
    name="openai_api_keys",
    freshness_policy=NAMES_FRESHNESS,
    automation_condition=LAND_WHEN_MISSING,
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
    projects: list[dict[str, Any]] = []

    def fetch(client: AdminAPIClient) -> list[dict[str, Any]]:
        # The project list is fetched again, not read from `projects`: keys of every project
        # that exists now, even when that table is stale.
        projects.extend(fetch_projects(client))
        return fetch_api_keys(client, [project["id"] for project in projects])

    rows, metadata = _land(context, openai_admin, usage_db, ApiKey, fetch)
    context.log.info(f"wrote {len(rows)} API keys of {len(projects)} projects")
    metadata["projects"] = dg.MetadataValue.int(len(projects))
    return dg.MaterializeResult(metadata=metadata)


#: The names assets, for `definitions.py`.
NAMES_ASSETS: list[dg.AssetsDefinition] = [openai_projects, openai_users, openai_api_keys]
