"""The Superset dashboard over the usage database: `make superset` runs `setup`, then `serve`.

    python -m usage_assets.bi.superset setup
    python -m usage_assets.bi.superset serve [--host 127.0.0.1] [--port 8088]

Superset runs in its own virtual environment, `.superset-venv` (deploy/superset/requirements.txt,
`make superset-install`), because its pins differ from Dagster's; this module only runs its
programs, it never imports Superset (and the Dagster code location never imports this module).

`setup`, idempotent (run it again after pulling a new dashboard):

1. the usage database: the embedded PostgreSQL is started and migrated, as `make dev` does (or
   USAGE_DATABASE_URL's server is migrated);
2. a LOGIN role `usage_superset` (SUPERSET_USAGE_ROLE names another), a member of the NOLOGIN
   role `usage_readonly` that the migrations create (SELECT on every table and view of
   `openai_usage`), with `default_transaction_read_only`, and a generated password kept in
   `$USAGE_DATA_DIR/superset/usage_superset.password` (0600). With SUPERSET_USAGE_DATABASE_URL
   set (a read-only login you made on your own PostgreSQL), steps 1 and 2 are skipped and that
   URL is used as it is;
3. deploy/superset/provision.py, in one Superset process: Superset's metadata database (SQLite
   in `$USAGE_DATA_DIR/superset/`) upgraded and its roles synced (`superset db upgrade`,
   `superset init`; again only when the Superset pins changed), the user `admin` with the
   generated password in `$USAGE_DATA_DIR/superset/admin.password`, the connection "usage" as
   `usage_superset`, and the dashboard bundle deploy/superset/dashboard imported over what an
   earlier run imported.

Superset's own output goes to `$USAGE_DATA_DIR/superset/setup.log`; a failing step shows its
end. `serve` runs Superset's web server (gunicorn) in the foreground until interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from usage_assets import settings
from usage_assets.errors import ConfigurationError, UsageAssetsError
from usage_assets.warehouse.database import migrate, resolve_url, safe_url

VENV = settings.PROJECT_ROOT / ".superset-venv"
DEPLOY = settings.PROJECT_ROOT / "deploy" / "superset"
REQUIREMENTS = DEPLOY / "requirements.txt"
CONFIG = DEPLOY / "superset_config.py"
BUNDLE = DEPLOY / "dashboard"
PROVISION = DEPLOY / "provision.py"
#: The login Superset connects as (SUPERSET_USAGE_ROLE changes it), and the role (made by
#: migration 0002) that it is a member of.
DEFAULT_ROLE = "usage_superset"
ROLE_VARIABLE = "SUPERSET_USAGE_ROLE"
READONLY_ROLE = "usage_readonly"
ADMIN = "admin"
#: The dashboard's address below the server root (its slug, in dashboards/*.yaml).
DASHBOARD_PATH = "/superset/dashboard/openai-usage/"
#: A read-only login's URL for Superset to use instead of the one setup makes.
URL_VARIABLE = "SUPERSET_USAGE_DATABASE_URL"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8088
#: Each Superset command of setup; `superset db upgrade` on a fresh SQLite takes ~30 s.
STEP_TIMEOUT_SECONDS = 900


class SupersetError(UsageAssetsError):
    """A Superset command failed, or Superset is not installed or set up."""


def login_role() -> str:
    """SUPERSET_USAGE_ROLE, or usage_superset: the read-only login setup makes (roles are
    per server, so two data directories on one server each need their own)."""
    role = os.environ.get(ROLE_VARIABLE, "").strip() or DEFAULT_ROLE
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ConfigurationError(
            f"{ROLE_VARIABLE}={role!r} is not a role name (lower-case letters, digits, _)"
        )
    return role


def superset_dir(data_dir: Path | None = None) -> Path:
    """Where Superset keeps its state: `$USAGE_DATA_DIR/superset` (superset_config.py agrees)."""
    return (data_dir or settings.data_dir()) / "superset"


def admin_password_file(data_dir: Path | None = None) -> Path:
    return superset_dir(data_dir) / "admin.password"


def role_password_file(role: str, data_dir: Path | None = None) -> Path:
    return superset_dir(data_dir) / f"{role}.password"


def _secret(path: Path) -> str:
    """The secret in `path`, generated on first use (mode 0600, published whole by link())."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(18) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # made by a concurrent setup: use that one
        finally:
            draft.unlink()
    value = path.read_text().strip()
    if not value:
        raise ConfigurationError(f"{path} is empty; delete it and run setup again")
    return value


