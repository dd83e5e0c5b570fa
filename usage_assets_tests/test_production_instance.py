"""The production deployment: deploy/dagster.yaml boots a Dagster instance whose storage is a real
PostgreSQL database of its own (not the usage database), and the daily schedule's job runs
partitions in it. The Helm values, the migration Job and the Dockerfile are checked against the
same facts statically (no Kubernetes cluster or Docker daemon is needed)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml
from click.testing import CliRunner
from dagster._cli import cli as dagster_cli
from dagster._config import validate_config
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import (
    PoolGranularity,
    dagster_instance_config,
    dagster_instance_config_schema,
)
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.scheduler.instigation import TickStatus
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from sqlalchemy import text
from sqlalchemy.engine import make_url

from usage_assets import settings
from usage_assets.defs.policies import ADMIN_API_POOL
from usage_assets.defs.resources import (
    AnomalyResource,
    BudgetsResource,
    OpenAIAdminResource,
    PricingResource,
    UsageDatabase,
)
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.database import engine_for, head_revision, migrate

from .conftest import create_database, drop_database, libpq

ROOT = settings.PROJECT_ROOT
DAGSTER_YAML = ROOT / "deploy" / "dagster.yaml"
HELM_VALUES = ROOT / "deploy" / "helm" / "values.yaml"
MIGRATE_JOB = ROOT / "deploy" / "helm" / "migrate-job.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

ADMIN_KEY = "sk-admin-PRODTEST0123456789abcdefSECRET"
DAY = "2025-11-20"
#: The schedule's tick on 2025-11-22 02:00 UTC refreshes 2025-11-21 and the 3 days before it.
TICK = dt.datetime(2025, 11, 22, 2, 0, tzinfo=dt.UTC)
SCHEDULED_DAYS = ["2025-11-18", "2025-11-19", "2025-11-20", "2025-11-21"]
PG_VARIABLES = ("HOST", "PORT", "USER", "PASSWORD", "DB")


def code_location_module() -> str:
    """The module every entry point loads: pyproject's [tool.dagster] and workspace.yaml agree."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module = str(pyproject["tool"]["dagster"]["module_name"])
    assert pyproject["tool"]["dg"]["project"]["code_location_target_module"] == module
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == module
    return module


def production_config() -> dict[str, Any]:
    return dict(yaml.safe_load(DAGSTER_YAML.read_text()))


def pg_environment(url: str) -> dict[str, str]:
    parsed = make_url(url)
    return {
        "DAGSTER_PG_HOST": str(parsed.host),
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_USER": str(parsed.username),
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_DB": str(parsed.database),
    }


def relations(url: str) -> set[tuple[str, str]]:
    """(schema, name) of every table and view outside the system schemas."""
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {(schema, name) for schema, name in rows}


@dataclass
class Production:
    instance: dg.DagsterInstance
    dagster_url: str
    usage_url: str
    home: Path


@pytest.fixture(scope="module")
def production(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Production]:
    """deploy/dagster.yaml as $DAGSTER_HOME/dagster.yaml, its DAGSTER_PG_* pointing at a fresh
    database; the usage data in a second database, migrated as the pre-deploy step does."""
    dagster_url = create_database(pg_server_url)
    usage_url = create_database(pg_server_url)
    migrate(usage_url)
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as env:
        for name, value in pg_environment(dagster_url).items():
            env.setenv(name, value)
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            yield Production(instance, dagster_url, usage_url, home)
        finally:
            instance.dispose()
            drop_database(pg_server_url, dagster_url)
            drop_database(pg_server_url, usage_url)


# ---------------------------------------------------------------------------- the instance


def test_config_validates_against_dagsters_instance_schema(production: Production) -> None:
    raw = production_config()
    assert validate_config(dagster_instance_config_schema(), raw).success
    # The loader Dagster itself uses, which also rejects run-queue settings that conflict with
    # `concurrency`.
    config, custom_class = dagster_instance_config(str(production.home))
    assert custom_class is None
    # Dagster's database comes from DAGSTER_PG_* only: nothing in the file names a server.
    assert config["storage"]["postgres"]["postgres_db"] == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        # dagster-postgres needs psycopg2; SQLAlchemy 2.1 maps postgresql:// to psycopg 3.
        "scheme": "postgresql+psycopg2",
    }


