"""The names assets: projects, users and project API keys, each table replaced whole."""

import dagster as dg

from usage_assets.defs.names.ingest import (
    API_KEYS_TABLE,
    PROJECTS_TABLE,
    USERS_TABLE,
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
    with permanent_errors_fail_fast(context):
        engine = usage_db.engine()
        with openai_admin.connect(context.log) as api:
            rows = fetch_projects(api.client)
            metadata = api.metadata(include_request_count=True)
        replace_table(engine, Project, rows, usage_db.organization)
    archived = sum(1 for row in rows if row["status"] == "archived")
    context.log.info(f"wrote {len(rows)} projects ({archived} archived)")
    metadata.update(names_metadata(PROJECTS_TABLE, len(rows)))
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
    with permanent_errors_fail_fast(context):
        engine = usage_db.engine()
        with openai_admin.connect(context.log) as api:
            rows = fetch_users(api.client)
            metadata = api.metadata(include_request_count=True)
        replace_table(engine, User, rows, usage_db.organization)
    context.log.info(f"wrote {len(rows)} users")
    metadata.update(names_metadata(USERS_TABLE, len(rows)))
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
    with permanent_errors_fail_fast(context):
        engine = usage_db.engine()
        with openai_admin.connect(context.log) as api:
            # The project list is fetched again, not read from `projects`: keys of every
            # project that exists now, even when that table is stale.
            projects = fetch_projects(api.client)
            rows = fetch_api_keys(api.client, [project["id"] for project in projects])
            metadata = api.metadata(include_request_count=True)
        replace_table(engine, ApiKey, rows, usage_db.organization)
    context.log.info(f"wrote {len(rows)} API keys of {len(projects)} projects")
    metadata.update(names_metadata(API_KEYS_TABLE, len(rows)))
    metadata["projects"] = dg.MetadataValue.int(len(projects))
    return dg.MaterializeResult(metadata=metadata)


#: Every asset of this module, for `definitions.py`.

#: The names assets, for `definitions.py`.
NAMES_ASSETS: list[dg.AssetsDefinition] = [openai_projects, openai_users, openai_api_keys]
