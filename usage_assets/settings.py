"""Environment configuration: the public contract of usage_assets.

Every knob is an environment variable (a `.env` file in the working directory works too).
Values are read and validated here, so a typo fails with a message that names the variable
instead of surfacing later as a confusing HTTP or SQL error. `load` reads every variable of the
README's configuration table at once; the code location calls it when it loads, so a bad value
fails the load, not the 02:00 schedule tick that would have read it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv

from usage_assets.errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_START_DATE = "2024-01-01"
DEFAULT_SCHEDULE_CRON = "0 2 * * *"
DEFAULT_ORGANIZATION_LABEL = "default"
DEFAULT_EMBEDDED_PORT = 54329

#: The repository root (the package is installed editable, or copied with its repo).
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# `dagster dev` loads .env itself; the Dagster CLI, alembic and our own commands do not.
load_dotenv(Path.cwd() / ".env", override=False)


def _env(name: str) -> str | None:
    """An environment variable, with empty strings treated as unset."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _header_value(name: str, *, secret: bool = False) -> str | None:
    """A variable sent as an HTTP header value: no whitespace or control characters inside
    (a pasted newline would make every request fail). A secret's value is never shown."""
    value = _env(name)
    if value is not None and any(c.isspace() or not c.isprintable() for c in value):
        shown = "" if secret else f"={value!r}"
        raise ConfigurationError(
            f"{name}{shown} contains whitespace or control characters; set it to the value alone."
        )
    return value


def admin_key() -> str | None:
    """OPENAI_ADMIN_KEY: the organization admin key; unset means the built-in simulator."""
    return _header_value("OPENAI_ADMIN_KEY", secret=True)


def base_url() -> str | None:
    """OPENAI_BASE_URL as set by the user, validated; None when unset."""
    value = _env("OPENAI_BASE_URL")
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"OPENAI_BASE_URL={value!r} is not an http(s) URL; "
            f"expected something like {DEFAULT_BASE_URL!r}."
        )
    return value.rstrip("/")


def organization() -> str | None:
    """OPENAI_ORGANIZATION: optional `OpenAI-Organization` header."""
    return _header_value("OPENAI_ORGANIZATION")


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def organization_label() -> str:
    """The organization this code location's rows belong to: OPENAI_ORGANIZATION when set,
    else USAGE_ORGANIZATION_LABEL (default "default"); 1-64 letters, digits, `.`, `_`, `:`,
    `-`, so it reads well in BI and SQL."""
    explicit = organization()
    if explicit:
        return explicit
    value = _env("USAGE_ORGANIZATION_LABEL") or DEFAULT_ORGANIZATION_LABEL
    if not _LABEL.fullmatch(value):
        raise ConfigurationError(
            f"USAGE_ORGANIZATION_LABEL={value!r} must be 1-64 letters, digits, '.', '_', ':' or "
            "'-', starting with a letter or digit."
        )
    return value


def database_url() -> str | None:
    """USAGE_DATABASE_URL as set by the user; None means the embedded PostgreSQL."""
    return _env("USAGE_DATABASE_URL")


def _checked_database_url() -> str | None:
    """USAGE_DATABASE_URL, refused unless it is a PostgreSQL URL (messages hide the value)."""
    value = database_url()
    if value is not None:
        from usage_assets.warehouse.database import normalize_url  # it imports this module

        normalize_url(value)
    return value


def start_date() -> dt.date:
    """USAGE_START_DATE: the first daily partition (YYYY-MM-DD)."""
    value = _env("USAGE_START_DATE") or DEFAULT_START_DATE
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"USAGE_START_DATE={value!r} is not a date in YYYY-MM-DD form."
        ) from None
    if parsed > dt.datetime.now(dt.UTC).date():
        raise ConfigurationError(f"USAGE_START_DATE={value!r} is in the future.")
    return parsed


