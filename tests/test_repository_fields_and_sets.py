"""The repository contract, continued: projections (``fields=``), ``update_where``, ``count_by``
and ``upsert_many(returning=True)``, on every backend; outcomes checked with plain SQL and the
statements sent checked with SQLAlchemy's ``before_cursor_execute`` event."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from app.bootstrap import DataLayer
from app.domain import (
    CrawledPage,
    PageMetadata,
    Project,
    ProjectSource,
    Setting,
    Source,
    Task,
    TaskPriority,
    TaskStatus,
)
from app.errors import ConflictError, DataLayerError, InvalidInputError
from app.repositories import bulk
from app.repositories.batching import MAX_ROWS
from app.repositories.projection import Projection
from app.testing import (
    CrawledPageFactory,
    PageMetadataFactory,
    ProjectFactory,
    SettingFactory,
    SourceFactory,
    TaskFactory,
    save,
)
from tests.support import Sql
from tests.test_repository_contract import add_pages, add_source, repo

pytestmark = pytest.mark.pooler

PAGES = "archon_crawled_pages"
# The columns a listing must never read unless asked: chunk text, whole pages, JSON documents.
LARGE = {
    CrawledPage: ("content", "metadata"),
    PageMetadata: ("full_content", "metadata"),
    Project: ("docs", "features", "data", "description"),
}


@contextmanager
def statements(layer: DataLayer) -> Iterator[list[str]]:
    """The data statements the layer sends meanwhile (a listener also turns the driver path
    off, so every statement passes through SQLAlchemy and is seen here)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "INSERT"):
            seen.append(statement)

    engines = {e.sync_engine for e in (layer.engine, *layer.read_engines)}
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", record)


def selects(statement: str, column: str) -> bool:
    """Whether ``statement`` names ``column`` (as a whole word, quoted or not)."""
    return re.search(rf"(?<![\w]){re.escape(column)}(?![\w])", statement) is not None


def quoted(layer: DataLayer, name: str) -> str:
    return f"`{name}`" if layer.dialect_name == "mysql" else f'"{name}"'


# -- projections --------------------------------------------------------------------------------


