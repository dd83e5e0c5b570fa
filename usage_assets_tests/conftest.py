"""Shared fixtures: a real PostgreSQL (embedded, or the server of USAGE_DATABASE_URL) with a
throwaway database migrated by Alembic, and the simulated Admin API on loopback."""

from __future__ import annotations

import contextlib
import os

# Step retries wait a minute between attempts; the suite exercises failures directly instead.
# (Set before usage_assets is imported: policies are read at definition time.)
os.environ.setdefault("USAGE_STEP_RETRIES", "0")
import signal
import socket
import uuid
from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse import embedded as embedded_db
from usage_assets.warehouse.database import engine_for, migrate, normalize_url
from usage_assets.warehouse.models import SCHEMA, Base

from . import processes

#: Read once at import: the fixture below scrubs the environment for every test.
EXTERNAL_DATABASE_URL = os.environ.get("USAGE_DATABASE_URL")
CONFIG_VARIABLES = (
    "OPENAI_ADMIN_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORGANIZATION",
    "USAGE_DATABASE_URL",
    "USAGE_START_DATE",
    "USAGE_DATA_DIR",
    "USAGE_EMBEDDED_PG_PORT",
    "USAGE_AUTO_MIGRATE",
    "USAGE_REVISION_TOLERANCE",
    "USAGE_ANOMALY_SENSITIVITY",
    "USAGE_ANOMALY_BASELINE_DAYS",
    "USAGE_ANOMALY_MIN_USD",
    "USAGE_BUDGETS",
    "DAGSTER_HOME",
)


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the suite if any process a test started is still running at its end: a child of
    this process, or a detached server (pg_ctl's postgres) on one of the suite's temporary
    directories. Leftovers are killed, so a failing run leaves nothing behind either.

    Autouse and session-scoped, so it is set up before, and torn down after, every other
    session fixture (the suite's own embedded server is stopped by then)."""
    marker = f"{tmp_path_factory.getbasetemp()}{os.sep}"
    yield
    leftovers = processes.leftover_processes(marker)
    described = [f"{p.pid}: {' '.join(p.info['cmdline'] or ())[:200]}" for p in leftovers]
    for process in leftovers:
        with contextlib.suppress(Exception):
            process.kill()
    assert not leftovers, "processes outlived the suite:\n" + "\n".join(described)


@pytest.fixture(autouse=True)
def stop_signals_restored() -> Iterator[None]:
    """Undo a test's changes to how this process handles stopping signals.

    Dagster maps SIGTERM onto SIGINT's handler when it executes a run in process; where SIGINT
    is ignored (a background job of a non-interactive shell), the test process then ignored
    SIGTERM too, and so did every child started after it."""
    saved = {number: signal.getsignal(number) for number in processes.STOP_SIGNALS}
    yield
    for number, handler in saved.items():
        if handler is not None and signal.getsignal(number) is not handler:
            signal.signal(number, handler)


@pytest.fixture(autouse=True)
def no_dagster_storage_left_current() -> Iterator[None]:
    """Forget the Dagster instance storage a test left as the process's current one.

    An instance entered as a context manager becomes the current `DefsStateStorage` (a
    ContextVar), and Dagster reads it whenever Definitions are built; one the test did not exit
    (the production-instance tests' instance on a Postgres database they drop) made every later
    `dg.materialize` in the same worker fail with "database ... does not exist"."""
    yield
    from dagster._core.storage.defs_state import base as defs_state

    if defs_state.DefsStateStorage.get() is not None:
        defs_state._current_storage.set(None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own keys, database or data directory."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """libpq URL of the maintenance database of a real PostgreSQL server."""
    if EXTERNAL_DATABASE_URL:
        yield libpq(make_url(normalize_url(EXTERNAL_DATABASE_URL)).set(database="postgres")
                    .render_as_string(hide_password=False))  # fmt: skip
        return
    server = embedded_db.EmbeddedServer(
        data_dir=tmp_path_factory.mktemp("embedded-pg"), port=free_port()
    )
    embedded_db.ensure_running(server)
    yield server.url("postgres", "postgresql")
    embedded_db.stop(server)


def create_database(pg_server_url: str) -> str:
    """A new empty database on the test server; returns its SQLAlchemy URL."""
    name = f"usage_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return normalize_url(make_url(pg_server_url).set(database=name).render_as_string(False))


def drop_database(pg_server_url: str, url: str) -> None:
    engine_for(url).dispose()
    name = make_url(url).database
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(pg_server_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a throwaway database migrated to the Alembic head."""
    url = create_database(pg_server_url)
    migrate(url)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture
def engine(database_url: str) -> Engine:
    """The migrated test database, emptied before each test."""
    engine = engine_for(database_url)
    tables = ", ".join(f"{SCHEMA}.{table.name}" for table in Base.metadata.tables.values())
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables}"))
    return engine


@pytest.fixture
def simulator() -> Iterator[SimulatedAdminAPI]:
    with SimulatedAdminAPI() as sim:
        yield sim


def day_reports(result: dg.ExecuteInProcessResult, node: str) -> list[dg.AssetMaterialization]:
    """A run's materializations of `node`, one per day (see policies.report_days)."""
    return list(result.asset_materializations_for_node(node))