def data_dir() -> Path:
    """USAGE_DATA_DIR: where the embedded PostgreSQL and the quickstart's DAGSTER_HOME live."""
    value = _env("USAGE_DATA_DIR")
    return Path(value).expanduser().resolve() if value else PROJECT_ROOT / ".usage_data"


def _checked_data_dir() -> Path:
    path = data_dir()
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"USAGE_DATA_DIR={str(path)!r} exists and is not a directory.")
    return path


def dagster_home() -> Path | None:
    """DAGSTER_HOME (read by Dagster itself): an absolute path, a directory if it exists."""
    value = _env("DAGSTER_HOME")
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigurationError(f"DAGSTER_HOME={value!r} must be an absolute path.")
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"DAGSTER_HOME={value!r} exists and is not a directory.")
    return path


def embedded_port() -> int:
    """USAGE_EMBEDDED_PG_PORT: TCP port of the embedded PostgreSQL on 127.0.0.1."""
    value = _env("USAGE_EMBEDDED_PG_PORT")
    if value is None:
        return DEFAULT_EMBEDDED_PORT
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ConfigurationError(f"USAGE_EMBEDDED_PG_PORT={value!r} is not a TCP port number.")
    return int(value)


def auto_migrate() -> bool:
    """USAGE_AUTO_MIGRATE: upgrade the schema to head before each run (default true)."""
    value = (_env("USAGE_AUTO_MIGRATE") or "true").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigurationError(f"USAGE_AUTO_MIGRATE={value!r} must be true or false.")
    return value in ("true", "1", "yes")


def price_overrides() -> str | None:
    """USAGE_PRICE_OVERRIDES: path of a YAML/CSV price override file (relative: to the repo)."""
    return _env("USAGE_PRICE_OVERRIDES")


def overrides_path(value: str | None) -> Path | None:
    """A price override file's path: relative paths are relative to the repository."""
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def price_overrides_path() -> Path | None:
    """USAGE_PRICE_OVERRIDES as a path (see `overrides_path`)."""
    return overrides_path(price_overrides())


def _checked_price_overrides() -> str | None:
    """USAGE_PRICE_OVERRIDES, with the file read and every price in it validated."""
    from usage_assets.pricing.prices import load_overrides  # it imports this module's errors

    try:
        load_overrides(price_overrides_path())
    except ConfigurationError as exc:
        if "USAGE_PRICE_OVERRIDES" in str(exc):
            raise
        raise ConfigurationError(f"USAGE_PRICE_OVERRIDES: {exc}") from None
    return price_overrides()


def budgets() -> str | None:
    """USAGE_BUDGETS: path of a YAML/CSV budget file (relative: to the repo)."""
    return _env("USAGE_BUDGETS")


def budgets_path() -> Path | None:
    """USAGE_BUDGETS as a path (relative paths are relative to the repository)."""
    return overrides_path(budgets())


def _checked_budgets() -> str | None:
    """USAGE_BUDGETS, with the file read and every budget in it validated."""
    from usage_assets.chargeback.budgets import load_budgets  # imported when it is needed

    try:
        load_budgets(budgets_path())
    except ConfigurationError as exc:
        if "USAGE_BUDGETS" in str(exc):
            raise
        raise ConfigurationError(f"USAGE_BUDGETS: {exc}") from None
    return budgets()


def _fraction_setting(name: str, default: str, example: str) -> float:
    value = _env(name) or default
    try:
        parsed = float(value)
    except ValueError:
        parsed = -1.0
    if not 0 <= parsed < 1:
        raise ConfigurationError(
            f"{name}={value!r} must be a fraction between 0 and 1 ({example})."
        )
    return parsed


def cost_tolerance() -> float:
    """USAGE_COST_TOLERANCE: relative estimated-vs-billed gap the check accepts (default 0.05)."""
    return _fraction_setting("USAGE_COST_TOLERANCE", "0.05", "0.05 = 5%")


