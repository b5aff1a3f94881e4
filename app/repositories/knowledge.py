"""Knowledge-base repositories: sources, crawled pages, code examples and page metadata."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from app.domain import CodeExample, CrawledPage, PageMetadata, Source
from app.errors import InvalidInputError, translate_errors
from app.repositories.audit import record
from app.repositories.base import SqlAlchemyRepository
from app.repositories.ports import SourceSummary
from app.repositories.state import note_changed
from app.repositories.validation import columns_of

T = TypeVar("T")
V = TypeVar("V")
# Values per IN list: far below every driver's bound-parameter limit (SQLite's was 999).
IN_CHUNK = 500


def chunked(values: Iterable[V], size: int = IN_CHUNK) -> Iterator[list[V]]:
    """``values`` in lists of at most ``size``."""
    batch: list[V] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def distinct_values(name: str, values: Iterable[Any]) -> list[Any]:
    """The distinct ``values`` in input order; a bare string is refused, not split into letters."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(f"{name} must be a list, got {type(values).__name__}")
    return list(dict.fromkeys(values))


def _count_per_source(model: type[Any]) -> sa.Subquery:
    source_id = model.__table__.c.source_id
    return sa.select(source_id, sa.func.count().label("n")).group_by(source_id).subquery()


class SqlAlchemySourceRepository(SqlAlchemyRepository[Source]):
    """``SourceRepository`` over SQLAlchemy."""

    model = Source

    async def delete_with_content(self, source_id: str) -> int:
        """Delete the source and its content, children first; the number of rows removed."""
        await self.get_or_raise(source_id)
        key = self._pk_value(source_id)
        removed = 0
        # Explicitly, children first: old Archon databases have no ON DELETE CASCADE. Pages go
        # before page metadata, which they reference. ORM-enabled deletes, so that instances
        # this session loaded leave it too.
        counts: list[tuple[str, int]] = []
        async with self._atomic("deleting with its content"):
            for model in (CodeExample, CrawledPage, PageMetadata, Source):
                table = columns_of(model).table
                stmt = sa.delete(model).where(table.c.source_id == key)
                result = await self.session.execute(stmt)
                counts.append((table.name, int(result.rowcount)))  # type: ignore[attr-defined]
                removed += counts[-1][1]
        for name, count in counts:
            if count:
                ids = [key] if name == self.table.name else None
                record(self.session, name, "delete", ids, count=count)
        note_changed(self.session, self.table.name)
        return removed

    async def list_with_counts(
        self,
        filters: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[SourceSummary]:
        """Sources with their page and code-example counts, in one query."""
        pages, code = _count_per_source(CrawledPage), _count_per_source(CodeExample)
        source_id = self.table.c.source_id
        stmt = (
            sa.select(Source, sa.func.coalesce(pages.c.n, 0), sa.func.coalesce(code.c.n, 0))
            .outerjoin(pages, pages.c.source_id == source_id)
            .outerjoin(code, code.c.source_id == source_id)
            .order_by(*self._order(order_by))
        )
        where = self._where(filters)
        if where is not None:
            stmt = stmt.where(where)
        if limit is not None:
            stmt = stmt.limit(_non_negative("limit", limit))
        if offset:
            stmt = stmt.offset(_non_negative("offset", offset))
        with translate_errors("listing sources with counts"):
            rows = (await self.session.execute(stmt)).all()
        return [
            SourceSummary(source, int(n_pages), int(n_code)) for source, n_pages, n_code in rows
        ]

    async def touch(self, source_id: str) -> None:
        """Set ``updated_at`` to now (``update`` stamps it)."""
        await self.update(source_id, {})


class _ChunkRepository(SqlAlchemyRepository[T]):
    """What crawled pages and code examples share: chunks keyed by (url, chunk_number)."""

    async def delete_by_urls(self, urls: Iterable[str]) -> int:
        """Delete every chunk of ``urls``, in chunked IN lists, all or nothing; rows removed."""
        wanted = distinct_values("urls", urls)
        removed = 0
        async with self._atomic("deleting by url"):
            for batch in chunked(wanted):
                removed += await self.delete_where({"url": {"in": batch}})
        return removed

    async def list_by_source(
        self, source_id: str, *, limit: int | None = None, offset: int | None = None
    ) -> builtins.list[T]:
        """The chunks of one source by (url, chunk_number)."""
        return await self.list(
            {"source_id": source_id},
            order_by=["url", "chunk_number"],
            limit=limit,
            offset=offset,
        )

    async def get_by_url_chunk(self, url: str, chunk_number: int) -> T | None:
        """The chunk at (url, chunk_number), or None."""
        rows = await self.list({"url": url, "chunk_number": chunk_number}, limit=1)
        return rows[0] if rows else None

    async def count_by_source(self, source_ids: Iterable[str]) -> dict[str, int]:
        """Chunks per source, one grouped query per chunk of ids; absent sources count 0."""
        wanted = distinct_values("source_ids", source_ids)
        counts = dict.fromkeys(wanted, 0)
        column = self.table.c.source_id
        with translate_errors(f"counting {self._name} per source"):
            for batch in chunked(wanted):
                stmt = sa.select(column, sa.func.count()).group_by(column)
                where = self._where({"source_id": {"in": batch}})
                if where is not None:
                    stmt = stmt.where(where)
                for source_id, n in (await self.session.execute(stmt)).all():
                    counts[source_id] = int(n)
        return counts

    async def count_urls_by_source(self, source_ids: Iterable[str]) -> dict[str, int]:
        """Distinct URLs (documents) per source; absent sources count 0."""
        wanted = distinct_values("source_ids", source_ids)
        counts = dict.fromkeys(wanted, 0)
        source_id, url = self.table.c.source_id, self.table.c.url
        with translate_errors(f"counting {self._name} URLs per source"):
            for batch in chunked(wanted):
                stmt = (
                    sa.select(source_id, sa.func.count(sa.distinct(url)))
                    .where(source_id.in_(batch))
                    .group_by(source_id)
                )
                for key, n in (await self.session.execute(stmt)).all():
                    counts[key] = int(n)
        return counts


class SqlAlchemyCrawledPageRepository(_ChunkRepository[CrawledPage]):
    """``CrawledPageRepository`` over SQLAlchemy."""

    model = CrawledPage


class SqlAlchemyCodeExampleRepository(_ChunkRepository[CodeExample]):
    """``CodeExampleRepository`` over SQLAlchemy."""

    model = CodeExample


class SqlAlchemyPageMetadataRepository(SqlAlchemyRepository[PageMetadata]):
    """``PageMetadataRepository`` over SQLAlchemy."""

    model = PageMetadata

    async def get_by_url(self, url: str) -> PageMetadata | None:
        """The page with this URL, or None."""
        rows = await self.list({"url": url}, limit=1)
        return rows[0] if rows else None

    async def list_by_source(self, source_id: str) -> builtins.list[PageMetadata]:
        """The pages of one source by (section_order, url)."""
        return await self.list({"source_id": source_id}, order_by=["section_order", "url"])


def _non_negative(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**63 - 1:
        raise InvalidInputError(f"{name} must be an integer in 0..2**63-1, got {value!r}")
    return value
