"""Fault injection: a process killed mid-write, and PostgreSQL restarting mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse import embedded as embedded_db
from usage_assets.warehouse.database import engine_for, migrate

from . import processes
from .conftest import free_port
from .test_ingest import table_rows

WRITE_ONE_DAY = """
import sys
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.warehouse.database import engine_for
from usage_assets.defs.usage.ingest import ingest_days
from usage_assets.warehouse.usage_days import LoadInfo
import datetime as dt
client = AdminAPIClient(sys.argv[2], None)
info = LoadInfo(group_by=["project_id", "model"], simulated=True, source_url="t",
               dagster_run_id=None)
day = dt.date(2025, 11, 20)
for _ in ingest_days(client, engine_for(sys.argv[1]), day, day + dt.timedelta(days=1),
                     ["project_id", "model"], info):
    pass
print("committed", flush=True)
"""

SLOW_INSERTS = """
CREATE FUNCTION openai_usage.slow_insert() RETURNS trigger AS $$
BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow_insert BEFORE INSERT ON openai_usage.completions_usage_hourly
FOR EACH ROW EXECUTE FUNCTION openai_usage.slow_insert();
"""


_children: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def children_stopped() -> Iterator[None]:
    """Every writer a test starts is stopped with it, however the test ends."""
    yield
    while _children:
        processes.stop(_children.pop())


def write_in_child(database_url: str, base_url: str) -> subprocess.Popen[str]:
    child: subprocess.Popen[str] = processes.spawn(
        [sys.executable, "-c", WRITE_ONE_DAY, database_url, base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _children.append(child)
    return child


def wait_for_copy(engine: Engine, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            busy = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY openai_usage%' "
                    "AND state = 'active'"
                )
            ).scalar()
        if busy:
            return
        time.sleep(0.05)
    raise AssertionError("the child never started its COPY")


def test_sigkill_mid_write_leaves_the_previous_rows_then_a_rerun_converges(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    first = write_in_child(database_url, simulator.base_url)
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    good = table_rows(engine)
    assert len(good) > 50

    with engine.begin() as conn:
        conn.execute(text(SLOW_INSERTS))
    try:
        child = write_in_child(database_url, simulator.base_url)
        wait_for_copy(engine)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER slow_insert ON openai_usage.completions_usage_hourly"))
            conn.execute(text("DROP FUNCTION openai_usage.slow_insert()"))
    # The killed transaction is rolled back by the server once its connection drops.
    deadline = time.monotonic() + 30
    while table_rows(engine) != good and time.monotonic() < deadline:
        time.sleep(0.1)
    assert table_rows(engine) == good

    again = write_in_child(database_url, simulator.base_url)
    assert again.wait(timeout=60) == 0
    assert table_rows(engine) == good


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[embedded_db.EmbeddedServer]:
    """A server of its own, so restarting it disturbs no other test."""
    server = embedded_db.EmbeddedServer(tmp_path, free_port())
    embedded_db.ensure_running(server)
    yield server
    embedded_db.stop(server)


def test_postgres_restart_mid_run_fails_cleanly_and_leaves_nothing_partial(
    own_server: embedded_db.EmbeddedServer,
) -> None:
    url = own_server.url()
    migrate(url)
    engine = engine_for(url)
    with SimulatedAdminAPI() as sim:
        first = write_in_child(url, sim.base_url)
        assert first.wait(timeout=60) == 0
        good = table_rows(engine)
        with engine.begin() as conn:
            conn.execute(text(SLOW_INSERTS))
        child = write_in_child(url, sim.base_url)
        wait_for_copy(engine)
        engine.dispose()
        embedded_db.stop(own_server)  # fast shutdown: aborts the open transaction
        code = child.wait(timeout=60)
        embedded_db.ensure_running(own_server)
        stderr = child.stderr.read() if child.stderr else ""
        assert code != 0 and "committed" not in (child.stdout.read() if child.stdout else "")
        assert "OperationalError" in stderr or "terminating connection" in stderr, stderr[-2000:]
        engine = engine_for(url)
        assert table_rows(engine) == good
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER slow_insert ON openai_usage.completions_usage_hourly"))
        rerun = write_in_child(url, sim.base_url)
        assert rerun.wait(timeout=60) == 0
        assert table_rows(engine) == good
