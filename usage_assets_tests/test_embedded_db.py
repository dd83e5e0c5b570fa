"""The embedded PostgreSQL: TCP on loopback, outlives its starter, safe to start concurrently,
and only the user who started it gets in (scram-sha-256 password, no trust, no replication)."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from usage_assets.errors import ConfigurationError
from usage_assets.warehouse import embedded as embedded_db

from . import processes
from .conftest import free_port

#: The system's psql (15), a client independent of the wheel's binaries and of psycopg.
PSQL = "/usr/bin/psql"
#: An OS user other than the one running usage_assets (the tests run as root, as CI does).
OTHER_USER = "nobody"

START_IN_CHILD = (
    "import sys; from pathlib import Path; "
    "from usage_assets.warehouse import embedded as embedded_db; "
    "s = embedded_db.EmbeddedServer(Path(sys.argv[1]), int(sys.argv[2])); "
    "print(embedded_db.ensure_running(s).dsn())"
)


def test_concurrent_first_starts_share_one_server(tmp_path: Path) -> None:
    port = free_port()
    children = [
        processes.spawn(
            [sys.executable, "-c", START_IN_CHILD, str(tmp_path), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    server = embedded_db.EmbeddedServer(tmp_path, port)
    try:
        outputs = [child.communicate(timeout=120) for child in children]
        assert [child.returncode for child in children] == [0, 0, 0], outputs
        assert {out.strip() for out, _ in outputs} == {server.dsn()}
        # Every starter has exited; the server keeps running for the next process.
        assert embedded_db.is_running(server)
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("usage",)
            listen = conn.execute("SHOW listen_addresses").fetchone()
        assert listen == ("127.0.0.1",)
        # A restart keeps the data.
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
        assert embedded_db.stop(server)
        assert not embedded_db.is_running(server)
        embedded_db.ensure_running(server)
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        for child in children:
            processes.stop(child)
        embedded_db.stop(server)
    assert embedded_db.stop(server) is False


def test_port_taken_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ConfigurationError, match="USAGE_EMBEDDED_PG_PORT"):
            embedded_db.ensure_running(embedded_db.EmbeddedServer(tmp_path, port))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[embedded_db.EmbeddedServer]:
    """A fresh embedded server on a free port, stopped even when the test fails."""
    started = embedded_db.EmbeddedServer(tmp_path / "data", free_port())
    try:
        yield embedded_db.ensure_running(started)
    finally:
        embedded_db.stop(started)


def as_other_user() -> dict[str, Any]:
    entry = pwd.getpwnam(OTHER_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def psql(
    server: embedded_db.EmbeddedServer,
    env: dict[str, str],
    **run_as: Any,
) -> subprocess.CompletedProcess[str]:
    """`SELECT current_user` through psql with exactly `env` (no inherited PGPASSWORD etc.)."""
    return subprocess.run(
        [PSQL, "-w", "-X", "-tA", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres",
         "-d", "usage", "-c", "SELECT current_user"],
        env=env, capture_output=True, text=True, timeout=60, check=False, **run_as,
    )  # fmt: skip


def no_password_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which libpq finds no password anywhere."""
    return {"PGPASSFILE": str(tmp_path / "no-pgpass"), "HOME": str(tmp_path)}


def test_only_the_password_gets_in(server: embedded_db.EmbeddedServer, tmp_path: Path) -> None:
    ok = psql(server, {**no_password_env(tmp_path), "PGPASSWORD": server.password()})
    assert (ok.returncode, ok.stdout.strip()) == (0, "postgres"), ok.stderr
    without = psql(server, no_password_env(tmp_path))
    assert without.returncode != 0
    assert "no password supplied" in without.stderr
    wrong = psql(server, {**no_password_env(tmp_path), "PGPASSWORD": "not-the-password"})
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            user="postgres",
            dbname="usage",
            password="",
            passfile=str(tmp_path / "no-pgpass"),
        )


def test_another_os_user_cannot_get_in(server: embedded_db.EmbeddedServer) -> None:
    """The attack of issue 9: any local user was the superuser (and so ran shell commands
    through COPY ... TO PROGRAM). Now it has neither a trusted connection nor the password."""
    attempt = psql(server, {}, **as_other_user())
    assert attempt.returncode != 0
    assert "no password supplied" in attempt.stderr
    steal = subprocess.run(
        ["cat", str(server.password_file)],
        env={}, capture_output=True, text=True, timeout=30, check=False, **as_other_user(),
    )  # fmt: skip
    assert steal.returncode != 0
    assert "Permission denied" in steal.stderr
    assert server.password() not in steal.stdout