def revision_tolerance() -> float:
    """USAGE_REVISION_TOLERANCE: relative drop in a closed day's tokens that a reload may show
    before the `reloads_do_not_lose_usage` check warns (default 0.001)."""
    return _fraction_setting("USAGE_REVISION_TOLERANCE", "0.001", "0.001 = 0.1%")


def anomaly_sensitivity() -> float:
    """USAGE_ANOMALY_SENSITIVITY: robust score (MADs from the baseline median) above which a
    project's day is a spend anomaly (default 3.5)."""
    value = _env("USAGE_ANOMALY_SENSITIVITY") or "3.5"
    try:
        parsed = float(value)
    except ValueError:
        parsed = -1.0
    if not 0 < parsed < float("inf"):
        raise ConfigurationError(
            f"USAGE_ANOMALY_SENSITIVITY={value!r} must be a number greater than 0 (e.g. 3.5)."
        )
    return parsed


def anomaly_min_usd() -> Decimal:
    """USAGE_ANOMALY_MIN_USD: smallest change from the baseline, in USD, that the spend anomaly
    check flags (default 1.00)."""
    value = _env("USAGE_ANOMALY_MIN_USD") or "1.00"
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        parsed = Decimal(-1)
    if not parsed.is_finite() or parsed < 0:
        raise ConfigurationError(
            f"USAGE_ANOMALY_MIN_USD={value!r} must be an amount in USD of 0 or more (e.g. 1.00)."
        )
    return parsed


