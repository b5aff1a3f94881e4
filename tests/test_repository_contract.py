"""The generic repository contract, run against every backend; outcomes checked with plain SQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event

from app.archon_defaults import ARCHON_SETTINGS
from app.bootstrap import DataLayer
from app.domain import CrawledPage, Setting, Source, Task, TaskStatus
from app.errors import ConflictError, DataLayerError, InvalidInputError, NotFoundError
from app.repositories import bulk
from app.repositories.base import SqlAlchemyRepository
from app.repositories.batching import MAX_ROWS
from app.testing import CrawledPageFactory, SettingFactory, SourceFactory, TaskFactory
from tests.support import Sql

# The whole suite also runs behind pgbouncer in transaction mode (supabase mode): see conftest.
pytestmark = pytest.mark.pooler

PAGES = "archon_crawled_pages"


def repo(uow: Any, model: type[Any]) -> SqlAlchemyRepository[Any]:
    """The generic repository alone, whatever the entity-specific ones add on top."""
    cls = type(f"Generic{model.__name__}Repository", (SqlAlchemyRepository,), {"model": model})
    return cls(uow.session)


async def add_source(layer: DataLayer, **fields: Any) -> Source:
    async with layer.uow() as uow:
        source = await repo(uow, Source).add(SourceFactory.build(**fields))
        await uow.commit()
    return source


async def add_pages(layer: DataLayer, source: Source, n: int, **fields: Any) -> list[CrawledPage]:
    async with layer.uow() as uow:
        pages = CrawledPageFactory.build_batch(n, source=source, **fields)
        for number, page in enumerate(pages):
            page.chunk_number = number
        added = await repo(uow, CrawledPage).add_many(pages)
        await uow.commit()
    return added


class TestRepositoryContract:
    async def test_add_sets_the_generated_id_and_writes_the_row(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            page = await repo(uow, CrawledPage).add(CrawledPageFactory.build(source=source))
            assert page.id is not None
            await uow.commit()
        row = await sql.all(f"SELECT url, source_id FROM {PAGES} WHERE id = :id", id=page.id)
        assert [tuple(r) for r in row] == [(page.url, source.source_id)]

    async def test_duplicate_key_in_a_savepoint_leaves_the_unit_of_work_usable(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            with pytest.raises(ConflictError):
                async with uow.savepoint():
                    await repo(uow, Source).add(SourceFactory.build(source_id=source.source_id))
            await repo(uow, Setting).add(SettingFactory.build(key="AFTER_CONFLICT"))
            await uow.commit()
        assert await sql.scalar("SELECT COUNT(*) FROM archon_sources") == 1
        key = "SELECT COUNT(*) FROM archon_settings WHERE {} = 'AFTER_CONFLICT'"
        assert await sql.scalar(key.format(_quote(layer, "key"))) == 1

    async def test_a_failed_write_outside_a_savepoint_needs_a_rollback(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            await repo(uow, Setting).add(SettingFactory.build(key="BEFORE_CONFLICT"))
            with pytest.raises(ConflictError):
                await repo(uow, Source).add(SourceFactory.build(source_id=source.source_id))
            with pytest.raises(DataLayerError, match=r"uow\.savepoint\(\)"):
                await repo(uow, Setting).add(SettingFactory.build(key="AFTER_CONFLICT"))
            with pytest.raises(DataLayerError, match="nothing was committed"):
                await uow.commit()
            # after the rollback the Unit of Work starts over
            await repo(uow, Setting).add(SettingFactory.build(key="AFTER_ROLLBACK"))
            await uow.commit()
        key = _quote(layer, "key")
        written = "('BEFORE_CONFLICT', 'AFTER_CONFLICT', 'AFTER_ROLLBACK')"
        keys = await sql.all(f"SELECT {key} FROM archon_settings WHERE {key} IN {written}")
        assert [r[0] for r in keys] == ["AFTER_ROLLBACK"]

    async def test_missing_parent_is_a_conflict(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            with pytest.raises(ConflictError):
                await repo(uow, CrawledPage).add(CrawledPageFactory.build(source_id="0" * 16))

    async def test_add_many_returns_ids_in_input_order(self, layer: DataLayer, sql: Sql) -> None:
        source = await add_source(layer)
        pages = await add_pages(layer, source, 25)
        assert all(p.id is not None for p in pages)
        assert len({p.id for p in pages}) == 25
        rows = await sql.all(f"SELECT id, url, chunk_number FROM {PAGES}")
        assert {tuple(r) for r in rows} == {(p.id, p.url, p.chunk_number) for p in pages}

    async def test_add_many_entities_are_known_to_the_session(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            pages = await repo(uow, CrawledPage).add_many(
                CrawledPageFactory.build_batch(3, source=source)
            )
            assert await repo(uow, CrawledPage).get(pages[1].id) is pages[1]
            pages[1].content = "changed after add_many"
            await uow.commit()
        async with layer.uow() as uow:
            assert (await repo(uow, CrawledPage).get_or_raise(pages[1].id)).content == (
                "changed after add_many"
            )

    async def test_add_many_is_all_or_nothing_across_batches(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        source = await add_source(layer)
        pages = CrawledPageFactory.build_batch(MAX_ROWS + 20, source=source)
        pages[-1].source_id = "f" * 16  # no such source: the last batch fails
        async with layer.uow() as uow:
            with pytest.raises(ConflictError):
                await repo(uow, CrawledPage).add_many(pages)
            # the Unit of Work is still usable, and commits none of the failed call's rows
            await repo(uow, CrawledPage).add(CrawledPageFactory.build(source=source))
            await uow.commit()
        assert await sql.scalar(f"SELECT COUNT(*) FROM {PAGES}") == 1

    async def test_add_many_without_returning(
        self, layer: DataLayer, sql: Sql, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The path MySQL 8 takes (it has no INSERT ... RETURNING), forced on every backend."""
        monkeypatch.setattr(bulk, "returns_ids", lambda dialect: False)
        source = await add_source(layer)
        pages = await add_pages(layer, source, 5)
        rows = await sql.all(f"SELECT id, url FROM {PAGES}")
        assert {tuple(r) for r in rows} == {(p.id, p.url) for p in pages}

    async def test_returning_is_used_only_where_the_server_has_it(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            dialect = (await uow.session.connection()).dialect
        expected = True
        if dialect.name == "mysql":
            version = tuple(dialect.server_version_info or ())
            expected = bool(getattr(dialect, "is_mariadb", False)) and version >= (10, 5)
        assert bulk.returns_ids(dialect) is expected

    async def test_upsert_sends_one_statement_per_batch(self, layer: DataLayer, sql: Sql) -> None:
        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT"):
                statements.append(statement)

        settings = SettingFactory.build_batch(MAX_ROWS * 2 + 5)
        event.listen(layer.engine.sync_engine, "before_cursor_execute", record)
        try:
            async with layer.uow() as uow:
                assert await repo(uow, Setting).upsert_many(settings, on=["key"]) == len(settings)
                await uow.commit()
        finally:
            event.remove(layer.engine.sync_engine, "before_cursor_execute", record)
        assert len(statements) == 3
        # Beside the settings every migrated database starts with (revision 0006).
        stored = len(settings) + len(ARCHON_SETTINGS)
        assert await sql.scalar("SELECT COUNT(*) FROM archon_settings") == stored

    async def test_add_many_of_client_keyed_rows(self, layer: DataLayer, sql: Sql) -> None:
        tasks = TaskFactory.build_batch(5)
        async with layer.uow() as uow:
            added = await repo(uow, Task).add_many(tasks)
            await uow.commit()
        assert added == tasks
        assert await sql.scalar("SELECT COUNT(*) FROM archon_tasks") == 5

    async def test_enum_strings_are_normalized(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            task = await repo(uow, Task).add(TaskFactory.build(status="doing"))
            assert task.status is TaskStatus.DOING
            await uow.commit()
        async with layer.uow() as uow:
            assert (await repo(uow, Task).get_or_raise(task.id)).status is TaskStatus.DOING

    async def test_get_get_or_raise_and_get_many(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        pages = await add_pages(layer, source, 4)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            assert await pages_repo.get(-1) is None
            with pytest.raises(NotFoundError, match=r"CrawledPage.*-1"):
                await pages_repo.get_or_raise(-1)
            wanted = [pages[2].id, -5, pages[0].id, pages[3].id]
            assert [p.id for p in await pages_repo.get_many(wanted)] == [
                pages[2].id,
                pages[0].id,
                pages[3].id,
            ]
            assert await repo(uow, Source).get(source.source_id) is not None
            with pytest.raises(InvalidInputError):
                await repo(uow, Task).get("not-a-uuid")

    async def test_list_filters_orders_and_slices(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        pages = await add_pages(layer, source, 10)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            by_chunk = await pages_repo.list(order_by=["-chunk_number"])
            assert [p.chunk_number for p in by_chunk] == sorted(
                (p.chunk_number for p in pages), reverse=True
            )
            sliced = await pages_repo.list(order_by=["chunk_number"], limit=3, offset=2)
            assert [p.id for p in sliced] == [p.id for p in sorted(pages, key=_chunk)][2:5]
            few = await pages_repo.list({"chunk_number": {"lt": pages[3].chunk_number}})
            assert {p.id for p in few} == {p.id for p in pages[:3]}
            with pytest.raises(InvalidInputError, match="no_such_column"):
                await pages_repo.list(order_by=["no_such_column"])

    async def test_list_breaks_ties_by_primary_key(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        pages = await add_pages(layer, source, 6, embedding_dimension=768)
        async with layer.uow() as uow:
            listed = await repo(uow, CrawledPage).list(order_by=["embedding_dimension"])
            assert [p.id for p in listed] == sorted(p.id for p in pages)

    async def test_count(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        await add_pages(layer, source, 7)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            assert await pages_repo.count() == 7
            assert await pages_repo.count({"source_id": source.source_id}) == 7
            assert await pages_repo.count({"source_id": "nope"}) == 0

    async def test_update_by_attribute_or_column_name(self, layer: DataLayer, sql: Sql) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            updated = await repo(uow, Source).update(
                source.source_id, {"title": "Renamed", "metadata": {"tags": ["new"]}}
            )
            assert updated.title == "Renamed" and updated.metadata_ == {"tags": ["new"]}
            assert updated.updated_at > source.updated_at
            await repo(uow, Source).update(source.source_id, {"metadata_": {"v": 2}})
            await uow.commit()
        rows = await sql.all("SELECT title FROM archon_sources")
        assert [r[0] for r in rows] == ["Renamed"]
        async with layer.uow() as uow:
            assert (await repo(uow, Source).get_or_raise(source.source_id)).metadata_ == {"v": 2}

    async def test_update_refuses_bad_input_and_missing_rows(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            sources = repo(uow, Source)
            with pytest.raises(NotFoundError, match="Source"):
                await sources.update("0" * 16, {"title": "x"})
            with pytest.raises(InvalidInputError, match="total_word_count"):
                await sources.update(source.source_id, {"total_word_count": 2**31})
            with pytest.raises(InvalidInputError, match="nope"):
                await sources.update(source.source_id, {"nope": 1})
            with pytest.raises(InvalidInputError, match="primary key"):
                await sources.update(source.source_id, {"source_id": "1" * 16})

    async def test_upsert_inserts_then_updates(self, layer: DataLayer, sql: Sql) -> None:
        source = await add_source(layer)
        first = CrawledPageFactory.build_batch(3, source=source)
        async with layer.uow() as uow:
            written = await repo(uow, CrawledPage).upsert_many(first, on=["url", "chunk_number"])
            await uow.commit()
        assert written == 3
        again = [
            CrawledPageFactory.build(url=p.url, chunk_number=p.chunk_number, source=source)
            for p in first[:2]
        ]
        for page in again:
            page.content = f"rewritten {page.url}"
        extra = CrawledPageFactory.build(source=source)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            assert await pages_repo.upsert_many([*again, extra], on=["url", "chunk_number"]) == 3
            await uow.commit()
        rows = dict(tuple(r) for r in await sql.all(f"SELECT url, content FROM {PAGES}"))
        assert len(rows) == 4
        assert rows[first[0].url] == f"rewritten {first[0].url}"
        assert rows[first[2].url] == first[2].content
        assert rows[extra.url] == extra.content

    async def test_upsert_last_duplicate_wins_and_empty_update_keeps_rows(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        settings = [SettingFactory.build(key="K", value=v) for v in ("one", "two")]
        async with layer.uow() as uow:
            assert await repo(uow, Setting).upsert_many(settings, on=["key"]) == 1
            keep = [SettingFactory.build(key="K", value="ignored")]
            assert await repo(uow, Setting).upsert_many(keep, on=["key"], update=[]) == 1
            await uow.commit()
        query = f"SELECT value FROM archon_settings WHERE {_quote(layer, 'key')} = 'K'"
        assert [tuple(r) for r in await sql.all(query)] == [("two",)]

    async def test_upsert_refreshes_entities_already_loaded(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            loaded = await repo(uow, Source).get_or_raise(source.source_id)
            fresh = SourceFactory.build(source_id=source.source_id, title="Upserted")
            await repo(uow, Source).upsert_many([fresh], on=["source_id"])
            assert loaded.title == "Upserted"

    async def test_upsert_needs_a_unique_key(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            with pytest.raises(InvalidInputError, match="unique key"):
                await repo(uow, CrawledPage).upsert_many([CrawledPageFactory.build()], on=["url"])
            with pytest.raises(InvalidInputError):
                await repo(uow, CrawledPage).upsert_many([], on="url")  # type: ignore[arg-type]

    async def test_delete_and_delete_where(self, layer: DataLayer, sql: Sql) -> None:
        source = await add_source(layer)
        pages = await add_pages(layer, source, 6)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            loaded = await pages_repo.get_or_raise(pages[0].id)
            assert await pages_repo.delete(loaded.id) is True
            assert await pages_repo.delete(loaded.id) is False
            assert await pages_repo.get(loaded.id) is None
            cut = pages[3].chunk_number
            loaded_all = await pages_repo.list()
            assert await pages_repo.delete_where({"chunk_number": {"gte": cut}}) == 3
            # entities of deleted rows left the session; the others stay
            assert await pages_repo.get(pages[4].id) is None
            assert await pages_repo.get(pages[1].id) is loaded_all[0]
            for empty in (None, {}):
                with pytest.raises(InvalidInputError, match="delete_all"):
                    await pages_repo.delete_where(empty)  # type: ignore[arg-type]
            await uow.commit()
        assert await sql.scalar(f"SELECT COUNT(*) FROM {PAGES}") == 2
        async with layer.uow() as uow:
            assert await repo(uow, CrawledPage).delete_all() == 2
            await uow.commit()
        assert await sql.scalar(f"SELECT COUNT(*) FROM {PAGES}") == 0


class TestKeysetPaging:
    async def test_pages_cover_every_row_once_while_rows_are_inserted(
        self, layer: DataLayer
    ) -> None:
        source = await add_source(layer)
        # NULLs in an order column, ties, and mixed directions
        dims = [None, 384, 768, None, 1536]
        existing = await add_pages(layer, source, 23)
        async with layer.uow() as uow:
            for i, page in enumerate(existing):
                await repo(uow, CrawledPage).update(
                    page.id, {"embedding_dimension": dims[i % len(dims)]}
                )
            await uow.commit()
        seen: list[int] = []
        cursor: str | None = None
        order = ["embedding_dimension", "-url"]
        for round_ in range(100):
            async with layer.uow(read_only=True) as uow:
                page = await repo(uow, CrawledPage).page(order_by=order, limit=4, after=cursor)
                seen += [p.id for p in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
            # someone else inserts rows that sort before, among and after the ones seen
            await add_pages(layer, source, 2, embedding_dimension=dims[round_ % len(dims)])
        assert len(seen) == len(set(seen))
        assert {p.id for p in existing} <= set(seen)

    async def test_page_order_matches_list_order(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        await add_pages(layer, source, 9)
        order = ["-chunk_number"]
        async with layer.uow(read_only=True) as uow:
            pages_repo = repo(uow, CrawledPage)
            listed = [p.id for p in await pages_repo.list(order_by=order)]
            paged: list[int] = []
            cursor = None
            while True:
                page = await pages_repo.page(order_by=order, limit=2, after=cursor)
                paged += [p.id for p in page.items]
                if (cursor := page.next_cursor) is None:
                    break
        assert paged == listed

    async def test_cursor_belongs_to_its_ordering(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        await add_pages(layer, source, 3)
        async with layer.uow(read_only=True) as uow:
            pages_repo = repo(uow, CrawledPage)
            first = await pages_repo.page(order_by=["url"], limit=1)
            assert first.next_cursor is not None
            with pytest.raises(InvalidInputError, match="ordering"):
                await pages_repo.page(order_by=["-url"], after=first.next_cursor)
            with pytest.raises(InvalidInputError, match="cursor"):
                await pages_repo.page(after="not a cursor!")
            with pytest.raises(InvalidInputError):
                await pages_repo.page(limit=0)

    async def test_paging_by_datetime_and_uuid(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            tasks = await repo(uow, Task).add_many(TaskFactory.build_batch(7))
            await uow.commit()
        seen: list[uuid.UUID] = []
        cursor = None
        async with layer.uow(read_only=True) as uow:
            while True:
                page = await repo(uow, Task).page(order_by=["-created_at"], limit=3, after=cursor)
                seen += [t.id for t in page.items]
                if (cursor := page.next_cursor) is None:
                    break
        assert sorted(seen) == sorted(t.id for t in tasks)


def _chunk(page: CrawledPage) -> tuple[int, int]:
    return (page.chunk_number, page.id or 0)


def _quote(layer: DataLayer, name: str) -> str:
    return f"`{name}`" if layer.dialect_name == "mysql" else f'"{name}"'