@pytest.mark.parametrize("missing", [f"DAGSTER_PG_{name}" for name in PG_VARIABLES])
def test_a_missing_storage_variable_is_named(
    production: Production, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delenv(missing)
    with pytest.raises(DagsterInvalidConfigError, match=f'"{missing}" which is not set'):
        dg.DagsterInstance.from_config(str(production.home))


def test_storage_is_postgres_in_a_database_of_its_own(production: Production) -> None:
    instance = production.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

    dagster_tables = relations(production.dagster_url)
    dagster_storage = ("runs", "event_logs", "alembic_version", "jobs", "job_ticks")
    for table in (*dagster_storage, "concurrency_limits"):
        assert ("public", table) in dagster_tables
    assert not {schema for schema, _ in dagster_tables} - {"public"}, "no openai_usage here"

    usage_tables = relations(production.usage_url)
    assert ("openai_usage", "completions_usage_hourly") in usage_tables
    assert ("openai_usage", "usage_assets_alembic_version") in usage_tables
    assert not {name for _, name in usage_tables} & {"runs", "event_logs", "alembic_version"}
    assert {schema for schema, _ in usage_tables} == {"openai_usage"}


def test_run_queue_pool_retention_and_monitoring_are_read_back(production: Production) -> None:
    instance = production.instance
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1
    assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
    assert instance.global_op_concurrency_default_limit == 1
    queue = concurrency.run_queue_config
    assert queue is not None
    assert queue.max_concurrent_runs == 4
    assert queue.tag_concurrency_limits == [{"key": "dagster/backfill", "limit": 2}]
    assert queue.should_block_op_concurrency_limited_runs
    assert queue.max_user_code_failure_retries == 3

    assert instance.get_tick_retention_settings(InstigatorType.SCHEDULE) == {
        status: 90 for status in TickStatus
    }
    assert instance.get_tick_retention_settings(InstigatorType.SENSOR) == {
        TickStatus.SKIPPED: 7,
        TickStatus.SUCCESS: 30,
        TickStatus.FAILURE: 90,
        TickStatus.STARTED: -1,
    }
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds == 300
    assert instance.run_monitoring_max_runtime_seconds == 21600
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert not instance.telemetry_enabled


# ---------------------------------------------------------------------------- a run in it


def production_job(sim: SimulatedAdminAPI, usage_url: str) -> dg.JobDefinition:
    """The code location's `usage_daily_job`, with its resources pointed at the simulator and
    the usage database (schema already migrated, USAGE_AUTO_MIGRATE=false as in production)."""
    from usage_assets.definitions import defs as load
    from usage_assets.defs.automation import usage_daily_job, usage_daily_schedule

    defs = load()
    assert defs.resolve_job_def("usage_daily_job").name == usage_daily_schedule.job_name
    wired = dg.Definitions(
        assets=list(defs.assets or []),
        asset_checks=list(defs.asset_checks or []),
        jobs=[usage_daily_job],
        schedules=[usage_daily_schedule],
        resources={
            "openai_admin": OpenAIAdminResource(base_url=sim.base_url, admin_key=ADMIN_KEY),
            "usage_db": UsageDatabase(url=usage_url, auto_migrate=False),
            "pricing": PricingResource(),
            "anomalies": AnomalyResource(),
            "budget_file": BudgetsResource(),
        },
    )
    return wired.resolve_job_def("usage_daily_job")


def day_start(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def landed_by_project(usage_url: str, day: str) -> dict[str | None, dict[str, int]]:
    with engine_for(usage_url).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT project_id, sum(input_tokens), sum(output_tokens), "
                "sum(num_model_requests) FROM openai_usage.completions_usage_hourly "
                "WHERE bucket_start >= to_timestamp(:start) "
                "AND bucket_start < to_timestamp(:start + 86400) GROUP BY project_id"
            ),
            {"start": day_start(day)},
        )
        return {
            project: {"input_tokens": i, "output_tokens": o, "num_model_requests": r}
            for project, i, o, r in rows
        }


