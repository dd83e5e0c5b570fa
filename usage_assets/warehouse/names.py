"""Names of the ids in usage and bills, from the names tables (`projects`, ...), for metadata."""

from __future__ import annotations

from sqlalchemy import Engine, select

from usage_assets.warehouse.models import DEFAULT_ORGANIZATION, Project


def project_names(
    engine: Engine, organization: str = DEFAULT_ORGANIZATION
) -> dict[str, str | None]:
    """Each project id of `organization` and its name (None: the project has none), as the last
    run of `openai_projects` stored them; empty before it ran."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Project.id, Project.name).where(Project.organization == organization)
        )
        return {pid: name for pid, name in rows}
