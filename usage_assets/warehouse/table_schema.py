"""Dagster column schemas derived from the SQLAlchemy tables, so the UI and the DB agree."""

from __future__ import annotations

import dagster as dg
from sqlalchemy import FromClause


def column_schema(table: FromClause) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=str(column.type).lower(),
                description=column.comment,
                constraints=dg.TableColumnConstraints(nullable=bool(column.nullable)),
            )
            for column in table.columns
        ]
    )
