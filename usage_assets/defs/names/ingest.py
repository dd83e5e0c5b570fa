"""The organization's names: the Admin API's list endpoints (projects, users, project API keys),
validated completely before each table is replaced in one transaction, so BI shows names instead
of ids. Of a key only its id, project, name and redacted value are stored. A NUL character fails
the run in an id; in a name, email, role or status it is stored as U+FFFD (one odd name is not
worth refusing the organization's names).
"""

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import dagster as dg

from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.errors import PayloadError
from usage_assets.warehouse.models import SCHEMA, ApiKey, Project, User

PROJECTS_TABLE = f"{SCHEMA}.{Project.__tablename__}"
USERS_TABLE = f"{SCHEMA}.{User.__tablename__}"
API_KEYS_TABLE = f"{SCHEMA}.{ApiKey.__tablename__}"
#: Objects per page of the list endpoints (their maximum).
LIST_PAGE_SIZE = 100
PROJECTS_PATH = "/organization/projects"
USERS_PATH = "/organization/users"

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


def names_metadata(table: str, rows: int) -> dict[str, dg.MetadataValue]:
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/table_name": dg.MetadataValue.text(table),
    }