def _int_setting(name: str, default: int, low: int, high: int) -> int:
    value = _env(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ConfigurationError(f"{name}={value!r} must be a whole number from {low} to {high}.")
    return int(value)


def lookback_days() -> int:
    """USAGE_LOOKBACK_DAYS: days before the closed day the daily run re-fetches (default 3)."""
    return _int_setting("USAGE_LOOKBACK_DAYS", 3, 0, 30)


def cost_workers() -> int:
    """USAGE_COST_WORKERS: connections the cost SQL of a range of days runs on at once, each a
    PostgreSQL backend busy for its chunk of days: about the server's cores (default 2)."""
    return _int_setting("USAGE_COST_WORKERS", 2, 1, 32)


def schedule_cron() -> str:
    """USAGE_SCHEDULE_CRON: when the daily run starts, in UTC (default 02:00)."""
    from dagster._utils.schedules import is_valid_cron_string  # what Dagster's schedules use

    value = _env("USAGE_SCHEDULE_CRON") or DEFAULT_SCHEDULE_CRON
    if not is_valid_cron_string(value):
        raise ConfigurationError(
            f"USAGE_SCHEDULE_CRON={value!r} is not a cron schedule Dagster accepts; expected "
            "five fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'."
        )
    return value


def schedule_running() -> bool:
    """USAGE_SCHEDULE_DEFAULT_STATUS: RUNNING (default) or STOPPED when the code location loads."""
    value = (_env("USAGE_SCHEDULE_DEFAULT_STATUS") or "RUNNING").upper()
    if value not in ("RUNNING", "STOPPED"):
        raise ConfigurationError(
            f"USAGE_SCHEDULE_DEFAULT_STATUS={value!r} must be RUNNING or STOPPED."
        )
    return value == "RUNNING"


def anomaly_baseline_days() -> int:
    """USAGE_ANOMALY_BASELINE_DAYS: days before a day that make its spend baseline (default 28)."""
    return _int_setting("USAGE_ANOMALY_BASELINE_DAYS", 28, 7, 90)


def freshness_deadline_hour() -> int:
    """USAGE_FRESHNESS_DEADLINE_HOUR: UTC hour by which yesterday must have landed (default 6)."""
    return _int_setting("USAGE_FRESHNESS_DEADLINE_HOUR", 6, 0, 23)


def step_retries() -> int:
    """USAGE_STEP_RETRIES: step re-runs after transient Admin API failures (default 2)."""
    return _int_setting("USAGE_STEP_RETRIES", 2, 0, 10)


# --------------------------------------------------------------------------- all at once


def _from(variable: str, read: Callable[[], Any]) -> dict[str, Any]:
    """A `Settings` field's metadata: the environment variable, and its validating reader."""
    return {"variable": variable, "read": read}


@dataclass(frozen=True)
class Settings:
    """Every variable of the README's configuration table, read and validated by `load`.

    Adding a variable is one line here (plus its reader above, and its README row). Each line
    names the module-level reader before the field of the same name exists.
    """

    admin_key: str | None = field(repr=False, metadata=_from("OPENAI_ADMIN_KEY", admin_key))
    base_url: str | None = field(metadata=_from("OPENAI_BASE_URL", base_url))
    organization: str | None = field(metadata=_from("OPENAI_ORGANIZATION", organization))
    organization_label: str = field(metadata=_from("USAGE_ORGANIZATION_LABEL", organization_label))
    database_url: str | None = field(
        repr=False, metadata=_from("USAGE_DATABASE_URL", _checked_database_url)
    )
    start_date: dt.date = field(metadata=_from("USAGE_START_DATE", start_date))
    price_overrides: str | None = field(
        metadata=_from("USAGE_PRICE_OVERRIDES", _checked_price_overrides)
    )
    budgets: str | None = field(metadata=_from("USAGE_BUDGETS", _checked_budgets))
    cost_tolerance: float = field(metadata=_from("USAGE_COST_TOLERANCE", cost_tolerance))
    revision_tolerance: float = field(
        metadata=_from("USAGE_REVISION_TOLERANCE", revision_tolerance)
    )
    anomaly_sensitivity: float = field(
        metadata=_from("USAGE_ANOMALY_SENSITIVITY", anomaly_sensitivity)
    )
    anomaly_baseline_days: int = field(
        metadata=_from("USAGE_ANOMALY_BASELINE_DAYS", anomaly_baseline_days)
    )
    anomaly_min_usd: Decimal = field(metadata=_from("USAGE_ANOMALY_MIN_USD", anomaly_min_usd))
    schedule_cron: str = field(metadata=_from("USAGE_SCHEDULE_CRON", schedule_cron))
    schedule_running: bool = field(
        metadata=_from("USAGE_SCHEDULE_DEFAULT_STATUS", schedule_running)
    )
    lookback_days: int = field(metadata=_from("USAGE_LOOKBACK_DAYS", lookback_days))
    freshness_deadline_hour: int = field(
        metadata=_from("USAGE_FRESHNESS_DEADLINE_HOUR", freshness_deadline_hour)
    )
    step_retries: int = field(metadata=_from("USAGE_STEP_RETRIES", step_retries))
    cost_workers: int = field(metadata=_from("USAGE_COST_WORKERS", cost_workers))
    auto_migrate: bool = field(metadata=_from("USAGE_AUTO_MIGRATE", auto_migrate))
    data_dir: Path = field(metadata=_from("USAGE_DATA_DIR", _checked_data_dir))
    embedded_port: int = field(metadata=_from("USAGE_EMBEDDED_PG_PORT", embedded_port))
    dagster_home: Path | None = field(metadata=_from("DAGSTER_HOME", dagster_home))


#: The environment variables `load` reads: the public contract (README, "Configuration").
VARIABLES: tuple[str, ...] = tuple(f.metadata["variable"] for f in fields(Settings))


def load() -> Settings:
    """Read and validate every variable; one ConfigurationError lists every bad one."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in fields(Settings):
        try:
            values[setting.name] = setting.metadata["read"]()
        except ConfigurationError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigurationError(
            " ".join(problems)
            if len(problems) == 1
            else "\n".join(["Bad configuration:", *(f"- {problem}" for problem in problems)])
        )
    return Settings(**values)
