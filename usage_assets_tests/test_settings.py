"""Configuration fails when the code location loads, naming the variable and the rule; an
unreachable database fails in seconds, naming the variable and host:port, never the password."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from usage_assets import settings
from usage_assets.errors import ConfigurationError, DatabaseUnavailableError
from usage_assets.warehouse import database
from usage_assets_tests.test_definitions import load_definitions

from .conftest import free_port

README = settings.PROJECT_ROOT / "README.md"

#: A bad value for every variable of the README's table, and what the message must say.
BAD_VALUES: dict[str, tuple[str, str]] = {
    "OPENAI_ADMIN_KEY": ("sk-admin-abc def", "whitespace"),
    "OPENAI_BASE_URL": ("api.openai.com/v1", "not an http(s) URL"),
    "OPENAI_ORGANIZATION": ("org one", "whitespace"),
    "USAGE_ORGANIZATION_LABEL": ("acme prod", "letters, digits"),
    "USAGE_DATABASE_URL": ("mysql://u:hunter2pw@db/usage", "PostgreSQL"),
    "USAGE_START_DATE": ("2024-13-01", "YYYY-MM-DD"),
    "USAGE_PRICE_OVERRIDES": ("prices/missing.yaml", "does not exist"),
    "USAGE_BUDGETS": ("deploy/missing-budgets.yaml", "does not exist"),
    "USAGE_COST_TOLERANCE": ("5%", "fraction"),
    "USAGE_REVISION_TOLERANCE": ("1.5", "fraction"),
    "USAGE_ANOMALY_SENSITIVITY": ("0", "greater than 0"),
    "USAGE_ANOMALY_BASELINE_DAYS": ("3", "from 7 to 90"),
    "USAGE_ANOMALY_MIN_USD": ("-1", "0 or more"),
    "USAGE_SCHEDULE_CRON": ("0 25 * * *", "cron"),
    "USAGE_SCHEDULE_DEFAULT_STATUS": ("PAUSED", "RUNNING or STOPPED"),
    "USAGE_LOOKBACK_DAYS": ("abc", "whole number"),
    "USAGE_FRESHNESS_DEADLINE_HOUR": ("24", "from 0 to 23"),
    "USAGE_STEP_RETRIES": ("-1", "whole number"),
    "USAGE_COST_WORKERS": ("0", "from 1 to 32"),
    "USAGE_AUTO_MIGRATE": ("maybe", "true or false"),
    "USAGE_DATA_DIR": (str(README), "not a directory"),
    "USAGE_EMBEDDED_PG_PORT": ("port", "TCP port"),
    "DAGSTER_HOME": ("relative/dagster_home", "absolute path"),
}
SECRETS = {"OPENAI_ADMIN_KEY": "abc def", "USAGE_DATABASE_URL": "hunter2pw"}


def readme_variables() -> list[str]:
    """The first column of the table in README's "## Configuration" section."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.MULTILINE)


def test_the_readme_table_is_the_validated_set() -> None:
    assert readme_variables() == list(settings.VARIABLES)
    assert set(BAD_VALUES) == set(settings.VARIABLES)  # a new variable needs a bad value here


def test_the_defaults_load() -> None:
    loaded = settings.load()
    assert loaded.lookback_days == 3 and loaded.schedule_cron == "0 2 * * *"


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_a_bad_value_fails_the_code_location_load_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    value, rule = BAD_VALUES[name]
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as excinfo:
        load_definitions(monkeypatch)  # a fresh import of usage_assets.definitions
    message = str(excinfo.value)
    assert name in message and rule in message, message
    if name in SECRETS:
        assert SECRETS[name] not in message


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("USAGE_LOOKBACK_DAYS", "USAGE_STEP_RETRIES", "USAGE_SCHEDULE_CRON"):
        monkeypatch.setenv(name, BAD_VALUES[name][0])
    with pytest.raises(ConfigurationError) as excinfo:
        settings.load()
    message = str(excinfo.value)
    assert all(n in message for n in ("USAGE_LOOKBACK_DAYS", "USAGE_STEP_RETRIES", "CRON"))


def test_the_settings_repr_hides_the_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-NEVERSHOWN0123456789")
    monkeypatch.setenv("USAGE_DATABASE_URL", "postgresql://u:hunter2pw@db:5432/usage")
    shown = repr(settings.load())
    assert "NEVERSHOWN" not in shown and "hunter2pw" not in shown


def test_dagster_definitions_validate_fails_naming_the_variables() -> None:
    """The real command, in a process of its own: a lazily read variable (the lookback, read
    at the schedule tick) and the cron both fail the load."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "USAGE_"))}
    env.pop("DAGSTER_HOME", None)
    env.update(USAGE_LOOKBACK_DAYS="abc", USAGE_SCHEDULE_CRON="every day at two")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            *("definitions", "validate", "-m", "usage_assets.definitions"),
        ],
        cwd=settings.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "USAGE_LOOKBACK_DAYS='abc' must be a whole number from 0 to 30" in output, output
    assert "USAGE_SCHEDULE_CRON='every day at two' is not a cron schedule" in output, output


# --------------------------------------------------------------------------- the database


def test_a_closed_port_fails_the_asset_at_once_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from usage_assets.defs.resources import OpenAIAdminResource, usage_database_from_env
    from usage_assets.defs.usage.assets import completions_usage_hourly

    port = free_port()  # nothing listens there any more
    monkeypatch.setenv("USAGE_DATABASE_URL", f"postgresql://usage:s3cretpw@127.0.0.1:{port}/u")
    started = time.monotonic()
    result = dg.materialize(
        [completions_usage_hourly],
        partition_key="2025-11-20",
        resources={"openai_admin": OpenAIAdminResource(), "usage_db": usage_database_from_env()},
        raise_on_error=False,
    )
    elapsed = time.monotonic() - started
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data
    assert data.user_failure_data is not None, data.error  # permanent: no step retry
    message = data.user_failure_data.description or ""
    assert message.startswith("DatabaseUnavailableError"), message
    assert "USAGE_DATABASE_URL" in message and f"127.0.0.1:{port}" in message
    assert "s3cretpw" not in message
    assert all("s3cretpw" not in str(event) for event in result.all_events)
    assert elapsed < 60


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a server hung, or a proxy
    blackholing traffic); connections are dropped after 90 s so a test without a connect
    timeout still ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
        for conn in accepted:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_silent_server_times_out_in_seconds(
    monkeypatch: pytest.MonkeyPatch, silent_server: int
) -> None:
    from usage_assets.defs.resources import UsageDatabase

    monkeypatch.setattr(database, "CONNECT_TIMEOUT_SECONDS", 2)
    url = f"postgresql://usage:s3cretpw@127.0.0.1:{silent_server}/u"
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as excinfo:
        UsageDatabase(url=url).engine()
    assert time.monotonic() - started < 60
    message = str(excinfo.value)
    assert f"127.0.0.1:{silent_server}" in message and "timeout" in message, message
    assert "s3cretpw" not in message