class TestProjection:
    async def test_list_fields_returns_typed_values_equal_to_the_entities(
        self, layer: DataLayer
    ) -> None:
        source = await add_source(layer)
        await add_pages(layer, source, 5, embedding_dimension=768)
        fields = ["id", "url", "chunk_number", "source_id", "created_at", "embedding_dimension"]
        async with layer.uow(read_only=True) as uow:
            full = await repo(uow, CrawledPage).list(order_by=["chunk_number"])
        async with layer.uow(read_only=True) as uow:  # the driver path, where the backend has one
            rows = await repo(uow, CrawledPage).list(order_by=["chunk_number"], fields=fields)
        assert [r.model_dump() for r in rows] == [
            {f: getattr(page, f) for f in fields} for page in full
        ]
        assert all(isinstance(r, Projection) and r.entity is CrawledPage for r in rows)
        assert type(rows[0]).fields == tuple(fields)
        assert isinstance(rows[0].created_at, datetime) and rows[0].created_at.tzinfo is not None
        with pytest.raises(AttributeError, match="'content' was not selected"):
            _ = rows[0].content
        assert not hasattr(rows[0], "metadata_") and not hasattr(rows[0], "no_such_field")
        with pytest.raises(ValueError, match="frozen"):
            rows[0].url = "changed"  # type: ignore[misc]

    async def test_listing_never_reads_the_large_columns(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            await save(uow, *PageMetadataFactory.build_batch(2, source=source))
            await save(uow, *ProjectFactory.build_batch(2))
            await uow.commit()
        await add_pages(layer, source, 2)
        for model, fields in (
            (CrawledPage, ["id", "url", "chunk_number", "source_id"]),
            (PageMetadata, ["id", "url", "section_title", "word_count"]),
            (Project, ["id", "title", "pinned", "github_repo"]),
        ):
            async with layer.uow(read_only=True) as uow:
                with statements(layer) as seen:
                    listed = await repo(uow, model).list(fields=fields, limit=10)
                    one = await repo(uow, model).get(listed[0].id, fields=fields)
            assert len(listed) == 2 and one == listed[0]
            assert len(seen) == 2
            for statement in seen:
                assert all(selects(statement, f) for f in fields if f != "id"), statement
                for large in LARGE[model]:
                    assert not selects(statement, large), (large, statement)
                assert not re.search(r"embedding_\d", statement), statement

    async def test_fields_take_column_or_attribute_names_and_json(self, layer: DataLayer) -> None:
        source = await add_source(layer, metadata_={"knowledge_type": "technical"})
        async with layer.uow() as uow:
            (row,) = await repo(uow, Source).list(fields=["metadata", "title"])
            assert row.metadata_ == {"knowledge_type": "technical"} and row.title == source.title
            (same,) = await repo(uow, Source).list(fields=["metadata_", "title"])
            assert same == row

    async def test_enum_and_uuid_fields_are_typed(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            project = await repo(uow, Project).add(ProjectFactory.build())
            task = await repo(uow, Task).add(
                TaskFactory.build(project_id=project.id, status="doing", priority="high")
            )
            await uow.commit()
        async with layer.uow() as uow:
            (row,) = await repo(uow, Task).list(fields=["project_id", "status", "priority"])
            assert row.project_id == project.id and isinstance(row.project_id, uuid.UUID)
            assert row.status is TaskStatus.DOING and row.priority is TaskPriority.HIGH
            got = await repo(uow, Task).get(task.id, fields=["status"])
            assert got is not None and got.status is TaskStatus.DOING
            assert await repo(uow, Task).get(uuid.uuid4(), fields=["status"]) is None

    async def test_filters_order_and_slices_apply_as_for_entities(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        pages = await add_pages(layer, source, 8)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            query: dict[str, Any] = {
                "filters": {"chunk_number": {"gte": 2}},
                "order_by": ["-chunk_number"],
                "limit": 3,
                "offset": 1,
            }
            full = await pages_repo.list(**query)
            some = await pages_repo.list(**query, fields=["id"])
            assert [r.id for r in some] == [p.id for p in full]
            assert [p.chunk_number for p in full] == [6, 5, 4]
            assert {p.id for p in pages} >= {r.id for r in some}

    async def test_get_fields_of_an_entity_the_unit_of_work_holds_sends_no_sql(
        self, layer: DataLayer
    ) -> None:
        source = await add_source(layer)
        async with layer.uow() as uow:
            held = await repo(uow, Source).get_or_raise(source.source_id)
            held.title = "changed in this Unit of Work"
            with statements(layer) as seen:
                row = await repo(uow, Source).get(source.source_id, fields=["title"])
            assert row is not None and row.title == "changed in this Unit of Work"
            assert seen == []

    async def test_bad_fields_are_refused_before_any_sql(self, layer: DataLayer) -> None:
        cases: list[tuple[Any, str]] = [
            ([], "selects nothing"),
            ("url", "list of column names"),
            (["url", "no_such_field"], "no_such_field"),
            (["url", "url"], "'url' twice"),
            (["metadata", "metadata_"], "'metadata_' twice"),
            ([3], "column names"),
            (["embedding_1536"], "embedding_1536"),
        ]
        async with layer.uow() as uow:
            with statements(layer) as seen:
                for fields, message in cases:
                    with pytest.raises(InvalidInputError, match=message):
                        await repo(uow, CrawledPage).list(fields=fields)
                    with pytest.raises(InvalidInputError, match=message):
                        await repo(uow, CrawledPage).get(1, fields=fields)
            assert seen == []


# -- update_where -------------------------------------------------------------------------------


class TestUpdateWhere:
    async def test_updates_the_matching_rows_in_one_statement_and_stamps_updated_at(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        sources = [await add_source(layer, title=f"t{n}") for n in range(3)]
        wanted = [sources[0].source_id, sources[1].source_id]
        async with layer.uow() as uow:
            with statements(layer) as seen:
                n = await repo(uow, Source).update_where(
                    {"source_id": {"in": wanted}}, {"title": "Renamed", "metadata": {"v": 2}}
                )
            await uow.commit()
        assert n == 2
        assert len(seen) == 1 and seen[0].lstrip().upper().startswith("UPDATE")
        rows = await sql.all("SELECT source_id, title, updated_at FROM archon_sources")
        by_id = {r[0]: r for r in rows}
        for source in sources:
            renamed = source.source_id in wanted
            assert by_id[source.source_id][1] == ("Renamed" if renamed else source.title)
            stamped = _aware(by_id[source.source_id][2]) > source.updated_at
            assert stamped is renamed
        async with layer.uow() as uow:
            got = await repo(uow, Source).get_or_raise(wanted[0])
            assert got.metadata_ == {"v": 2}

    async def test_counts_matched_rows_even_when_nothing_changes(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        """MySQL reports changed rows unless the connection asks for found rows: the count is
        the rows matched on every backend."""
        source = await add_source(layer)
        await add_pages(layer, source, 4)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            filters = {"source_id": source.source_id}
            assert await pages_repo.update_where(filters, {"content": "same"}) == 4
            assert await pages_repo.update_where(filters, {"content": "same"}) == 4
            none = {"chunk_number": {"gt": 99}}
            assert await pages_repo.update_where(none, {"content": "x"}) == 0
            await uow.commit()
        assert await sql.scalar(f"SELECT COUNT(*) FROM {PAGES} WHERE content = 'same'") == 4

    async def test_enum_strings_and_json_values_are_stored_typed(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        async with layer.uow() as uow:
            project = await repo(uow, Project).add(ProjectFactory.build())
            tasks = TaskFactory.build_batch(3, project_id=project.id, status="todo")
            await repo(uow, Task).add_many(tasks)
            await uow.commit()
        before = max(t.updated_at for t in tasks)
        async with layer.uow() as uow:
            n = await uow.tasks.update_where(
                {"project_id": project.id, "task_order": {"gte": tasks[1].task_order}},
                {"status": "doing", "sources": [{"url": "https://x.dev", "n": 1}]},
            )
            await uow.commit()
        assert n == 2
        async with layer.uow() as uow:
            changed = await uow.tasks.list({"status": "doing"}, order_by=["task_order"])
        assert [t.id for t in changed] == [t.id for t in tasks[1:]]
        assert all(t.status is TaskStatus.DOING for t in changed)
        assert all(t.sources == [{"url": "https://x.dev", "n": 1}] for t in changed)
        assert all(t.updated_at > before for t in changed)  # the trigger's table, stamped too
        assert await sql.scalar("SELECT COUNT(*) FROM archon_tasks WHERE status = 'doing'") == 2

    async def test_entities_the_unit_of_work_holds_get_the_values(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        pages = await add_pages(layer, source, 3)
        async with layer.uow() as uow:
            pages_repo = repo(uow, CrawledPage)
            held = await pages_repo.list(order_by=["chunk_number"])
            cut = pages[1].chunk_number
            await pages_repo.update_where({"chunk_number": {"gte": cut}}, {"llm_chat_model": "m"})
            assert [p.llm_chat_model for p in held] == [pages[0].llm_chat_model, "m", "m"]
            assert held[1] in uow.session and not uow.session.is_modified(held[1])

    async def test_update_all(self, layer: DataLayer, sql: Sql) -> None:
        source = await add_source(layer)
        await add_pages(layer, source, 3)
        async with layer.uow() as uow:
            assert await repo(uow, CrawledPage).update_all({"embedding_model": "e5"}) == 3
            await uow.commit()
        assert await sql.scalar(f"SELECT COUNT(*) FROM {PAGES} WHERE embedding_model = 'e5'") == 3

    async def test_bad_input_is_refused_before_any_sql(self, layer: DataLayer) -> None:
        cases: list[tuple[type[Any], Any, Any, str]] = [
            (Source, {"title": "x"}, {"nope": 1}, "nope"),
            (Source, {"nope": "x"}, {"title": "y"}, "nope"),
            (Source, {"title": "x"}, {"source_id": "y"}, "primary key"),
            (Source, {"title": "x"}, {"total_word_count": 2**31}, "total_word_count"),
            (Source, None, {"title": "y"}, "update_all"),
            (Source, {}, {"title": "y"}, "update_all"),
            (Task, {"title": "x"}, {"status": "nope"}, "status"),
            (Task, {"title": "x"}, {"updated_at": datetime(2024, 1, 1)}, "updated_at"),
            (CrawledPage, {"url": "x"}, {}, "needs values"),
            (CrawledPage, {"url": "x"}, {"content": None}, "content cannot be set to NULL"),
        ]
        async with layer.uow() as uow:
            with statements(layer) as seen:
                for model, filters, values, message in cases:
                    with pytest.raises(InvalidInputError, match=message):
                        await repo(uow, model).update_where(filters, values)
            assert seen == []

    async def test_updated_at_given_is_kept_where_no_trigger_sets_it(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        source = await add_source(layer)
        when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=source.created_at.tzinfo)
        async with layer.uow() as uow:
            assert (
                await repo(uow, Source).update_where(
                    {"source_id": source.source_id}, {"updated_at": when}
                )
                == 1
            )
            await uow.commit()
        assert _aware(await sql.scalar("SELECT updated_at FROM archon_sources")) == when


# -- count_by ---------------------------------------------------------------------------------


class TestCountBy:
    async def test_counts_per_value_in_one_grouped_statement(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            project = await repo(uow, Project).add(ProjectFactory.build())
            other = await repo(uow, Project).add(ProjectFactory.build())
            statuses = ["todo", "todo", "doing", "done", "todo"]
            await repo(uow, Task).add_many(
                [TaskFactory.build(project_id=project.id, status=s) for s in statuses]
                + [TaskFactory.build(project_id=other.id, status="review")]
            )
            await uow.commit()
        async with layer.uow(read_only=True) as uow:
            with statements(layer) as seen:
                counts = await uow.tasks.count_by("status", {"project_id": project.id})
            assert counts == {TaskStatus.TODO: 3, TaskStatus.DOING: 1, TaskStatus.DONE: 1}
            assert all(type(k) is TaskStatus for k in counts)
            assert len(seen) == 1 and "GROUP BY" in seen[0].upper()
            by_project = await uow.tasks.count_by("project_id")
            assert by_project == {project.id: 5, other.id: 1}
            assert await uow.projects.count_by("pinned") == {False: 2}
            assert await uow.tasks.count_by("archived", {"status": "review"}) == {False: 1}

    async def test_null_is_one_group_keyed_none(self, layer: DataLayer) -> None:
        source = await add_source(layer)
        await add_pages(layer, source, 2, embedding_dimension=None)
        await add_pages(layer, source, 3, embedding_dimension=768, url="https://x.dev/other")
        async with layer.uow() as uow:
            assert await repo(uow, CrawledPage).count_by("embedding_dimension") == {
                None: 2,
                768: 3,
            }
            assert await repo(uow, CrawledPage).count_by("url", {"chunk_number": 99}) == {}

    async def test_text_groups_by_its_exact_characters(self, layer: DataLayer) -> None:
        """MySQL's collation pads ('a' = 'a ') and groups TEXT on a 1024-byte prefix: not here."""
        long = "x" * 1500
        titles = ["a", "a", "a ", "A", long + "1", long + "2", long + "2"]
        for title in titles:
            await add_source(layer, title=title)
        source = await add_source(layer)
        urls = ["https://x.dev/a", "https://x.dev/a ", "https://x.dev/a ", "https://x.dev/A"]
        async with layer.uow() as uow:
            await repo(uow, CrawledPage).add_many(
                [CrawledPageFactory.build(source=source, url=url) for url in urls]
            )
            counts = await repo(uow, Source).count_by("title")  # LONGTEXT on MySQL
            by_url = await repo(uow, CrawledPage).count_by("url")  # VARCHAR(700) on MySQL
        assert counts == {"a": 2, "a ": 1, "A": 1, long + "1": 1, long + "2": 2, source.title: 1}
        assert by_url == {"https://x.dev/a": 1, "https://x.dev/a ": 2, "https://x.dev/A": 1}

    async def test_bad_field_is_refused_before_any_sql(self, layer: DataLayer) -> None:
        cases: list[tuple[Any, str]] = [
            ("nope", "nope"),
            ("metadata", "JSON"),
            ("metadata.knowledge_type", "JSON"),
            (["title"], "one column name"),
        ]
        async with layer.uow() as uow:
            with statements(layer) as seen:
                for field, message in cases:
                    with pytest.raises(InvalidInputError, match=message):
                        await repo(uow, Source).count_by(field)
                with pytest.raises(InvalidInputError, match="nope"):
                    await repo(uow, Source).count_by("title", {"nope": 1})
            assert seen == []


# -- upsert_many(returning=True) -------------------------------------------------------------


class TestUpsertReturning:
    async def test_returns_stored_entities_in_input_order_with_existing_ids(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        async with layer.uow() as uow:
            (old,) = await repo(uow, Setting).add_many([SettingFactory.build(key="OLD")])
            await uow.commit()
        given = [
            SettingFactory.build(key="NEW_1", value="n1"),
            SettingFactory.build(key="OLD", value="rewritten"),
            SettingFactory.build(key="NEW_2", value="n2"),
        ]
        async with layer.uow() as uow:
            stored = await repo(uow, Setting).upsert_many(given, on=["key"], returning=True)
            assert [s.key for s in stored] == ["NEW_1", "OLD", "NEW_2"]
            assert stored[1].id == old.id and given[1].id != old.id
            assert [s.value for s in stored] == ["n1", "rewritten", "n2"]
            assert all(s in uow.session for s in stored)
            assert await repo(uow, Setting).get(old.id) is stored[1]
            await uow.commit()
        key = quoted(layer, "key")
        rows = await sql.all(f"SELECT {key}, id, value, updated_at FROM archon_settings")
        # Archon's seeded settings are there too: only the keys written here are compared.
        in_db = {
            r[0]: (uuid.UUID(str(r[1])), r[2], _aware(r[3]))
            for r in rows
            if r[0] in {"NEW_1", "OLD", "NEW_2"}
        }
        # updated_at included: what the database holds, trigger-stamped on PostgreSQL
        assert {s.key: (s.id, s.value, s.updated_at) for s in stored} == in_db

    async def test_generated_ids_and_duplicates(self, layer: DataLayer, sql: Sql) -> None:
        source = await add_source(layer)
        (existing,) = await add_pages(layer, source, 1)
        again = CrawledPageFactory.build(
            source=source, url=existing.url, chunk_number=existing.chunk_number, content="new"
        )
        fresh = CrawledPageFactory.build(source=source, content="fresh")
        twin = CrawledPageFactory.build(
            source=source, url=fresh.url, chunk_number=fresh.chunk_number, content="twin"
        )
        async with layer.uow() as uow:
            stored = await repo(uow, CrawledPage).upsert_many(
                [again, fresh, twin], on=["url", "chunk_number"], returning=True
            )
            await uow.commit()
        assert stored[0].id == existing.id and stored[0].content == "new"
        assert stored[1] is stored[2] and stored[1].content == "twin"  # the last one won
        assert again.id is None and fresh.id is None  # the entities given are left alone
        rows = await sql.all(f"SELECT id, content FROM {PAGES}")
        assert {tuple(r) for r in rows} == {(existing.id, "new"), (stored[1].id, "twin")}

    async def test_empty_update_returns_rows_as_stored(self, layer: DataLayer) -> None:
        old = await add_source(layer, title="kept")
        async with layer.uow() as uow:
            stored = await repo(uow, Source).upsert_many(
                [
                    SourceFactory.build(source_id=old.source_id, title="ignored"),
                    SourceFactory.build(title="inserted"),
                ],
                on=["source_id"],
                update=[],
                returning=True,
            )
        assert [s.title for s in stored] == ["kept", "inserted"]
        assert stored[0].created_at == old.created_at

    async def test_rows_with_a_null_key_are_found_by_id(self, layer: DataLayer) -> None:
        links = [ProjectSource(project_id=None, source_id="s" * 16) for _ in range(2)]
        async with layer.uow() as uow:
            stored = await repo(uow, ProjectSource).upsert_many(
                links, on=["project_id", "source_id"], returning=True
            )
        assert [s.id for s in stored] == [link.id for link in links]
        assert all(s.project_id is None for s in stored)

    async def test_many_rows_across_batches(self, layer: DataLayer, sql: Sql) -> None:
        settings = SettingFactory.build_batch(MAX_ROWS + 5)
        async with layer.uow() as uow:
            first = await repo(uow, Setting).upsert_many(settings[:10], on=["key"], returning=True)
            stored = await repo(uow, Setting).upsert_many(settings, on=["key"], returning=True)
            await uow.commit()
        assert [s.key for s in stored] == [s.key for s in settings]
        assert stored[:10] == first
        rows = await sql.all(f"SELECT id, {quoted(layer, 'key')} FROM archon_settings")
        written = {str(r[0]) for r in rows if r[1] in {s.key for s in settings}}
        assert len(written) == len({s.id for s in stored}) == len(settings)

    async def test_read_back_path_on_every_backend(
        self, layer: DataLayer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """MySQL's path (no RETURNING with ON DUPLICATE KEY UPDATE), forced everywhere."""
        monkeypatch.setattr(bulk, "_returning", lambda dialect, plan: ())
        source = await add_source(layer)
        (existing,) = await add_pages(layer, source, 1)
        page = CrawledPageFactory.build(
            source=source, url=existing.url, chunk_number=existing.chunk_number
        )
        async with layer.uow() as uow:
            with statements(layer) as seen:
                (stored,) = await repo(uow, CrawledPage).upsert_many(
                    [page], on=["url", "chunk_number"], returning=True
                )
        assert stored.id == existing.id and stored.content == page.content
        assert [s.lstrip().split()[0].upper() for s in seen] == ["INSERT", "SELECT"]

    @pytest.mark.parametrize("n", [1, 3])
    async def test_returning_statements_per_backend(self, layer: DataLayer, n: int) -> None:
        settings = SettingFactory.build_batch(n)
        async with layer.uow() as uow:
            with statements(layer) as seen:
                stored = await repo(uow, Setting).upsert_many(settings, on=["key"], returning=True)
            assert [s.key for s in stored] == [s.key for s in settings]
            assert await repo(uow, Setting).upsert_many([], on=["key"], returning=True) == []
            with pytest.raises(InvalidInputError, match="returning"):
                await repo(uow, Setting).upsert_many(settings, on=["key"], returning=1)  # type: ignore[call-overload]
        kinds = [s.lstrip().split()[0].upper() for s in seen]
        if layer.dialect_name == "mysql":
            assert kinds == ["INSERT", "SELECT"]
        else:
            assert kinds == ["INSERT"] and "RETURNING" in seen[0].upper()

    @pytest.mark.backends("mariadb")
    async def test_a_key_mysql_takes_for_another_is_refused_and_undone(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        """MySQL's PAD SPACE collation takes 'K ' for 'K': the stored row has another key."""
        async with layer.uow() as uow:
            await repo(uow, Setting).add(SettingFactory.build(key="K", value="old"))
            await uow.commit()
        async with layer.uow() as uow:
            padded = [SettingFactory.build(key="K ", value="new")]
            with pytest.raises(DataLayerError, match="could not be read back"):
                await repo(uow, Setting).upsert_many(padded, on=["key"], returning=True)
            await uow.commit()
        key = quoted(layer, "key")
        assert await sql.all(f"SELECT value FROM archon_settings WHERE {key} = 'K'") == [("old",)]

    async def test_all_or_nothing(self, layer: DataLayer, sql: Sql) -> None:
        source = await add_source(layer)
        pages = CrawledPageFactory.build_batch(3, source=source)
        pages[-1].source_id = "f" * 16  # no such source
        async with layer.uow() as uow:
            with pytest.raises(ConflictError):
                await repo(uow, CrawledPage).upsert_many(
                    pages, on=["url", "chunk_number"], returning=True
                )
            await uow.rollback()
        assert await sql.scalar(f"SELECT COUNT(*) FROM {PAGES}") == 0

    async def test_tasks_upsert_through_their_repository(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            project = await uow.projects.add(ProjectFactory.build())
            tasks = TaskFactory.build_batch(2, project_id=project.id)
            stored = await uow.tasks.upsert_many(tasks, on=["id"], returning=True)
            assert [t.id for t in stored] == [t.id for t in tasks]
            assert await uow.tasks.upsert_many(tasks, on=["id"]) == 2
            await uow.commit()


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
