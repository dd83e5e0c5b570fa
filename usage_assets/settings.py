"""Environment configuration: the public contract of usage_assets.

Every knob is an environment variable (a `.env` file in the working directory works too).
Values are read and validated here, once, so a typo fails with a message that names the
variable instead of surfacing later as a confusing HTTP or SQL error.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv

from usage_assets.errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_START_DATE = "2024-01-01"
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


def admin_key() -> str | None:
    """OPENAI_ADMIN_KEY: the organization admin key; unset means the built-in simulator."""
    return _env("OPENAI_ADMIN_KEY")


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
    return _env("OPENAI_ORGANIZATION")


def database_url() -> str | None:
    """USAGE_DATABASE_URL as set by the user; None means the embedded PostgreSQL."""
    return _env("USAGE_DATABASE_URL")


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


def cost_tolerance() -> float:
    """USAGE_COST_TOLERANCE: relative estimated-vs-billed gap the check accepts (default 0.05)."""
    value = _env("USAGE_COST_TOLERANCE") or "0.05"
    try:
        parsed = float(value)
    except ValueError:
        parsed = -1.0
    if not 0 <= parsed < 1:
        raise ConfigurationError(
            f"USAGE_COST_TOLERANCE={value!r} must be a fraction between 0 and 1 (0.05 = 5%)."
        )
    return parsed


def revision_tolerance() -> float:
    """USAGE_REVISION_TOLERANCE: relative drop in a closed day's tokens that a reload may show
    before the `reloads_do_not_lose_usage` check warns (default 0.001)."""
    value = _env("USAGE_REVISION_TOLERANCE") or "0.001"
    try:
        parsed = float(value)
    except ValueError:
        parsed = -1.0
    if not 0 <= parsed < 1:
        raise ConfigurationError(
            f"USAGE_REVISION_TOLERANCE={value!r} must be a fraction between 0 and 1 (0.001 = 0.1%)."
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


def schedule_cron() -> str:
    """USAGE_SCHEDULE_CRON: when the daily run starts, in UTC (default 02:00)."""
    return _env("USAGE_SCHEDULE_CRON") or "0 2 * * *"  # Dagster validates it at load


def schedule_running() -> bool:
    """USAGE_SCHEDULE_DEFAULT_STATUS: RUNNING (default) or STOPPED when the code location loads."""
    value = (_env("USAGE_SCHEDULE_DEFAULT_STATUS") or "RUNNING").upper()
    if value not in ("RUNNING", "STOPPED"):
        raise ConfigurationError(
            f"USAGE_SCHEDULE_DEFAULT_STATUS={value!r} must be RUNNING or STOPPED."
        )
    return value == "RUNNING"


def freshness_deadline_hour() -> int:
    """USAGE_FRESHNESS_DEADLINE_HOUR: UTC hour by which yesterday must have landed (default 6)."""
    return _int_setting("USAGE_FRESHNESS_DEADLINE_HOUR", 6, 0, 23)


def step_retries() -> int:
    """USAGE_STEP_RETRIES: step re-runs after transient Admin API failures (default 2)."""
    return _int_setting("USAGE_STEP_RETRIES", 2, 0, 10)
