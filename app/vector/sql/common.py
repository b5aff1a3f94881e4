"""SQL helpers shared by the SQL-backed indexes, search and ingestion.

Archon keeps a chunk's vector in the ``embedding_<dim>`` column of the chunk's own row, the column
chosen from the vector's length. Here: naming and finding those columns, checking vectors in bulk,
compiling filters over the chunk tables (their own columns and ``metadata.<key>`` paths), and
what PostgreSQL's ``vector`` extension offers. The adapters' shared base is ``sql_index``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import CodeExample, CrawledPage
from app.errors import InvalidInputError, translate_errors
from app.repositories.driver import held_connection
from app.vector.port import RecordId, float32_matrix

# The lengths Archon's schema ships columns for; any other gets its own column on demand.
ARCHON_DIMENSIONS = (384, 768, 1024, 1536, 3072)
MAX_ROW_ID = 2**63 - 1  # bigint
MAX_DIMENSION = 16_000  # pgvector's limit for ``vector``; far beyond any embedding model
ENTITIES: dict[str, Any] = {"crawled_pages": CrawledPage, "code_examples": CodeExample}
ENTITIES_BY_TABLE: dict[str, Any] = {e.__tablename__: e for e in ENTITIES.values()}
HIT_FIELDS = ("source_id", "url", "chunk_number", "embedding_model", "metadata")
_EMBEDDING = re.compile(r"^embedding_([0-9]+)$")


def dialect_name(session: AsyncSession) -> str:
    """``postgresql``, ``mysql`` or ``sqlite``: the dialect the session talks to."""
    return session.get_bind().dialect.name


def embedding_column(dimension: int) -> str:
    """``embedding_<dimension>``, after checking the dimension is a sane positive int."""
    if isinstance(dimension, bool) or not isinstance(dimension, int):
        raise InvalidInputError(f"a vector dimension is an integer, got {dimension!r}")
    if not 1 <= dimension <= MAX_DIMENSION:
        raise InvalidInputError(f"vector dimension must be in 1..{MAX_DIMENSION}, got {dimension}")
    return f"embedding_{dimension}"


def add_dimension_hint(dimension: int) -> str:
    return f"`archon-db vectors add-dimension {dimension}`"


def as_matrix(vectors: Sequence[Sequence[float]], dimension: int) -> np.ndarray:
    """Vectors as one float32 matrix, all checked at once (numbers, length, NaN/infinity, zero
    norm)."""
    matrix = float32_matrix(vectors, dimension)
    if (~matrix.any(axis=1)).any():
        raise InvalidInputError("an all-zero vector has no direction: cosine is undefined")
    return matrix


def row_ids(ids: Sequence[RecordId]) -> list[int]:
    """Record ids as the integer row ids of Archon's chunk tables."""
    out = []
    for raw in ids:
        try:
            if isinstance(raw, bool | float):
                raise TypeError(raw)
            value = int(raw)
        except (TypeError, ValueError):
            raise InvalidInputError(f"vector ids are the rows' integer ids, got {raw!r}") from None
        if not 1 <= value <= MAX_ROW_ID:
            raise InvalidInputError(f"a row id is in 1..{MAX_ROW_ID}, got {value}")
        out.append(value)
    return out


async def table_columns(session: AsyncSession, table: str) -> dict[str, str]:
    """The columns the database's ``table`` has: name -> SQL type name (lower case); empty when
    the table does not exist."""
    dialect = dialect_name(session)
    if dialect == "postgresql":
        query = (
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped"
        )
    elif dialect in ("mysql", "mariadb"):
        query = (
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = :t"
        )
    else:
        query = "SELECT name, type FROM pragma_table_info(:t)"
    with translate_errors(f"reading the columns of {table}"):
        rows = (await session.execute(sa.text(query), {"t": table})).all()
    return {str(name): str(kind).lower() for name, kind in rows}


async def embedding_columns(session: AsyncSession, table: str) -> dict[int, str]:
    """Each ``embedding_<dim>`` column of ``table``: dimension -> SQL type name (lower case)."""
    found = {}
    for name, type_name in (await table_columns(session, table)).items():
        match = _EMBEDDING.match(name)
        if match:
            found[int(match.group(1))] = type_name
    return found


def permission_denied(exc: BaseException) -> bool:
    """Whether a DDL statement failed for want of rights (not for any other reason)."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    args = getattr(orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    text = str(orig).lower()
    return (
        code == "42501"
        or errno in (1142, 1044, 1227)
        or "must be owner" in text
        or "permission denied" in text
        or "readonly database" in text
    )


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (PostgreSQL schema names)."""
    return '"' + name.replace('"', '""') + '"'


def has_vector(columns: Sequence[str]) -> Any:
    """``embedding_a IS NOT NULL OR embedding_b IS NOT NULL ...``"""
    return sa.or_(*(sa.literal_column(c).is_not(None) for c in columns))


def sql_filter(
    collection: str, filters: Mapping[str, Any] | None, embedding_model: str | None = None
) -> Any:
    """The condition for ``filters`` (and the embedding-model restriction) on the collection."""
    from app.repositories.sql_filters import compile_filters

    entity = ENTITIES[collection]
    clauses = []
    compiled = compile_filters(filters, entity) if filters else None
    if compiled is not None:
        clauses.append(compiled)
    if embedding_model is not None:
        clauses.append(entity.__table__.c.embedding_model == embedding_model)
    return sa.and_(sa.true(), *clauses)


async def pgvector_extension(session: AsyncSession) -> tuple[str, tuple[int, ...]] | None:
    """(schema, version) of the ``vector`` extension in this database, or None."""
    if dialect_name(session) != "postgresql":
        return None
    query = sa.text(
        "SELECT n.nspname, e.extversion FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
    )
    with translate_errors("looking for the vector extension"):
        row = (await session.execute(query)).first()
    if row is None:
        return None
    version = tuple(int(p) for p in re.findall(r"\d+", str(row[1]))[:3])
    return str(row[0]), version


async def register_pgvector(session: AsyncSession, schema: str) -> None:
    """Give this session's asyncpg connection pgvector's binary codecs (once per connection)."""
    _, raw = await held_connection(session)
    await pgvector_codecs(raw, schema)


async def pgvector_codecs(raw: Any, schema: str) -> None:
    """pgvector's binary codecs on the pooled connection ``raw`` (once per connection)."""
    if raw.info.get("archon_pgvector_codec"):
        return
    from pgvector.asyncpg import register_vector

    await register_vector(raw.driver_connection, schema=schema)
    raw.info["archon_pgvector_codec"] = True
