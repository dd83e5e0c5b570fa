"""The simulated organization's directory: projects, users and project API keys.

`GET /v1/organization/projects`, `GET /v1/organization/users` and
`GET /v1/organization/projects/{project_id}/api_keys`, as list endpoints that page with
`after=<last id>` while `has_more`, with the real API's limits (default 20, at most 100).
"""

from __future__ import annotations

import re
from typing import Any

from usage_assets.simulator.contract import (
    API_KEYS_PATH,
    API_PREFIX,
    LIST_LIMITS,
    PROJECTS_PATH,
    USERS_PATH,
)
from usage_assets.simulator.http_params import ApiError, Query, limit_param
from usage_assets.simulator.organization import ApiKey, Project, SyntheticOrganization, User

__all__ = ["API_KEYS_PATH", "LIST_LIMITS", "PROJECTS_PATH", "USERS_PATH", "route"]
_API_KEYS = re.compile(re.escape(API_PREFIX) + r"/organization/projects/([^/]+)/api_keys")


def route(org: SyntheticOrganization, path: str, query: Query) -> dict[str, Any] | None:
    """The answer of a directory endpoint, or None if `path` is not one."""
    if path == API_PREFIX + PROJECTS_PATH:
        return list_projects(org, query)
    if path == API_PREFIX + USERS_PATH:
        return _page([_user(u) for u in org.users], query)
    match = _API_KEYS.fullmatch(path)
    if match:
        return list_api_keys(org, match.group(1), query)
    return None


def _page(objects: list[dict[str, Any]], query: Query) -> dict[str, Any]:
    limit = limit_param(query, LIST_LIMITS)
    first = 0
    after = query.get("after", [""])[-1]
    if after:
        ids = [o["id"] for o in objects]
        if after not in ids:
            raise ApiError(400, f"Invalid 'after': no object with id '{after}'.", param="after")
        first = ids.index(after) + 1
    data = objects[first : first + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": first + limit < len(objects),
    }


def _bool_param(query: Query, name: str) -> bool:
    values = query.get(name)
    if not values:
        return False
    if values[-1] not in ("true", "false"):
        raise ApiError(400, f"Invalid value for '{name}': expected a boolean.", param=name)
    return values[-1] == "true"


def list_projects(org: SyntheticOrganization, query: Query) -> dict[str, Any]:
    include_archived = _bool_param(query, "include_archived")
    projects = [p for p in org.projects if include_archived or p.status != "archived"]
    return _page([_project(p) for p in projects], query)


def list_api_keys(org: SyntheticOrganization, project_id: str, query: Query) -> dict[str, Any]:
    if not any(p.id == project_id for p in org.projects):
        raise ApiError(404, f"No such project: '{project_id}'.", code="not_found")
    users = {u.id: u for u in org.users}
    keys = [_api_key(k, users) for k in org.api_keys if k.project_id == project_id]
    return _page(keys, query)


def _project(project: Project) -> dict[str, Any]:
    return {
        "object": "organization.project",
        "id": project.id,
        "name": project.name,
        "created_at": project.created_at,
        "archived_at": project.archived_at,
        "status": project.status,
    }


def _user(user: User) -> dict[str, Any]:
    return {
        "object": "organization.user",
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "role": user.role,
        "added_at": user.added_at,
    }


def _api_key(key: ApiKey, users: dict[str, User]) -> dict[str, Any]:
    owner: dict[str, Any]
    if key.owner_user_id is not None:
        owner = {"type": "user", "user": _user(users[key.owner_user_id])}
    else:
        owner = {
            "type": "service_account",
            "service_account": {
                "object": "organization.project.service_account",
                "id": f"svc_acct_{key.id.removeprefix('key_')}",
                "name": f"{key.name} account",
                "role": "member",
                "created_at": key.created_at,
            },
        }
    return {
        "object": "organization.project.api_key",
        "id": key.id,
        "name": key.name,
        "redacted_value": key.redacted_value,
        "created_at": key.created_at,
        "last_used_at": key.created_at + 30 * 86400,
        "owner": owner,
    }
