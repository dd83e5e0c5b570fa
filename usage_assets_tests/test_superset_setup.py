"""The Superset setup's own rules, without Superset: the read-only login it makes, and what it
refuses (test_superset.py drives the whole setup and the dashboard in a browser)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from usage_assets.bi import superset
from usage_assets.errors import ConfigurationError

from .conftest import libpq
from .test_superset_bundle import bundle


def _server(database_url: str) -> str:
    return libpq(make_url(database_url).set(database="postgres").render_as_string(False))


@pytest.fixture
def role(database_url: str) -> Iterator[str]:
    """A role name of this test's own, dropped afterwards (roles belong to the server)."""
    name = f"usage_superset_test_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(_server(database_url), autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_the_login_reads_every_view_and_writes_nothing(
    engine: Engine, database_url: str, role: str
) -> None:
    url = superset.ensure_readonly_login(database_url, role, "first-password")
    assert make_url(url).username == role
    # Again with another password (a lost password file): the same role, the new password.
    url = superset.ensure_readonly_login(database_url, role, "second-password")
    with psycopg.connect(url, autocommit=True) as conn:
        # Every view a dataset of the dashboard reads.
        views = {dataset.view for dataset in bundle().datasets.values()}
        assert {"v_cost_allocation_daily", "v_cost_allocation_project_daily"} <= views
        for view in sorted(views):
            conn.execute(f"SELECT * FROM openai_usage.{view} LIMIT 1").fetchall()
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM openai_usage.budgets")
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM openai_usage.budgets")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(make_url(url).set(password="first-password").render_as_string(False))


def test_an_owner_who_may_not_create_roles_is_told_what_to_do(
    engine: Engine, database_url: str, role: str
) -> None:
    with psycopg.connect(_server(database_url), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'weak-owner'")
    weak_owner = make_url(database_url).set(username=role, password="weak-owner")
    with pytest.raises(ConfigurationError, match=superset.URL_VARIABLE) as raised:
        superset.ensure_readonly_login(
            weak_owner.render_as_string(False), f"{role}_login", "password"
        )
    assert "weak-owner" not in str(raised.value)


def test_role_names_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(superset.ROLE_VARIABLE, 'x"; DROP ROLE postgres; --')
    with pytest.raises(ConfigurationError, match=superset.ROLE_VARIABLE):
        superset.login_role()
    monkeypatch.setenv(superset.ROLE_VARIABLE, "bi_reader")
    assert superset.login_role() == "bi_reader"
    monkeypatch.delenv(superset.ROLE_VARIABLE)
    assert superset.login_role() == superset.DEFAULT_ROLE


def test_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "superset" / "admin.password"
    first = superset._secret(path)
    assert len(first) >= 20 and superset._secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["admin.password"]  # no draft left


def test_serve_refuses_before_setup(tmp_path: Path) -> None:
    with pytest.raises(superset.SupersetError, match="setup"):
        superset.serve(data_dir=tmp_path)
