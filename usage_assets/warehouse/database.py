"""Connecting to the usage database and keeping its schema at the Alembic head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from usage_assets import settings
from usage_assets.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    PayloadError,
    SchemaNotReadyError,
)
from usage_assets.warehouse import embedded as embedded_db
from usage_assets.warehouse.models import SCHEMA, VERSION_TABLE

ALEMBIC_INI = settings.PROJECT_ROOT / "alembic.ini"
#: Seconds a connection attempt may take (libpq `connect_timeout`; a URL's own wins): an
#: unreachable host fails in seconds instead of the operating system's minutes.
CONNECT_TIMEOUT_SECONDS = 10


def normalize_url(url: str) -> str:
    """Accept the usual PostgreSQL URL spellings and pin the psycopg (v3) driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "USAGE_DATABASE_URL is not a database URL; expected "
            "postgresql://user:password@host:5432/dbname"
        ) from None
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigurationError(
        f"USAGE_DATABASE_URL uses {parsed.drivername!r}; usage_assets needs PostgreSQL "
        "(postgresql://…)."
    )


def safe_url(url: str) -> str:
    """The URL with its password masked, for logs and metadata."""
    return make_url(url).render_as_string(hide_password=True)


def resolve_url(explicit: str | None = None) -> str:
    """USAGE_DATABASE_URL (or `explicit`), else the embedded server, started if needed."""
    url = explicit or settings.database_url()
    if url:
        return normalize_url(url)
    return embedded_db.ensure_running().url()


@cache
def engine_for(url: str) -> Engine:
    """One pooled engine per URL and process: two connections kept, and room for the cost
    SQL's USAGE_COST_WORKERS more at once (`day_chunks`) beside what the caller holds."""
    connect_args = (
        {}
        if "connect_timeout" in make_url(url).query
        else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    )
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=settings.cost_workers(),
        connect_args=connect_args,
    )


@contextmanager
def unreachable_database_fails_clearly(engine: Engine, source: str) -> Iterator[None]:
    """Wrap the first connection of a run: a connection that fails becomes a
    DatabaseUnavailableError naming `source` (the variable) and host:port, never the
    password."""
    try:
        yield
    except sqlalchemy.exc.OperationalError as exc:
        url = engine.url
        reason = " ".join(str(exc.orig or exc).split()).rstrip(".")
        if url.password:
            reason = reason.replace(str(url.password), "***")
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        raise DatabaseUnavailableError(
            f"Cannot connect to the usage database at {where} ({source}: "
            f"{url.render_as_string(hide_password=True)}): {reason}"
            f"{'' if reason.endswith(('?', '!')) else '.'} Check that the server "
            f"runs and accepts connections there, and the URL's user and password."
        ) from None


def alembic_config(url: str) -> Config:
    if not ALEMBIC_INI.exists():
        raise ConfigurationError(
            f"{ALEMBIC_INI} is missing: usage_assets runs from its repository (or a copy of it "
            "that includes alembic.ini and alembic/)."
        )
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(Path(ALEMBIC_INI).parent / "alembic"))
    config.attributes["database_url"] = url
    return config


#: pg_advisory_lock key serializing migrations from concurrent runs ("usage_as" in ASCII).
MIGRATION_LOCK_KEY = 0x75736167655F6173


def migrate(url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` against `url`, one process at a time."""
    config = alembic_config(url)
    config.attributes["configure_logger"] = False
    with engine_for(url).connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "version_table_schema": SCHEMA}
        )
        return context.get_current_revision()


def prepare_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Bring the schema to head (auto_migrate) or fail clearly if it is not there."""
    if current_revision(engine) == head_revision():
        return
    if auto_migrate:
        migrate(engine.url.render_as_string(hide_password=False))
    ensure_schema_current(engine)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql+psycopg://")).get_current_head()


def ensure_schema_current(engine: Engine) -> None:
    """Fail before any fetch if the database is not migrated to the code's revision."""
    current = current_revision(engine)
    expected = head_revision()
    if current != expected:
        raise SchemaNotReadyError(
            f"The usage database ({engine.url.render_as_string(hide_password=True)}) is at "
            f"migration {current or 'none'}, this code needs {expected}. "
            "Run `usage-db migrate` (or `alembic upgrade head` from the repository root)."
        )


@contextmanager
def refused_values_fail_as_payload(what: str) -> Iterator[None]:
    """Wrap a write transaction: a value PostgreSQL refuses (a number out of range, a character
    it cannot store, ...) becomes a PayloadError naming `what`, after the rollback.

    A safety net behind the payload validation, which should have refused the value already:
    the raw psycopg error names neither the day nor the table, and it is not worth a retry.
    """
    try:
        yield
    except UnicodeEncodeError as exc:  # a lone surrogate: psycopg cannot even send it
        raise PayloadError(
            f"A value of {what} is not valid Unicode text ({exc.reason}: "
            f"{exc.object[exc.start : exc.end]!r}); nothing of it was written"
        ) from exc
    except (psycopg.DataError, sqlalchemy.exc.DataError) as exc:
        error = exc.orig if isinstance(exc, sqlalchemy.exc.DataError) else exc
        detail = str(error).strip()
        if isinstance(error, psycopg.Error):
            diag = error.diag
            detail = (
                "; ".join(
                    part
                    for part in (diag.message_primary, diag.message_detail, diag.context)
                    if part
                )
                or detail
            )
        raise PayloadError(
            f"PostgreSQL refused a value of {what}; nothing of it was written: "
            f"{type(error).__name__}: {detail}"
        ) from exc