def test_schedule_job_runs_partitions_in_the_production_instance(production: Production) -> None:
    from usage_assets.defs.automation import usage_daily_schedule

    instance = production.instance
    with SimulatedAdminAPI(required_key=ADMIN_KEY) as sim:
        job = production_job(sim, production.usage_url)

        # One partition, as a backfill of one day or a click on "Materialize" launches it.
        single = job.execute_in_process(instance=instance, partition_key=DAY)
        assert single.success

        # The schedule's tick, evaluated against the same instance, and the run it requests.
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=TICK)
        [request] = usage_daily_schedule.evaluate_tick(context).run_requests or []
        assert request.run_key == "usage-2025-11-21"
        assert request.tags["dagster/asset_partition_range_start"] == SCHEDULED_DAYS[0]
        assert request.tags["dagster/asset_partition_range_end"] == SCHEDULED_DAYS[-1]
        scheduled = job.execute_in_process(instance=instance, tags=dict(request.tags))
        assert scheduled.success

    # Both runs are in Dagster's PostgreSQL storage.
    runs = {run.run_id: run for run in instance.get_runs()}
    assert set(runs) == {single.run_id, scheduled.run_id}
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs.values())
    assert {run.job_name for run in runs.values()} == {"usage_daily_job"}
    assert runs[single.run_id].tags["dagster/partition"] == DAY
    with psycopg.connect(libpq(production.dagster_url)) as conn:
        stored = {row[0] for row in conn.execute("SELECT run_id FROM runs").fetchall()}
    assert stored == set(runs)

    # Every day is materialized, raw usage and costs alike.
    for asset in ("completions_usage_hourly", "project_daily_costs", "costs_daily"):
        materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert materialized == set(SCHEDULED_DAYS), asset

    # ... and the rows landed in the usage database, per project exactly the simulator's.
    for day in SCHEDULED_DAYS:
        truth = sim.org.totals_by_project(day_start(day), day_start(day) + 86_400)
        assert landed_by_project(production.usage_url, day) == truth, day

    # The Admin API steps went through pool "openai_admin_api", created with the default limit
    # of 1 from dagster.yaml, and released their slots.
    info = instance.event_log_storage.get_concurrency_info(ADMIN_API_POOL)
    assert info.slot_count == 1
    assert info.active_slot_count == 0 and info.pending_step_count == 0
    [pool] = [p for p in instance.event_log_storage.get_pool_limits() if p.name == ADMIN_API_POOL]
    assert pool.limit == 1 and pool.from_default


# ---------------------------------------------------------------------------- Kubernetes