def _venv_program(name: str) -> Path:
    program = VENV / "bin" / name
    if not program.exists():
        raise SupersetError(
            f"{program} is missing: install Superset's virtual environment first "
            "(`make superset-install`, or `make superset`, which does it)."
        )
    return program


def superset_environment(data_dir: Path | None = None) -> dict[str, str]:
    """The environment of Superset's programs: our config, our data directory."""
    data = data_dir or settings.data_dir()
    env = {name: value for name, value in os.environ.items() if name != URL_VARIABLE}
    env |= {
        "SUPERSET_CONFIG_PATH": str(CONFIG),
        "SUPERSET_HOME": str(superset_dir(data)),
        # superset_config.py finds its data directory here; absolute, so cwd does not matter.
        "USAGE_DATA_DIR": str(data),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_readonly_login(owner_url: str, role_name: str, password: str) -> str:
    """Create (or update) the LOGIN role `role_name` in READONLY_ROLE; return its libpq URL.

    `owner_url` must be allowed to create roles (the embedded server's superuser is). The role
    is read-only twice over: it has only usage_readonly's SELECT grants, and every transaction
    it opens is READ ONLY by default."""
    role = sql.Identifier(role_name)
    try:
        with psycopg.connect(_libpq(owner_url), autocommit=True, connect_timeout=10) as conn:
            roles = {
                name
                for (name,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                    [[role_name, READONLY_ROLE]],
                ).fetchall()
            }
            if READONLY_ROLE not in roles:
                raise ConfigurationError(
                    f"{safe_url(owner_url)} has no role {READONLY_ROLE}: the migrations create it "
                    "(`usage-db migrate`) unless their user may not create roles (README "
                    f'"BI tools"). Create it, or set {URL_VARIABLE} to a read-only login.'
                )
            with conn.transaction():
                if role_name not in roles:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
                conn.execute(
                    sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password))
                )
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READONLY_ROLE), role))
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role)
                )
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigurationError(
            f"{safe_url(owner_url)} may not create or alter the role {role_name}. Create a "
            "read-only login yourself (CREATE ROLE superset LOGIN PASSWORD '…' IN ROLE "
            f"{READONLY_ROLE}) and set {URL_VARIABLE} to its URL."
        ) from None
    readonly = make_url(owner_url).set(
        drivername="postgresql", username=role_name, password=password
    )
    return readonly.render_as_string(hide_password=False)


def _database_for_superset(data_dir: Path) -> str:
    """The read-only URL Superset gets: SUPERSET_USAGE_DATABASE_URL, or the login made here on
    the migrated usage database (embedded, or USAGE_DATABASE_URL)."""
    explicit = os.environ.get(URL_VARIABLE, "").strip()
    if explicit:
        parsed = make_url(explicit)
        if parsed.get_backend_name() not in ("postgresql", "postgres"):
            raise ConfigurationError(f"{URL_VARIABLE} must be a PostgreSQL URL (postgresql://…)")
        print(f"superset: connecting as {URL_VARIABLE}: {safe_url(explicit)}")
        return explicit
    owner = resolve_url()  # starts the embedded server if that is the database
    migrate(owner)
    print(f"superset: usage database migrated: {safe_url(owner)}")
    role = login_role()
    readonly = ensure_readonly_login(owner, role, _secret(role_password_file(role, data_dir)))
    print(f"superset: read-only login {role} (in {READONLY_ROLE}): {safe_url(readonly)}")
    return readonly


