"""Provision Superset for the usage_assets dashboard; run by Superset's own Python.

    SUPERSET_CONFIG_PATH=deploy/superset/superset_config.py \\
    SUPERSET_USAGE_DATABASE_URL=postgresql://usage_superset:...@127.0.0.1:54329/usage \\
        .superset-venv/bin/python deploy/superset/provision.py \\
        --bundle deploy/superset/dashboard --admin-password-file .usage_data/superset/admin.password

usage_assets/bi/superset.py (`make superset`) runs it in Superset's virtual environment
(.superset-venv): Superset's pins differ from Dagster's, so nothing here imports usage_assets,
and usage_assets never imports Superset. One process does it all: Superset takes 10-15 s to
import and create its app, which three commands would pay three times.

0. With --upgrade-metadata: what `superset db upgrade` and then `superset init` do (Superset's
   metadata migrations; its roles and permissions).
1. The admin user `admin` exists, with the Admin role and the password in --admin-password-file
   (reset to it on every run, so the file is always the way in).
2. The export bundle in --bundle (metadata.yaml, databases/, datasets/, charts/, dashboards/) is
   zipped in memory and imported as the admin with ImportAssetsCommand, which overwrites what an
   earlier run imported (matched by uuid). The database's URI in the bundle is a placeholder:
   it becomes SUPERSET_USAGE_DATABASE_URL (the read-only login), given in the environment, never
   on a command line.
3. The connection is tried as Superset will use it: every dataset's view answers a query.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

ADMIN = "admin"
DATABASE_FILE = "databases/usage.yaml"
#: Under this folder in the zip, as Superset's own exports are (the importer drops it).
ZIP_ROOT = "usage_assets_dashboard"


def _database_uri() -> str:
    """SUPERSET_USAGE_DATABASE_URL with Superset's driver for PostgreSQL (psycopg2)."""
    from sqlalchemy.engine.url import make_url

    value = os.environ.get("SUPERSET_USAGE_DATABASE_URL", "").strip()
    if not value:
        raise SystemExit("provision.py: SUPERSET_USAGE_DATABASE_URL is not set")
    url = make_url(value)
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise SystemExit("provision.py: SUPERSET_USAGE_DATABASE_URL must be a PostgreSQL URL")
    return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def bundle_contents(bundle: Path, database_uri: str) -> dict[str, str]:
    """The bundle as the importer reads an uploaded zip, the database's URI filled in."""
    from superset.commands.importers.v1.utils import get_contents_from_bundle

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(bundle.rglob("*.yaml")):
            archive.write(path, f"{ZIP_ROOT}/{path.relative_to(bundle).as_posix()}")
    with zipfile.ZipFile(buffer) as archive:
        contents = get_contents_from_bundle(archive)
    if DATABASE_FILE not in contents or "metadata.yaml" not in contents:
        raise SystemExit(f"provision.py: {bundle} lacks metadata.yaml or {DATABASE_FILE}")
    database: dict[str, Any] = yaml.safe_load(contents[DATABASE_FILE])
    database["sqlalchemy_uri"] = database_uri
    contents[DATABASE_FILE] = yaml.safe_dump(database)
    return contents


def upgrade_metadata() -> None:
    """`superset db upgrade`, then `superset init`, in this process."""
    from flask_migrate import upgrade
    from superset import appbuilder, db, security_manager

    started = time.monotonic()
    upgrade()  # Flask-Migrate, over Superset's migrations (what `superset db upgrade` runs)
    print(f"provision.py: metadata database upgraded ({time.monotonic() - started:.0f} s)")
    started = time.monotonic()
    appbuilder.add_permissions(update_perms=True)
    security_manager.sync_role_definitions()
    db.session.commit()
    print(f"provision.py: roles and permissions synced ({time.monotonic() - started:.0f} s)")


def ensure_admin(password: str) -> Any:
    from superset import db, security_manager

    role = security_manager.find_role("Admin")
    if role is None:
        raise SystemExit("provision.py: no Admin role; run `superset init` first")
    user = security_manager.find_user(username=ADMIN)
    if user is None:
        user = security_manager.add_user(
            ADMIN, "Superset", "Admin", "admin@localhost", role, password=password
        )
        if not user:
            raise SystemExit("provision.py: could not create the admin user (see the log)")
        print(f"provision.py: created the Superset user {ADMIN!r}")
    else:
        security_manager.reset_password(user.id, password)
        if role not in user.roles:
            user.roles.append(role)
        user.active = True
        db.session.commit()
    return user


def import_bundle(contents: dict[str, str], user: Any) -> None:
    from superset.commands.exceptions import CommandInvalidError
    from superset.commands.importers.v1.assets import ImportAssetsCommand
    from superset.utils.core import override_user

    with override_user(user):
        try:
            ImportAssetsCommand(contents).run()
        except CommandInvalidError as error:
            messages = error.normalized_messages()
            raise SystemExit(f"provision.py: the bundle does not import: {messages}") from None


def check_datasets(contents: dict[str, str]) -> None:
    """Each dataset's view answers through the imported connection (the read-only login)."""
    from sqlalchemy import text
    from superset import db
    from superset.models.core import Database

    uuid = yaml.safe_load(contents[DATABASE_FILE])["uuid"]
    database = db.session.query(Database).filter_by(uuid=uuid).one()
    with database.get_sqla_engine() as engine, engine.connect() as connection:
        for name, content in sorted(contents.items()):
            if name.startswith("datasets/"):
                dataset = yaml.safe_load(content)
                table = f'"{dataset["schema"]}"."{dataset["table_name"]}"'
                connection.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).fetchall()
    print(f"provision.py: {database.database_name!r} reads every dataset's view")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--admin-password-file", type=Path, required=True)
    parser.add_argument(
        "--upgrade-metadata",
        action="store_true",
        help="first do what `superset db upgrade` and `superset init` do",
    )
    args = parser.parse_args(argv)
    password = args.admin_password_file.read_text().strip()
    if not password:
        raise SystemExit(f"provision.py: {args.admin_password_file} is empty")
    database_uri = _database_uri()

    from superset.app import create_app

    app = create_app()
    with app.app_context():
        if args.upgrade_metadata:
            upgrade_metadata()
        started = time.monotonic()
        contents = bundle_contents(args.bundle, database_uri)
        user = ensure_admin(password)
        import_bundle(contents, user)
        check_datasets(contents)
        print(f"provision.py: admin user and dashboard ({time.monotonic() - started:.0f} s)")
    print(f"provision.py: imported {args.bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
