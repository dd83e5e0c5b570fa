"""The budget file (USAGE_BUDGETS): monthly amounts per project, API key or user, read and
validated whole, so that a typo fails the code location load with the file, the entry and the
field instead of a check that silently compares against nothing.

A budget's scope is a project id, an API key id and a user id, each optional (unset = any),
not all unset. Ids, not names: names change and repeat, ids are what the bill carries.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, text

from usage_assets.errors import ConfigurationError

#: Percent of the monthly amount at which a budget warns; reaching the last one fails.
DEFAULT_THRESHOLDS: tuple[Decimal, ...] = (Decimal(50), Decimal(80), Decimal(100))
#: YAML keys of a budget entry, and the scope column each fills.
YAML_SCOPE_KEYS = {"project": "project_id", "api_key": "api_key_id", "user": "user_id"}
YAML_KEYS = (*YAML_SCOPE_KEYS, "monthly_usd", "thresholds")
#: The CSV header (any order); `thresholds` like `50;80;100`, empty for the default.
CSV_COLUMNS = ("project_id", "api_key_id", "user_id", "monthly_usd", "thresholds")


@dataclass(frozen=True)
class BudgetEntry:
    """One budget of the file; `where` names its file and entry (or line) for messages."""

    project_id: str | None
    api_key_id: str | None
    user_id: str | None
    monthly_usd: Decimal
    thresholds: tuple[Decimal, ...]
    where: str

    @property
    def scope(self) -> tuple[str | None, str | None, str | None]:
        return (self.project_id, self.api_key_id, self.user_id)

    def describe(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in zip(("project", "api_key", "user"), self.scope, strict=True)
            if value is not None
        ]
        return ", ".join(parts)


def _id(value: Any, where: str, name: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: {name}={value!r} must be an id (text)")
    return value.strip()


def _number(value: Any, where: str, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ConfigurationError(f"{where}: {name}={value!r} is not a number")
    try:
        parsed = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigurationError(f"{where}: {name}={value!r} is not a number") from None
    if not parsed.is_finite():
        raise ConfigurationError(f"{where}: {name}={value!r} is not a number")
    return parsed


def _amount(value: Any, where: str) -> Decimal:
    if value is None or value == "":
        raise ConfigurationError(f"{where}: monthly_usd is required")
    amount = _number(value, where, "monthly_usd")
    if amount <= 0:
        # Zero would make every percentage a division by zero; "no spend at all" is a budget of
        # a cent.
        raise ConfigurationError(f"{where}: monthly_usd={value!r} must be a positive amount")
    return amount


def _thresholds(value: Any, where: str) -> tuple[Decimal, ...]:
    if value is None or value == "":
        return DEFAULT_THRESHOLDS
    items: Sequence[Any]
    if isinstance(value, str):
        items = value.split(";")
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    if not items:
        raise ConfigurationError(f"{where}: thresholds is empty; omit it for 50, 80, 100")
    parsed = tuple(_number(item, where, "thresholds") for item in items)
    if any(t <= 0 for t in parsed):
        raise ConfigurationError(
            f"{where}: thresholds={value!r} must be positive percentages (e.g. 50, 80, 100)"
        )
    if any(b <= a for a, b in pairwise(parsed)):
        raise ConfigurationError(f"{where}: thresholds={value!r} must be increasing")
    return parsed


def parse_budget(
    entry: Mapping[str, Any], where: str, scope_keys: Mapping[str, str]
) -> BudgetEntry:
    """One budget; `scope_keys` maps the file's scope keys to columns (YAML: `project`, CSV:
    `project_id`, ...)."""
    allowed = (*scope_keys, "monthly_usd", "thresholds")
    unknown = [key for key in entry if key not in allowed]
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {unknown}; allowed: {list(allowed)}")
    scope = {column: _id(entry.get(key), where, key) for key, column in scope_keys.items()}
    if all(value is None for value in scope.values()):
        raise ConfigurationError(
            f"{where}: the scope is empty; give at least one of {', '.join(scope_keys)}"
        )
    return BudgetEntry(
        project_id=scope["project_id"],
        api_key_id=scope["api_key_id"],
        user_id=scope["user_id"],
        monthly_usd=_amount(entry.get("monthly_usd"), where),
        thresholds=_thresholds(entry.get("thresholds"), where),
        where=where,
    )


def _yaml_entries(path: Path) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from None
    if document is None:
        return []
    if isinstance(document, dict):
        unknown = [key for key in document if key != "budgets"]
        if unknown:
            raise ConfigurationError(
                f"{path}: unknown top-level keys {unknown}; allowed: ['budgets']"
            )
        document = document.get("budgets") or []
    if not isinstance(document, list):
        raise ConfigurationError(f"{path}: expected 'budgets:' with a list of budget entries")
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for number, entry in enumerate(document, start=1):
        where = f"{path} budget #{number}"
        if not isinstance(entry, dict):
            raise ConfigurationError(
                f"{where}: expected a mapping like 'project: ..., monthly_usd: ...'"
            )
        entries.append((where, entry))
    return entries


def _csv_entries(path: Path) -> list[tuple[str, Mapping[str, Any]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        unknown = [column for column in header if column not in CSV_COLUMNS]
        if unknown:
            raise ConfigurationError(
                f"{path}:1: unknown columns {unknown}; the header is {','.join(CSV_COLUMNS)}"
            )
        if "monthly_usd" not in header:
            raise ConfigurationError(f"{path}:1: the header has no monthly_usd column")
        entries: list[tuple[str, Mapping[str, Any]]] = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:  # more cells than header columns
                raise ConfigurationError(f"{where}: more cells than the header's {len(header)}")
            if all(not (value or "").strip() for value in row.values()):
                continue  # a blank line
            entries.append((where, {k: v for k, v in row.items() if v is not None}))
    return entries


def load_budgets(path: Path | None) -> list[BudgetEntry]:
    """Every budget of the file at `path` (none when `path` is None): YAML (`.yaml`, `.yml`,
    a `budgets:` list) or CSV (`.csv`, header `project_id,api_key_id,user_id,monthly_usd,
    thresholds`). Raises ConfigurationError naming the file, the entry or line, and the field."""
    if path is None:
        return []
    if not path.is_file():
        raise ConfigurationError(f"USAGE_BUDGETS={path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        budgets = [parse_budget(e, where, YAML_SCOPE_KEYS) for where, e in _yaml_entries(path)]
    elif suffix == ".csv":
        columns = {column: column for column in CSV_COLUMNS[:3]}
        budgets = [parse_budget(e, where, columns) for where, e in _csv_entries(path)]
    else:
        raise ConfigurationError(f"USAGE_BUDGETS={path}: use a .yaml, .yml or .csv file")
    seen: dict[tuple[str | None, str | None, str | None], BudgetEntry] = {}
    for budget in budgets:
        if budget.scope in seen:
            raise ConfigurationError(
                f"{budget.where}: duplicate scope ({budget.describe()}), already budgeted by "
                f"{seen[budget.scope].where}"
            )
        seen[budget.scope] = budget
    return budgets


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class BudgetStatus:
    """One row of `v_budget_status` (the forecast rule and the thresholds live in that view)."""

    month: dt.date
    budget_id: int
    project_id: str | None
    project_name: str | None
    api_key_id: str | None
    api_key_name: str | None
    user_id: str | None
    user_name: str | None
    user_email: str | None
    monthly_usd: Decimal
    as_of: dt.date | None
    spend_to_date_usd: Decimal
    forecast_usd: Decimal
    percent_used: Decimal
    forecast_percent: Decimal
    threshold_reached: Decimal | None
    forecast_threshold_reached: Decimal | None
    last_threshold: Decimal
    forecast_at_risk: bool
    status: str


_STATUS_COLUMNS = ", ".join(BudgetStatus.__dataclass_fields__)

#: The month the checks look at: that of the organization's last allocated day (right after
#: a month ends, its final numbers rather than the new month's empty ones), else the current
#: month (no allocation yet).
_LATEST_MONTH = f"""
WITH org AS (SELECT * FROM openai_usage.v_budget_status WHERE organization = :organization)
SELECT {_STATUS_COLUMNS} FROM org
WHERE month = coalesce(date_trunc('month', (SELECT max(as_of) FROM org))::date,
                       (SELECT max(month) FROM org))
ORDER BY percent_used DESC, forecast_percent DESC, budget_id
"""


def latest_budget_status(engine: Engine, organization: str) -> list[BudgetStatus]:
    """`organization`'s budgets in the month of its last allocated day (see `_LATEST_MONTH`),
    most used first; empty when it has no budgets."""
    with engine.connect() as conn:
        rows = conn.execute(text(_LATEST_MONTH), {"organization": organization}).mappings()
        return [BudgetStatus(**row) for row in rows]
