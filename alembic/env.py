"""Alembic environment for the `openai_usage` schema.

Only objects in `openai_usage` are compared, and the version table lives there under its own
name, so the app's migrations never collide with Dagster's (which owns `public.alembic_version`
when both share a database).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, text

from usage_assets.warehouse.database import engine_for, resolve_url
from usage_assets.warehouse.models import SCHEMA, VERSION_TABLE, Base
from usage_assets.warehouse.partitions import is_partition_name

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name == SCHEMA
    if type_ == "table" and name is not None:
        # The month partitions are made by the app (`warehouse.partitions`), not the models.
        return not is_partition_name(name)
    return True


def run_migrations_online() -> None:
    given = config.attributes.get("connection")  # usage_assets.database.migrate() passes one
    if given is not None:
        _run(given)
        return
    url = config.attributes.get("database_url") or resolve_url()
    with engine_for(url).connect() as connection:
        _run(connection)


def _run(connection: Connection) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=include_name,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("usage_assets migrations run online only: `alembic upgrade head`.")
run_migrations_online()