def _run(step: str, command: Sequence[str | Path], env: dict[str, str], log: Path) -> None:
    """Run one Superset step, its output appended to `log`; fail with the log's end."""
    started = time.monotonic()
    with open(log, "a") as output:
        output.write(f"\n===== {step}: {' '.join(map(str, command))}\n")
        output.flush()
        try:
            done = subprocess.run(
                [str(part) for part in command],
                cwd=settings.PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=STEP_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SupersetError(
                f"{step} did not finish in {STEP_TIMEOUT_SECONDS} s; see {log}"
            ) from None
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SupersetError(f"{step} failed (exit {done.returncode}); {log} ends:\n{tail}")
    print(f"superset: {step} ({time.monotonic() - started:.0f} s)")


def _metadata_stamp() -> str:
    """What Superset's metadata database was last upgraded for: its pins and our config."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + CONFIG.read_bytes())
    return digest.hexdigest()


def setup(data_dir: Path | None = None) -> None:
    """Everything `serve` needs; see the module's docstring."""
    data = data_dir or settings.data_dir()
    python = _venv_program("python")
    state = superset_dir(data)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = state / "setup.log"
    database_url = _database_for_superset(data)
    _secret(admin_password_file(data))
    env = superset_environment(data)

    # Superset's metadata migrations and `superset init` again only when its pins (or our
    # config) changed: they are most of a first setup's minute.
    stamp = state / ".metadata-upgraded"
    current = _metadata_stamp()
    upgrade = not (state / "superset.db").exists() or (
        not stamp.exists() or stamp.read_text().strip() != current
    )
    provision: list[str | Path] = [
        python, PROVISION,
        "--bundle", BUNDLE,
        "--admin-password-file", admin_password_file(data),
    ]  # fmt: skip
    if upgrade:
        provision.append("--upgrade-metadata")
    step = "metadata, admin user, dashboard import" if upgrade else "admin user, dashboard import"
    _run(step, provision, env | {URL_VARIABLE: database_url}, log)
    if upgrade:
        stamp.write_text(current + "\n")
    print(
        f"superset: ready. Log in as {ADMIN!r}, password in {admin_password_file(data)}; "
        f"the dashboard is {DASHBOARD_PATH}"
    )


def serve_command(host: str, port: int) -> list[str]:
    """Superset's web server (gunicorn, threads in one worker: a local dashboard)."""
    return [
        str(_venv_program("gunicorn")),
        "--bind", f"{host}:{port}",
        "--workers", "1",
        "--worker-class", "gthread",
        "--threads", "8",
        # Charts on a loaded machine: a slow query must not get the worker killed.
        "--timeout", "120",
        "--graceful-timeout", "10",
        # Superset's URLs carry chart form data (its docs: no request-line limit).
        "--limit-request-line", "0",
        "--limit-request-field_size", "0",
        "superset.app:create_app()",
    ]  # fmt: skip


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data_dir: Path | None = None) -> None:
    """Run Superset in the foreground (this process becomes gunicorn)."""
    data = data_dir or settings.data_dir()
    if not (superset_dir(data) / "superset.db").exists() or not admin_password_file(data).exists():
        raise SupersetError(
            f"Superset is not set up in {superset_dir(data)}: run "
            "`python -m usage_assets.bi.superset setup` (or `make superset`) first."
        )
    if not os.environ.get(URL_VARIABLE, "").strip():
        resolve_url()  # the embedded server may have been stopped since setup
    command = serve_command(host, port)
    print(
        f"superset: serving http://{host}:{port}{DASHBOARD_PATH} (log in as {ADMIN!r}, password "
        f"in {admin_password_file(data)}); Ctrl-C stops it",
        flush=True,
    )
    os.execve(command[0], command, superset_environment(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m usage_assets.bi.superset",
        description="The Superset dashboard over the usage database (README "
        '"A dashboard in Superset").',
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "setup", help="read-only login, Superset's metadata, admin user, dashboard import"
    )
    serve_parser = commands.add_parser("serve", help="run Superset's web server")
    serve_parser.add_argument("--host", default=DEFAULT_HOST)
    serve_parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            setup()
        else:
            serve(args.host, args.port)
    except UsageAssetsError as error:
        print(f"superset: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
