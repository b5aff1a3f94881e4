"""Set-based vector writes: one UPDATE per batch of rows, whatever the dialect.

Updating rows one statement at a time costs a round trip per row on MySQL (its client folds
INSERTs only) and per-statement work everywhere. Instead, per batch:

- PostgreSQL: ``UPDATE t SET ... FROM unnest($ids, $vectors, $models) AS v WHERE t.id = v.id``,
  the vectors as one array parameter (pgvector's binary codec or ``bytea``).
- SQLite (3.33+): ``UPDATE t SET ... FROM (VALUES (?, ?, ?), ...) AS v WHERE t.id = v.column1``.
- MySQL / MariaDB: ``UPDATE t JOIN (SELECT ? AS id, ? AS vec, ? AS model UNION ALL ...) v``,
  batches bounded by statement size as well (the client inlines values into the text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.repositories.batching import MAX_PARAMETERS, MAX_ROWS, STATEMENT_BYTES

Row = tuple[int, Any, str | None]  # id, encoded vector, embedding model (None keeps the stored)


async def update_vectors(
    connection: AsyncConnection,
    table: str,
    column: str,
    kind: str,
    others: Sequence[str],
    dimension: int,
    rows: Sequence[Row],
) -> None:
    """Write ``rows`` into ``column``, clear ``others``, record dimension and model."""
    dialect = connection.dialect.name
    clear = "".join(f", {other} = NULL" for other in others)
    if dialect == "postgresql":
        await _postgresql(connection, table, column, kind, clear, dimension, rows)
        return
    size = max(1, min(MAX_ROWS, MAX_PARAMETERS // 3))
    if dialect in ("mysql", "mariadb"):
        # Escaped binary may double; every value also costs quotes and separators.
        per_row = 2 * 4 * dimension + 64
        size = max(1, min(size, STATEMENT_BYTES // per_row))
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        params = tuple(value for row in chunk for value in row)
        if dialect == "sqlite":
            values = ", ".join(["(?, ?, ?)"] * len(chunk))
            statement = (
                f"UPDATE {table} SET {column} = v.column2{clear}, "
                f"embedding_dimension = {dimension}, "
                f"embedding_model = COALESCE(v.column3, {table}.embedding_model) "
                f"FROM (VALUES {values}) AS v WHERE {table}.id = v.column1"
            )
        else:
            first = "SELECT %s AS id, %s AS vec, %s AS model"
            union = " UNION ALL ".join([first] + ["SELECT %s, %s, %s"] * (len(chunk) - 1))
            statement = (
                f"UPDATE {table} AS t JOIN ({union}) AS v ON t.id = v.id "
                f"SET t.{column} = v.vec{clear.replace(', ', ', t.')}, "
                f"t.embedding_dimension = {dimension}, "
                "t.embedding_model = COALESCE(v.model, t.embedding_model)"
            )
        await connection.exec_driver_sql(statement, params)


async def _postgresql(
    connection: AsyncConnection,
    table: str,
    column: str,
    kind: str,
    clear: str,
    dimension: int,
    rows: Sequence[Row],
) -> None:
    # ``kind`` is the column's own type as format_type names it (``vector(1536)``, ``bytea``),
    # schema-qualified when its schema is off the search path.
    vectors = [_array_element(value) for _, value, _ in rows]
    statement = (
        f"UPDATE {table} AS t SET {column} = v.vec{clear}, embedding_dimension = {dimension}, "
        "embedding_model = COALESCE(v.model, t.embedding_model) "
        f"FROM unnest($1::bigint[], $2::{kind}[], $3::text[]) AS v(id, vec, model) "
        "WHERE t.id = v.id"
    )
    for start in range(0, len(rows), MAX_ROWS):
        end = start + MAX_ROWS
        ids = [row[0] for row in rows[start:end]]
        models = [row[2] for row in rows[start:end]]
        await connection.exec_driver_sql(statement, (ids, vectors[start:end], models))


def _array_element(value: Any) -> Any:
    """A numpy vector wrapped for pgvector's codec: bare, asyncpg would read it as a sub-array."""
    if isinstance(value, bytes | None):
        return value
    from pgvector import Vector

    return Vector(value)