def test_helm_values_mirror_the_instance_config() -> None:
    values = yaml.safe_load(HELM_VALUES.read_text())
    prod = production_config()

    pools, runs = values["concurrency"]["pools"], values["concurrency"]["runs"]
    assert values["concurrency"]["enabled"] is True
    assert pools["defaultLimit"] == prod["concurrency"]["pools"]["default_limit"] == 1
    assert pools["granularity"] == prod["concurrency"]["pools"]["granularity"]
    assert runs["maxConcurrentRuns"] == prod["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == prod["concurrency"]["runs"]["tag_concurrency_limits"]

    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"] == {"enabled": True, "type": "QueuedRunCoordinator"}
    monitoring = prod["run_monitoring"]
    assert daemon["runMonitoring"]["startTimeoutSeconds"] == monitoring["start_timeout_seconds"]
    assert daemon["runMonitoring"]["cancelTimeoutSeconds"] == monitoring["cancel_timeout_seconds"]
    assert daemon["runMonitoring"]["pollIntervalSeconds"] == monitoring["poll_interval_seconds"]
    assert daemon["runRetries"] == {
        "enabled": prod["run_retries"]["enabled"],
        "maxRetries": prod["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": prod["run_retries"]["retry_on_asset_or_op_failure"],
    }
    for kind in ("schedule", "sensor"):
        assert (
            values["retention"][kind]["purgeAfterDays"]
            == prod["retention"][kind]["purge_after_days"]
        )
    assert values["telemetry"]["enabled"] is prod["telemetry"]["enabled"] is False

    # Dagster's storage is an external database, with the password from a Secret.
    assert values["postgresql"]["enabled"] is False
    assert (
        values["postgresql"]["postgresqlScheme"]
        == prod["storage"]["postgres"]["postgres_db"]["scheme"]
        == "postgresql+psycopg2"
    )
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]

    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["-m", code_location_module()]
    assert deployment["port"] == 4000
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["envSecrets"] == [{"name": "usage-assets"}]
    assert deployment["env"]["USAGE_AUTO_MIGRATE"] == "false"
    assert deployment["env"]["USAGE_SCHEDULE_DEFAULT_STATUS"] in ("RUNNING", "STOPPED")
    assert deployment["podSecurityContext"]["runAsUser"] == image_user()


def test_migration_job_runs_the_migrations_from_the_same_image() -> None:
    job = yaml.safe_load(MIGRATE_JOB.read_text())
    values = yaml.safe_load(HELM_VALUES.read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert job["kind"] == "Job"
    assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsUser"] == image_user()
    [container] = pod["containers"]
    assert container["image"] == f"{deployment['image']['repository']}:IMAGE_TAG"
    assert container["command"] == ["usage-db", "migrate"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["usage-db"] == "usage_assets.cli:db_main"
    assert container["workingDir"] == image_workdir()
    [database_url] = container["env"]
    assert database_url == {
        "name": "USAGE_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "usage-assets", "key": "USAGE_DATABASE_URL"}},
    }


# ---------------------------------------------------------------------------- the image
# No Docker daemon here: the Dockerfile is checked for what the deployment relies on, and the
# files it copies are assembled as in the image to load the code location from them.


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].strip() + " "
            continue
        keyword, _, arguments = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def instruction(name: str) -> list[str]:
    return [arguments for keyword, arguments in dockerfile() if keyword == name]


def image_user() -> int:
    [user] = instruction("USER")
    return int(user.split(":")[0])


def image_workdir() -> str:
    [workdir] = instruction("WORKDIR")
    return workdir


def copied_sources() -> list[tuple[str, str]]:
    """(source in the repository, destination relative to WORKDIR) of every COPY."""
    pairs = []
    for arguments in instruction("COPY"):
        *sources, destination = arguments.split()
        for source in sources:
            target = destination if destination != "./" else source
            pairs.append((source, target.removeprefix("./")))
    return pairs


def test_dockerfile_installs_the_lock_and_serves_the_code_location() -> None:
    [base] = instruction("FROM")
    assert base == "python:3.11-slim"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"

    steps = dockerfile()
    installs = [arguments for keyword, arguments in steps if "pip install" in arguments]
    assert installs == [
        "pip install --no-cache-dir -r requirements.lock",
        "pip install --no-cache-dir --no-deps -e .",
    ], "dependencies come only from requirements.lock"
    position = {arguments: index for index, (_, arguments) in enumerate(steps)}
    assert position["requirements.lock ./"] < position[installs[0]]
    assert position[installs[0]] < position["usage_assets ./usage_assets"] < position[installs[1]]

    # PROJECT_ROOT (the package's parent) is the WORKDIR, with alembic.ini and alembic/ in it.
    destinations = {target for _, target in copied_sources()}
    assert {"usage_assets", "alembic.ini", "alembic", "pyproject.toml", "README.md"} <= destinations
    assert image_workdir() == "/opt/usage_assets"

    assert image_user() != 0
    assert instruction("EXPOSE") == ["4000"]
    assert not instruction("ENTRYPOINT"), "the Helm chart's args must replace CMD"
    [command] = instruction("CMD")
    assert json.loads(command) == [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000",
        "-m", code_location_module(),
    ]  # fmt: skip
    usage = CliRunner().invoke(dagster_cli, ["code-server", "start", "--help"])
    assert usage.exit_code == 0
    for option in ("--host", "--port", "--module-name"):
        assert option in usage.output


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".usage_data", ".env", "**/__pycache__", ".git"):
        assert required in patterns
    excluded = [p for p in patterns if not p.startswith("!")]
    for source, _ in copied_sources():
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in excluded), source


def test_the_images_files_load_the_code_location(tmp_path: Path) -> None:
    """Assemble WORKDIR from exactly what the Dockerfile copies, and load the code location and
    the migrations from it in a fresh interpreter, as `dagster code-server` would."""
    workdir = tmp_path / image_workdir().strip("/")
    workdir.mkdir(parents=True)
    for source, target in copied_sources():
        path = ROOT / source
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(path, workdir / target, ignore=ignore)
        else:
            shutil.copy(path, workdir / target)
    probe = (
        "import json, usage_assets, usage_assets.settings as s\n"
        "import usage_assets.warehouse.database as d\n"
        f"from {code_location_module()} import defs\n"
        "print(json.dumps({'package': usage_assets.__file__, 'root': str(s.PROJECT_ROOT),\n"
        "    'alembic_ini': d.ALEMBIC_INI.is_file(), 'head': d.head_revision(),\n"
        "    'job': defs().resolve_job_def('usage_daily_job').name}))\n"
    )
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("USAGE_", "OPENAI_", "DAGSTER_"))
    }
    environment["PYTHONPATH"] = str(workdir)
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(loaded["package"]).is_relative_to(workdir)
    assert loaded["root"] == str(workdir)
    assert loaded["alembic_ini"] is True
    assert loaded["head"] == head_revision()
    assert loaded["job"] == "usage_daily_job"
