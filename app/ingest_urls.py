"""The URLs one ingest replaces: whether another source owns them, and deleting their chunks.

A URL's chunks belong to one source (``archon_crawled_pages`` is unique on ``(url, chunk_number)``
across sources), so ingesting a URL that another source holds would silently move it: ingest
refuses that unless asked to move it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInputError, translate_errors
from app.repositories.audit import record
from app.repositories.state import note_changed
from app.vector.sql.common import ENTITIES

IN_CHUNK = 500


async def refuse_other_owners(
    session: AsyncSession, collection: str, urls: list[str], source_id: str
) -> None:
    """``InvalidInputError`` naming the owner when another source holds chunks of ``urls``."""
    table = ENTITIES[collection].__table__
    for start in range(0, len(urls), IN_CHUNK):
        owned = table.c.url.in_(urls[start : start + IN_CHUNK]) & (table.c.source_id != source_id)
        query = sa.select(table.c.url, table.c.source_id).where(owned).limit(1)
        with translate_errors("checking who owns the crawled URLs"):
            found = (await session.execute(query)).first()
        if found is not None:
            raise InvalidInputError(
                f"{found.url} belongs to source {found.source_id!r}, not {source_id!r}: "
                f"pass move=True (archon-db ingest --move) to move it, or delete that source "
                f"first (archon-db sources delete {found.source_id})"
            )


async def delete_urls(session: AsyncSession, collection: str, urls: list[str]) -> int:
    """Delete the stored chunks of ``urls``; how many went. Their vectors go with the rows; an
    external store drops its copies through the deletes the database queues."""
    if not urls:
        return 0
    table = ENTITIES[collection].__table__
    removed = 0
    for start in range(0, len(urls), IN_CHUNK):
        where = table.c.url.in_(urls[start : start + IN_CHUNK])
        with translate_errors("replacing the chunks of the crawled URLs"):
            result = await session.execute(sa.delete(table).where(where))
        removed += int(result.rowcount)  # type: ignore[attr-defined]
    if removed:
        note_changed(session, table.name)
        record(session, table.name, "delete", count=removed)
    return removed
