"""The code location loads, reads its configuration from the environment, and hides secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from usage_assets import settings
from usage_assets.errors import ConfigurationError


def load_definitions(monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """Load the code location as Dagster does: the `@dg.definitions` function reads the
    settings now (no module reads them at import, so nothing needs importing afresh)."""
    del monkeypatch  # the environment the caller set up is what the load reads
    from usage_assets.definitions import defs

    return defs()


def test_importing_the_code_location_reads_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad variable fails the load, not the import: importing every module of the package
    with a broken environment succeeds, and the load then names the variable."""
    monkeypatch.setenv("USAGE_START_DATE", "not-a-date")
    monkeypatch.setenv("USAGE_SCHEDULE_CRON", "every day")
    monkeypatch.setenv("USAGE_STEP_RETRIES", "many")
    code = (
        "import pkgutil, importlib, usage_assets\n"
        "for m in pkgutil.walk_packages(usage_assets.__path__, 'usage_assets.'):\n"
        "    importlib.import_module(m.name)\n"
        "from usage_assets.definitions import defs\n"
        "try:\n"
        "    defs()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "ConfigurationError" in result.stdout
    for name in ("USAGE_START_DATE", "USAGE_SCHEDULE_CRON", "USAGE_STEP_RETRIES"):
        assert name in result.stdout, result.stdout


def test_definitions_load_with_daily_utc_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_START_DATE", "2025-03-01")
    defs: dg.Definitions = load_definitions(monkeypatch)
    defs.validate_loadable(defs)
    asset = defs.resolve_assets_def("completions_usage_hourly")
    partitions = asset.partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.timezone == "UTC"
    assert partitions.get_first_partition_key() == "2025-03-01"
    spec = asset.specs_by_key[dg.AssetKey("completions_usage_hourly")]
    assert spec.kinds == {"openai", "postgres"}
    assert spec.owners == ["team:finops"]
    assert spec.metadata["dagster/table_name"] == "openai_usage.completions_usage_hourly"
    assert asset.op.pool == "openai_admin_api"


def test_secrets_are_bound_as_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-admin-NEVERSHOWN0123456789"
    monkeypatch.setenv("OPENAI_ADMIN_KEY", key)
    monkeypatch.setenv("USAGE_DATABASE_URL", "postgresql://u:hunter2secret@db.example:5432/usage")
    defs: dg.Definitions = load_definitions(monkeypatch)
    resources = defs.resources
    assert resources is not None
    admin = resources["openai_admin"]
    assert isinstance(admin.admin_key, dg.EnvVar)  # type: ignore[attr-defined]
    assert key not in repr(resources)
    assert "hunter2secret" not in repr(resources)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("USAGE_START_DATE", "2024-13-01", "USAGE_START_DATE"),
        ("USAGE_START_DATE", "2999-01-01", "in the future"),
        ("OPENAI_BASE_URL", "api.openai.com/v1", "OPENAI_BASE_URL"),
        ("USAGE_EMBEDDED_PG_PORT", "port", "USAGE_EMBEDDED_PG_PORT"),
        ("USAGE_AUTO_MIGRATE", "maybe", "USAGE_AUTO_MIGRATE"),
        ("USAGE_REVISION_TOLERANCE", "2", "USAGE_REVISION_TOLERANCE"),
    ],
)
def test_bad_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        load_definitions(monkeypatch)
        settings.embedded_port()


def test_database_url_must_be_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    from usage_assets.warehouse.database import normalize_url

    assert normalize_url("postgres://a:b@h/d") == "postgresql+psycopg://a:b@h/d"
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        normalize_url("sqlite:///usage.db")
    with pytest.raises(ConfigurationError, match="not a database URL"):
        normalize_url("not a url")


def test_dg_check_defs() -> None:
    """The same check a user runs: the code location loads, without warnings we could avoid."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_every_table_asset_describes_every_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI's Columns tab: every asset that is a table of ours (kind postgres) names it and
    has its column schema, a column per table column with the model's comment as description."""
    from usage_assets.warehouse.models import Base

    defs: dg.Definitions = load_definitions(monkeypatch)
    tables = {table.fullname: table for table in Base.metadata.tables.values()}
    described = set()
    for asset in defs.resolve_all_asset_specs():
        if "postgres" not in asset.kinds:
            continue
        key = asset.key.to_user_string()
        name = asset.metadata.get("dagster/table_name")
        assert name in tables, (key, name)
        schema = asset.metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema), key
        table = tables[name]
        assert [c.name for c in schema.columns] == [c.name for c in table.columns], key
        for schema_column, column in zip(schema.columns, table.columns, strict=True):
            assert schema_column.description, (key, column.name)
            assert schema_column.description == column.comment, (key, column.name)
        described.add(name)
    # Every table is an asset but the price snapshot (written by the cost assets), the loads'
    # bookkeeping (written by the usage assets, each day in its own transaction) and the daily
    # rollups (rebuilt inside project_daily_costs' and usage_daily_costs' transactions, which
    # price from them).
    not_assets = {
        "completions_usage_daily",
        "unit_usage_daily",
        "model_prices",
        "model_aliases",
        "unit_prices",
        "usage_loads",
        "usage_day_revisions",
    }
    assert described == set(tables) - {f"openai_usage.{name}" for name in not_assets}