def test_files_are_private_and_pg_hba_has_no_trust_or_replication(
    server: embedded_db.EmbeddedServer,
) -> None:
    password_file = server.password_file.stat()
    assert stat.S_IMODE(password_file.st_mode) == 0o600
    assert password_file.st_uid == os.geteuid()
    assert stat.S_IMODE(server.pgdata.stat().st_mode) == 0o700
    rules = [
        line.split()
        for line in (server.pgdata / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert rules == [
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["host", "all", "all", "::1/128", "scram-sha-256"],
    ]
    # Even with the password a physical replication connection (a copy of everything) is refused.
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry for replication"):
        psycopg.connect(server.dsn(), replication="true")
    with psycopg.connect(server.dsn()) as conn:
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        verifier = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'"
        ).fetchone()
    assert verifier is not None and str(verifier[0]).startswith("SCRAM-SHA-256$")


def test_the_password_is_stored_once(server: embedded_db.EmbeddedServer) -> None:
    """initdb's copy of the password is gone; only the 0600 file holds it (the cluster keeps a
    SCRAM verifier, not the password)."""
    secret = server.password().encode()
    holders = [
        path
        for path in server.data_dir.rglob("*")
        if path.is_file() and secret in path.read_bytes()
    ]
    assert holders == [server.password_file]


def postmaster_ids(server: embedded_db.EmbeddedServer) -> dict[str, set[int]]:
    """The running postmaster's Uid, Gid and (supplementary) Groups from /proc."""
    info = embedded_db._running_info(server)
    assert info is not None
    lines = Path(f"/proc/{info.pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines)
    return {name: {int(v) for v in fields[name].split()} for name in ("Uid", "Gid", "Groups")}


def test_server_process_does_not_keep_roots_group(server: embedded_db.EmbeddedServer) -> None:
    ids = postmaster_ids(server)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(embedded_db.SYSTEM_USER_WHEN_ROOT)
        assert ids["Uid"] == {entry.pw_uid}
        assert ids["Gid"] == {entry.pw_gid}
    assert 0 not in ids["Gid"] | ids["Groups"], ids


def start_the_old_way(server: embedded_db.EmbeddedServer) -> None:
    """A quickstart data directory as versions before the password made it: initdb with trust,
    the server started by root keeping root's group, a table with a row."""
    server.pgdata.mkdir(parents=True)
    server.pgdata.chmod(0o700)
    server.log_file.touch()
    embedded_db._prepare_permissions(server)
    bin_path = embedded_db.POSTGRES_BIN_PATH
    for command in (
        [bin_path / "initdb", "-D", server.pgdata, "--auth=trust", "--encoding=UTF8",
         "--locale=C", "-U", "postgres"],
        [bin_path / "pg_ctl", "-D", server.pgdata, "-l", server.log_file, "-w", "-o",
         f"-h 127.0.0.1 -p {server.port} -c unix_socket_directories=''", "start"],
    ):  # fmt: skip
        subprocess.run(
            [str(part) for part in command],
            user=embedded_db._run_as(), capture_output=True, timeout=120, check=True,
        )  # fmt: skip
    trusted = f"postgresql://postgres@127.0.0.1:{server.port}"
    with psycopg.connect(f"{trusted}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE usage")
    with psycopg.connect(f"{trusted}/usage", autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('made before the password')")


@pytest.mark.parametrize("still_running", [True, False], ids=["running", "stopped"])
def test_old_trust_data_directory_is_secured_in_place(tmp_path: Path, still_running: bool) -> None:
    server = embedded_db.EmbeddedServer(tmp_path / "data", free_port())
    try:
        start_the_old_way(server)
        if not still_running:
            embedded_db.stop(server)
        assert not server.password_file.exists()

        embedded_db.ensure_running(server)

        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [
                ("made before the password",)
            ]
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert (server.pgdata / "pg_hba.conf").read_text() == embedded_db.PG_HBA_CONF
        attempt = psql(server, no_password_env(tmp_path))
        assert attempt.returncode != 0
        assert "no password supplied" in attempt.stderr
        # Restarted, not just reloaded: the old server process kept root's group.
        ids = postmaster_ids(server)
        assert 0 not in ids["Gid"] | ids["Groups"], ids
        # The next start finds nothing to upgrade and keeps the password.
        password = server.password()
        embedded_db.ensure_running(server)
        assert server.password() == password
    finally:
        embedded_db.stop(server)


def test_lost_password_file_gets_a_new_password(server: embedded_db.EmbeddedServer) -> None:
    """Deleting the password file is the documented reset: the next start sets a new one."""
    old = server.password()
    server.password_file.unlink()
    embedded_db.ensure_running(server)
    assert server.password() != old
    with psycopg.connect(server.dsn()) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("usage",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.dsn().replace(server.password(), old))
