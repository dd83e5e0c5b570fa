"""The documented commands, run as a user runs them: Dagster's CLI, alembic, usage-db."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from usage_assets import settings
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse import embedded as embedded_db
from usage_assets.warehouse.database import engine_for
from usage_assets.warehouse.models import Base

from .conftest import create_database, drop_database, free_port, libpq

BIN = Path(sys.executable).parent


def run(
    *command: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=settings.PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def empty_url(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


def test_alembic_cli_honours_usage_database_url(empty_url: str) -> None:
    env = {"USAGE_DATABASE_URL": libpq(empty_url)}
    upgrade = run("alembic", "upgrade", "head", env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    check = run("alembic", "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_dagster_cli_materializes_a_partition(empty_url: str) -> None:
    key = "sk-admin-CLITEST0123456789abcdef"
    with SimulatedAdminAPI(required_key=key) as sim:
        env = {
            "USAGE_DATABASE_URL": libpq(empty_url),
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_ADMIN_KEY": key,
            "USAGE_START_DATE": "2025-01-01",
        }
        done = run(
            "dagster", "asset", "materialize", "-m", "usage_assets.definitions",
            "--select", "completions_usage_hourly", "--partition", "2025-11-20",
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert key not in done.stdout + done.stderr
        start = int(dt.datetime(2025, 11, 20, tzinfo=dt.UTC).timestamp())
        truth = sim.org.totals_by_project(start, start + 86400)
    with engine_for(empty_url).connect() as conn:
        landed = conn.execute(
            text(
                "SELECT sum(input_tokens + output_tokens) FROM "
                "openai_usage.completions_usage_hourly"
            )
        ).scalar()
    assert landed == sum(t["input_tokens"] + t["output_tokens"] for t in truth.values())


def test_usage_db_dsn_starts_the_embedded_server(tmp_path: Path) -> None:
    env = {"USAGE_DATA_DIR": str(tmp_path), "USAGE_EMBEDDED_PG_PORT": str(free_port())}
    server = embedded_db.EmbeddedServer(tmp_path, int(env["USAGE_EMBEDDED_PG_PORT"]))
    try:
        dsn = run("usage-db", "dsn", env=env)
        assert dsn.returncode == 0, dsn.stderr
        assert dsn.stdout.strip() == server.dsn()
        migrated = run("usage-db", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert server.password() not in migrated.stdout + migrated.stderr
        with psycopg.connect(dsn.stdout.strip()) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'openai_usage' AND c.relkind IN ('r', 'p') "
                "AND NOT c.relispartition"
            ).fetchone()
        assert tables == (len(Base.metadata.tables) + 1,)  # and the Alembic version table
        # README: `psql "$(usage-db dsn)"`, with no other source of the password.
        psql = subprocess.run(
            ["/usr/bin/psql", "-w", "-X", "-tA", dsn.stdout.strip(), "-c", "SELECT current_user"],
            env={"PGPASSFILE": str(tmp_path / "no-pgpass")},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert (psql.returncode, psql.stdout.strip()) == (0, "postgres"), psql.stderr
        # `dsn` is the one command that prints the password; the others mask it.
        for command in ("start", "status"):
            shown = run("usage-db", command, env=env)
            assert shown.returncode == 0, shown.stderr
            assert "running" in shown.stdout
            assert "postgresql://postgres:***@127.0.0.1" in shown.stdout
            assert str(server.password_file) in shown.stdout
            assert server.password() not in shown.stdout + shown.stderr
    finally:
        assert run("usage-db", "stop", env=env).stdout.strip() == "stopped"


def test_quickstart_path_embedded_database_and_simulator(tmp_path: Path) -> None:
    """No key, no database URL: the embedded server starts, migrates, and demo data lands."""
    from usage_assets.simulator.organization import SyntheticOrganization

    port = free_port()
    env = {"USAGE_DATA_DIR": str(tmp_path), "USAGE_EMBEDDED_PG_PORT": str(port)}
    server = embedded_db.EmbeddedServer(tmp_path, port)
    try:
        done = run(
            "dagster", "asset", "materialize", "-m", "usage_assets.definitions",
            "--select", "completions_usage_hourly", "--partition", "2025-11-20",
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "SIMULATED DATA" in done.stdout + done.stderr
        assert server.password() not in done.stdout + done.stderr
        start = int(dt.datetime(2025, 11, 20, tzinfo=dt.UTC).timestamp())
        truth = SyntheticOrganization().totals_by_project(start, start + 86400)
        with psycopg.connect(server.dsn()) as conn:
            landed = dict(
                conn.execute(
                    "SELECT project_id, sum(input_tokens)::bigint FROM "
                    "openai_usage.completions_usage_hourly GROUP BY project_id"
                ).fetchall()
            )
        assert landed == {project: t["input_tokens"] for project, t in truth.items()}
    finally:
        embedded_db.stop(server)


def test_usage_backfill_runs_a_range_in_chunks_with_progress(empty_url: str) -> None:
    with SimulatedAdminAPI() as sim:
        env = {
            "USAGE_DATABASE_URL": libpq(empty_url),
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_ADMIN_KEY": "sk-admin-backfill-test",
        }
        done = run("usage-backfill", "2025-11-18", "2025-11-20", "--days-per-run", "2", env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "[1/2] 2025-11-18 .. 2025-11-19" in done.stdout
        assert "[2/2] 2025-11-20 .. 2025-11-20" in done.stdout
        assert sim.usage_requests() == 2  # one request per chunk
    with engine_for(empty_url).connect() as conn:
        days = conn.execute(
            text("SELECT DISTINCT usage_date FROM openai_usage.project_daily_costs ORDER BY 1")
        ).scalars()
        assert [d.isoformat() for d in days] == ["2025-11-18", "2025-11-19", "2025-11-20"]
    bad = run("usage-backfill", "2025-11-20", "2025-11-18", env=env)
    assert bad.returncode == 2 and "last is before first" in bad.stderr


def test_recompute_costs_refuses_a_backwards_range(capsys: pytest.CaptureFixture[str]) -> None:
    from usage_assets.cli import db_main

    with pytest.raises(SystemExit) as exit_:
        db_main(["recompute-costs", "--from", "2025-11-20", "--to", "2025-11-19"])
    assert exit_.value.code == 2
    assert "--to is before --from" in capsys.readouterr().err
