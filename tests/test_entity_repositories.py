"""Contract tests of the entity-specific repository methods, on every backend, checked with SQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from app.bootstrap import DataLayer
from app.domain import Source, Task, TaskStatus
from app.errors import ConflictError, InvalidInputError, NotFoundError
from app.repositories.knowledge import IN_CHUNK
from app.testing import (
    CodeExampleFactory,
    CrawledPageFactory,
    PageMetadataFactory,
    ProjectFactory,
    PromptFactory,
    SourceFactory,
    TaskFactory,
    save,
)
from tests.support import Sql

# The whole suite also runs behind pgbouncer in transaction mode (supabase mode): see conftest.
pytestmark = pytest.mark.pooler

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


# -- plain-SQL helpers -------------------------------------------------------------------------


def db_uuid(layer: DataLayer, value: uuid.UUID) -> Any:
    """A UUID as the database stores it: native on PostgreSQL, 32 hex digits elsewhere."""
    return value if layer.dialect_name == "postgresql" else value.hex


def as_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


def as_datetime(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def statements(layer: DataLayer) -> Iterator[list[str]]:
    """The SQL statements the layer's engines (readers too) send meanwhile (no BEGIN/SAVEPOINT)."""
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


async def seed(layer: DataLayer, *items: Any) -> list[Any]:
    async with layer.uow() as uow:
        saved = await save(uow, *items)
        await uow.commit()
    return saved


def numbered_pages(factory: Any, n: int, source: Source, url: str | None = None) -> list[Any]:
    pages = factory.build_batch(n, source=source)
    for number, page in enumerate(pages):
        page.chunk_number = number
        if url is not None:
            page.url = url
    return pages


# -- sources -----------------------------------------------------------------------------------


class TestSources:
    async def test_update_and_touch_stamp_updated_at(self, layer: DataLayer, sql: Sql) -> None:
        (source,) = await seed(layer, SourceFactory.build(updated_at=LONG_AGO))
        async with layer.uow() as uow:
            await uow.sources.update(source.source_id, {"title": "Renamed"})
            await uow.commit()
        query = "SELECT title, updated_at FROM archon_sources WHERE source_id = :id"
        title, stamped = (await sql.all(query, id=source.source_id))[0]
        assert title == "Renamed" and as_datetime(stamped) > LONG_AGO + timedelta(days=365)
        async with layer.uow() as uow:
            await uow.sources.update(source.source_id, {"updated_at": LONG_AGO})
            await uow.commit()
        async with layer.uow() as uow:
            await uow.sources.touch(source.source_id)
            with pytest.raises(NotFoundError):
                await uow.sources.touch("missing")
            await uow.commit()
        assert as_datetime((await sql.all(query, id=source.source_id))[0][1]) > LONG_AGO

    async def test_list_with_counts_in_one_query(self, layer: DataLayer, sql: Sql) -> None:
        a, b, c = SourceFactory.build_batch(3)
        a.title, b.title, c.title = "A", "B", "C"
        await seed(
            layer,
            a,
            b,
            c,
            *numbered_pages(CrawledPageFactory, 3, a),
            *numbered_pages(CodeExampleFactory, 2, a),
            *numbered_pages(CrawledPageFactory, 1, b, url="https://b.example.com/"),
        )
        async with layer.uow() as uow:
            with statements(layer) as sent:
                summaries = await uow.sources.list_with_counts(order_by=["title"])
            got = [(s.source.source_id, s.page_count, s.code_example_count) for s in summaries]
        assert len(sent) == 1
        assert got == [(a.source_id, 3, 2), (b.source_id, 1, 0), (c.source_id, 0, 0)]
        expected = await sql.all(
            "SELECT s.source_id, "
            "(SELECT COUNT(*) FROM archon_crawled_pages p WHERE p.source_id = s.source_id), "
            "(SELECT COUNT(*) FROM archon_code_examples e WHERE e.source_id = s.source_id) "
            "FROM archon_sources s ORDER BY s.title"
        )
        assert got == [tuple(row) for row in expected]
        async with layer.uow(read_only=True) as uow:
            sliced = await uow.sources.list_with_counts(
                {"title": {"in": ["A", "B"]}}, order_by=["-title"], limit=1, offset=1
            )
            assert [(s.source.title, s.page_count) for s in sliced] == [("A", 3)]
            with pytest.raises(InvalidInputError):
                await uow.sources.list_with_counts({"no_such_field": 1})

    async def test_delete_with_content(self, layer: DataLayer, sql: Sql) -> None:
        doomed, kept = SourceFactory.build_batch(2)
        meta = PageMetadataFactory.build(source=doomed)
        pages = numbered_pages(CrawledPageFactory, 3, doomed)
        for page in pages:
            page.page_id = meta.id
        project = ProjectFactory.build()
        await seed(
            layer,
            doomed,
            kept,
            meta,
            *pages,
            *numbered_pages(CodeExampleFactory, 2, doomed),
            *numbered_pages(CrawledPageFactory, 2, kept, url="https://kept.example.com/"),
            project,
        )
        async with layer.uow() as uow:
            await uow.project_sources.link(project.id, doomed.source_id)
            loaded = await uow.pages.list_by_source(doomed.source_id)
            assert await uow.sources.delete_with_content(doomed.source_id) == 1 + 1 + 3 + 2
            assert await uow.sources.get(doomed.source_id) is None
            assert all(page not in uow.session for page in loaded)
            await uow.commit()
        for table in ("sources", "crawled_pages", "code_examples", "page_metadata"):
            count = f"SELECT COUNT(*) FROM archon_{table} WHERE source_id = :id"
            assert await sql.scalar(count, id=doomed.source_id) == 0
        assert await sql.scalar("SELECT COUNT(*) FROM archon_crawled_pages") == 2
        links = "SELECT COUNT(*) FROM archon_project_sources WHERE source_id = :id"
        assert await sql.scalar(links, id=doomed.source_id) == 1  # links outlive sources
        async with layer.uow() as uow:
            with pytest.raises(NotFoundError):
                await uow.sources.delete_with_content(doomed.source_id)

    async def test_delete_with_content_without_cascading_foreign_keys(
        self, layer: DataLayer
    ) -> None:
        async with foreign_keys_without_cascade(layer) as target:
            source = SourceFactory.build()
            meta = PageMetadataFactory.build(source=source)
            pages = numbered_pages(CrawledPageFactory, 2, source)
            pages[0].page_id = meta.id
            await seed(target, source, meta, *pages, *numbered_pages(CodeExampleFactory, 1, source))
            with pytest.raises(sa.exc.IntegrityError):  # proves the cascade is really gone
                async with target.uow() as uow:
                    await uow.session.execute(sa.delete(Source.__table__))
            async with target.uow() as uow:
                assert await uow.sources.delete_with_content(source.source_id) == 5
                await uow.commit()
            async with target.engine.connect() as conn:
                for table in ("sources", "crawled_pages", "code_examples", "page_metadata"):
                    count = sa.text(f"SELECT COUNT(*) FROM archon_{table}")
                    assert (await conn.execute(count)).scalar() == 0


# FKs to archon_sources, and the page -> page metadata one: (table, column, parent, parent column)
_FOREIGN_KEYS = [
    ("archon_crawled_pages", "source_id", "archon_sources", "source_id"),
    ("archon_code_examples", "source_id", "archon_sources", "source_id"),
    ("archon_page_metadata", "source_id", "archon_sources", "source_id"),
    ("archon_crawled_pages", "page_id", "archon_page_metadata", "id"),
]


@asynccontextmanager
async def foreign_keys_without_cascade(layer: DataLayer) -> AsyncIterator[DataLayer]:
    """A layer whose knowledge tables' foreign keys have no ON DELETE action, like Archon's beta.

    PostgreSQL and MySQL: the test database's constraints are recreated without their action,
    and restored afterwards. SQLite cannot alter a constraint: a scratch database built from a
    copy of the schema is used instead.
    """
    if layer.dialect_name == "sqlite":
        async with _sqlite_scratch(layer) as scratch:
            yield scratch
        return
    originals = await _replace_foreign_keys(layer, on_delete=None)
    try:
        yield layer
    finally:
        await _replace_foreign_keys(layer, on_delete=originals)


async def _replace_foreign_keys(
    layer: DataLayer, on_delete: dict[tuple[str, str], str | None] | None
) -> dict[tuple[str, str], str | None]:
    """Recreate each FK with ``on_delete[(table, column)]`` (none when ``None``); old actions."""
    quote = layer.engine.dialect.identifier_preparer.quote
    drop = "DROP FOREIGN KEY" if layer.dialect_name == "mysql" else "DROP CONSTRAINT"
    before: dict[tuple[str, str], str | None] = {}
    async with layer.engine.begin() as conn:
        for table, column, parent, parent_column in _FOREIGN_KEYS:
            fks = await conn.run_sync(lambda c, t=table: sa.inspect(c).get_foreign_keys(t))
            (fk,) = [fk for fk in fks if fk["constrained_columns"] == [column]]
            before[(table, column)] = fk["options"].get("ondelete")
            action = (on_delete or {}).get((table, column))
            name = quote(fk["name"])
            await conn.exec_driver_sql(f"ALTER TABLE {quote(table)} {drop} {name}")
            await conn.exec_driver_sql(
                f"ALTER TABLE {quote(table)} ADD CONSTRAINT {name} FOREIGN KEY ({quote(column)}) "
                f"REFERENCES {quote(parent)} ({quote(parent_column)})"
                + (f" ON DELETE {action}" if action else "")
            )
    return before


@asynccontextmanager
async def _sqlite_scratch(layer: DataLayer) -> AsyncIterator[DataLayer]:
    import tempfile
    from pathlib import Path

    from app.bootstrap import bootstrap
    from app.config import Settings
    from app.domain import metadata

    copy = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    for table in copy.tables.values():
        for constraint in table.foreign_key_constraints:
            constraint.ondelete = None
            for fk in constraint.elements:
                fk.ondelete = None
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'beta.db'}"
        scratch = bootstrap(Settings(_env_file=None, database_url=url, vector_database="exact"))
        try:
            async with scratch.engine.begin() as conn:
                await conn.run_sync(copy.create_all)
            yield scratch
        finally:
            await scratch.aclose()


# -- chunks: crawled pages and code examples -----------------------------------------------------

CHUNKS = pytest.mark.parametrize(
    ("repo_name", "factory", "table"),
    [
        ("pages", CrawledPageFactory, "archon_crawled_pages"),
        ("code_examples", CodeExampleFactory, "archon_code_examples"),
    ],
    ids=["pages", "code_examples"],
)


@CHUNKS
class TestChunks:
    async def test_delete_by_urls_in_chunks(
        self, layer: DataLayer, sql: Sql, repo_name: str, factory: Any, table: str
    ) -> None:
        source = SourceFactory.build()
        first = numbered_pages(factory, 3, source, url="https://x.example.com/first")
        last = numbered_pages(factory, 2, source, url="https://x.example.com/last")
        kept = numbered_pages(factory, 2, source, url="https://x.example.com/kept")
        await seed(layer, source, *first, *last, *kept)
        urls = ["https://x.example.com/first"]
        urls += [f"https://x.example.com/absent-{n}" for n in range(IN_CHUNK * 2)]
        urls += ["https://x.example.com/last", "https://x.example.com/first"]
        async with layer.uow() as uow:
            repo = getattr(uow, repo_name)
            with statements(layer) as sent:
                assert await repo.delete_by_urls(urls) == 5
            assert sum(s.lstrip().upper().startswith("DELETE") for s in sent) == 3
            assert await repo.delete_by_urls([]) == 0
            with pytest.raises(InvalidInputError):
                await repo.delete_by_urls("https://x.example.com/kept")
            await uow.commit()
        rows = await sql.all(f"SELECT url FROM {table}")
        assert sorted(r[0] for r in rows) == ["https://x.example.com/kept"] * 2

    async def test_reads_by_source_and_by_url_chunk(
        self, layer: DataLayer, sql: Sql, repo_name: str, factory: Any, table: str
    ) -> None:
        one, other, empty = SourceFactory.build_batch(3)
        mine = numbered_pages(factory, 3, one, url="https://one.example.com/b")
        mine += numbered_pages(factory, 2, one, url="https://one.example.com/a")
        theirs = numbered_pages(factory, 4, other, url="https://other.example.com/")
        await seed(layer, one, other, empty, *mine, *theirs)
        async with layer.uow(read_only=True) as uow:
            repo = getattr(uow, repo_name)
            listed = await repo.list_by_source(one.source_id)
            assert [(p.url[-1], p.chunk_number) for p in listed] == [
                ("a", 0),
                ("a", 1),
                ("b", 0),
                ("b", 1),
                ("b", 2),
            ]
            window = await repo.list_by_source(one.source_id, limit=2, offset=1)
            assert [p.id for p in window] == [p.id for p in listed[1:3]]
            hit = await repo.get_by_url_chunk("https://one.example.com/b", 2)
            assert hit is not None and hit.source_id == one.source_id
            assert await repo.get_by_url_chunk("https://one.example.com/b", 3) is None
            with statements(layer) as sent:
                counts = await repo.count_by_source([one.source_id, other.source_id, "nope"])
            assert counts == {one.source_id: 5, other.source_id: 4, "nope": 0}
            assert await repo.count_by_source([]) == {}
        per_source = await sql.all(f"SELECT source_id, COUNT(*) FROM {table} GROUP BY source_id")
        assert {k: v for k, v in counts.items() if v} == {r[0]: r[1] for r in per_source}
        assert len(sent) == 1


class TestPageMetadata:
    async def test_get_by_url_and_list_by_source(self, layer: DataLayer) -> None:
        source, other = SourceFactory.build_batch(2)
        pages = PageMetadataFactory.build_batch(3, source=source)
        for order, page in zip((2, 0, 1), pages, strict=True):
            page.section_order = order
        await seed(layer, source, other, *pages, PageMetadataFactory.build(source=other))
        async with layer.uow(read_only=True) as uow:
            found = await uow.page_metadata.get_by_url(pages[1].url)
            assert found is not None and found.id == pages[1].id
            assert await uow.page_metadata.get_by_url("https://nowhere.example.com/") is None
            listed = await uow.page_metadata.list_by_source(source.source_id)
            assert [p.id for p in listed] == [pages[1].id, pages[2].id, pages[0].id]


# -- projects and tasks ------------------------------------------------------------------------


class TestProjects:
    async def test_update_stamps_updated_at_and_list_pinned(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        old, new, unpinned = ProjectFactory.build_batch(3)
        old.pinned, new.pinned = True, True
        old.updated_at, new.updated_at = LONG_AGO, LONG_AGO + timedelta(days=1)
        await seed(layer, old, new, unpinned)
        async with layer.uow() as uow:
            assert [p.id for p in await uow.projects.list_pinned()] == [new.id, old.id]
            await uow.projects.update(old.id, {"title": "Fresh"})
            await uow.commit()
        stamped = await sql.scalar(
            "SELECT updated_at FROM archon_projects WHERE id = :id", id=db_uuid(layer, old.id)
        )
        assert as_datetime(stamped) > LONG_AGO + timedelta(days=365)
        async with layer.uow(read_only=True) as uow:
            assert [p.id for p in await uow.projects.list_pinned()] == [old.id, new.id]


def _tasks(project: Any, statuses: list[TaskStatus]) -> list[Task]:
    tasks = TaskFactory.build_batch(len(statuses), project=project)
    orders: dict[TaskStatus, int] = {}
    for task, status in zip(tasks, statuses, strict=True):
        task.status, task.task_order = status, orders.get(status, 0)
        orders[status] = task.task_order + 1
    return tasks


async def _orders(layer: DataLayer, sql: Sql, project_id: uuid.UUID) -> dict[str, list[uuid.UUID]]:
    rows = await sql.all(
        "SELECT status, id, task_order FROM archon_tasks WHERE project_id = :p "
        "ORDER BY status, task_order",
        p=db_uuid(layer, project_id),
    )
    columns: dict[str, list[uuid.UUID]] = {}
    for status, task_id, order in rows:
        column = columns.setdefault(status, [])
        assert order == len(column), f"task_order of {status!r} is not 0..n-1: {rows}"
        column.append(as_uuid(task_id))
    return columns


class TestTasks:
    async def test_list_for_project(self, layer: DataLayer, sql: Sql) -> None:
        project, other = ProjectFactory.build_batch(2)
        todo = [TaskStatus.TODO] * 3
        tasks = _tasks(project, [*todo, TaskStatus.DOING, TaskStatus.DONE])
        tasks[2].archived = True
        await seed(layer, project, other, *tasks, *_tasks(other, todo))
        # Archon's column is nullable: NULL counts as not archived.
        await sql.execute(
            "UPDATE archon_tasks SET archived = NULL WHERE id = :id", id=db_uuid(layer, tasks[1].id)
        )
        async with layer.uow(read_only=True) as uow:
            listed = await uow.tasks.list_for_project(project.id, status=TaskStatus.TODO)
            assert [t.id for t in listed] == [tasks[0].id, tasks[1].id]
            both = await uow.tasks.list_for_project(
                project.id, status=[TaskStatus.DOING, TaskStatus.DONE], order_by=["-task_order"]
            )
            assert {t.id for t in both} == {tasks[3].id, tasks[4].id}
            everything = await uow.tasks.list_for_project(project.id, include_archived=True)
            assert len(everything) == 5
            assert len(await uow.tasks.list_for_project(project.id, limit=2, offset=3)) == 1
            with pytest.raises(InvalidInputError):
                await uow.tasks.list_for_project(project.id, status="someday")  # type: ignore[arg-type]

    async def test_archive_with_subtasks(self, layer: DataLayer, sql: Sql) -> None:
        project = ProjectFactory.build()
        parent, child, grandchild, sibling = _tasks(project, [TaskStatus.TODO] * 4)
        child.parent_task_id, grandchild.parent_task_id = parent.id, child.id
        parent.updated_at = LONG_AGO
        await seed(layer, project, parent, sibling)
        await seed(layer, child)
        await seed(layer, grandchild)
        async with layer.uow() as uow:
            loaded = await uow.tasks.get_or_raise(child.id)
            assert await uow.tasks.archive(parent.id, archived_by="api") == 3
            assert loaded.archived is True  # loaded instances see the change
            assert await uow.tasks.archive(parent.id) == 0
            with pytest.raises(NotFoundError):
                await uow.tasks.archive(uuid.uuid4())
            await uow.commit()
        rows = await sql.all(
            "SELECT id, archived, archived_at, archived_by, updated_at FROM archon_tasks"
        )
        by_id = {as_uuid(r[0]): r for r in rows}
        for task in (parent, child, grandchild):
            _, archived, at, by, updated = by_id[task.id]
            assert bool(archived) and by == "api" and at is not None
            assert as_datetime(updated) > LONG_AGO + timedelta(days=365)
        assert not by_id[sibling.id][1]

    async def test_move_within_a_column(self, layer: DataLayer, sql: Sql) -> None:
        project = ProjectFactory.build()
        tasks = _tasks(project, [TaskStatus.TODO] * 5)
        await seed(layer, project, *tasks)
        async with layer.uow() as uow:
            listed = await uow.tasks.list_for_project(project.id)
            with statements(layer) as sent:
                moved = await uow.tasks.move(tasks[0].id, 3)
            assert moved.task_order == 3 and moved.status == TaskStatus.TODO
            assert [t.task_order for t in listed] == [3, 0, 1, 2, 4]  # loaded ones refreshed
            updates = [s for s in sent if s.lstrip().upper().startswith("UPDATE")]
            assert len(updates) == 2  # one renumbers the others, one places the task
            await uow.tasks.move(tasks[4].id, 0)
            await uow.commit()
        expected = [tasks[4], tasks[1], tasks[2], tasks[3], tasks[0]]
        assert (await _orders(layer, sql, project.id))["todo"] == [t.id for t in expected]

    async def test_move_across_columns(self, layer: DataLayer, sql: Sql) -> None:
        project = ProjectFactory.build()
        todo = [TaskStatus.TODO] * 3
        tasks = _tasks(project, [*todo, TaskStatus.DOING, TaskStatus.DOING])
        archived = _tasks(project, [TaskStatus.DOING])[0]
        archived.task_order, archived.archived = 7, True
        await seed(layer, project, *tasks, archived)
        async with layer.uow() as uow:
            moved = await uow.tasks.move(tasks[1].id, 1, status=TaskStatus.DOING)
            assert (moved.status, moved.task_order) == (TaskStatus.DOING, 1)
            await uow.tasks.move(tasks[4].id, 5)  # past the end: stays last
            await uow.commit()
        await sql.execute("DELETE FROM archon_tasks WHERE id = :id", id=db_uuid(layer, archived.id))
        columns = await _orders(layer, sql, project.id)
        assert columns["todo"] == [tasks[0].id, tasks[2].id]
        assert columns["doing"] == [tasks[3].id, tasks[1].id, tasks[4].id]

    async def test_move_refuses_bad_input(self, layer: DataLayer) -> None:
        project = ProjectFactory.build()
        (task,) = _tasks(project, [TaskStatus.TODO])
        archived = _tasks(project, [TaskStatus.TODO])[0]
        archived.archived = True
        await seed(layer, project, task, archived)
        async with layer.uow() as uow:
            with pytest.raises(InvalidInputError):
                await uow.tasks.move(task.id, -1)
            with pytest.raises(InvalidInputError):
                await uow.tasks.move(task.id, 0, status="blocked")  # type: ignore[arg-type]
            with pytest.raises(InvalidInputError):
                await uow.tasks.move(archived.id, 0)
            with pytest.raises(NotFoundError):
                await uow.tasks.move(uuid.uuid4(), 0)


class TestProjectSources:
    async def test_link_is_idempotent_unlink_and_source_ids(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        project, other = ProjectFactory.build_batch(2)
        await seed(layer, project, other)
        async with layer.uow() as uow:
            first = await uow.project_sources.link(project.id, "s1", notes="technical")
            again = await uow.project_sources.link(project.id, "s1", notes="business")
            assert again.id == first.id and again.notes == "technical"
            await uow.project_sources.link(project.id, "s2", notes="business", created_by="api")
            await uow.project_sources.link(other.id, "s1")
            await uow.commit()
        count = "SELECT COUNT(*) FROM archon_project_sources WHERE project_id = :p"
        assert await sql.scalar(count, p=db_uuid(layer, project.id)) == 2
        async with layer.uow() as uow:
            assert await uow.project_sources.source_ids(project.id) == ["s1", "s2"]
            assert await uow.project_sources.source_ids(project.id, notes="business") == ["s2"]
            assert await uow.project_sources.unlink(project.id, "s1") is True
            assert await uow.project_sources.unlink(project.id, "s1") is False
            with pytest.raises(ConflictError):
                async with uow.savepoint():  # a failed write outside one needs a rollback
                    await uow.project_sources.link(uuid.uuid4(), "s1")
            await uow.commit()
        assert await sql.scalar(count, p=db_uuid(layer, project.id)) == 1


class TestDocumentVersions:
    async def test_create_next_numbers_per_field(self, layer: DataLayer, sql: Sql) -> None:
        project, other = ProjectFactory.build_batch(2)
        await seed(layer, project, other)
        async with layer.uow() as uow:
            versions = uow.document_versions
            first = await versions.create_next(project.id, "docs", [{"v": 1}])
            second = await versions.create_next(
                project.id, "docs", [{"v": 2}], change_summary="edit", created_by="api"
            )
            feature = await versions.create_next(project.id, "features", {"f": 1})
            elsewhere = await versions.create_next(other.id, "docs", [])
            numbers = (first, second, feature, elsewhere)
            assert [v.version_number for v in numbers] == [1, 2, 1, 1]
            with pytest.raises(NotFoundError):
                await versions.create_next(uuid.uuid4(), "docs", [])
            with pytest.raises(InvalidInputError):
                await versions.create_next(project.id, "docs", {"bad": float("nan")})
            await uow.commit()
        rows = await sql.all(
            "SELECT field_name, version_number, change_summary, created_by "
            "FROM archon_document_versions WHERE project_id = :p "
            "ORDER BY field_name, version_number",
            p=db_uuid(layer, project.id),
        )
        assert [tuple(r) for r in rows] == [
            ("docs", 1, None, "system"),
            ("docs", 2, "edit", "api"),
            ("features", 1, None, "system"),
        ]
        async with layer.uow(read_only=True) as uow:
            latest = await uow.document_versions.latest(project.id, "docs")
            assert latest is not None and latest.id == second.id and latest.content == [{"v": 2}]
            assert await uow.document_versions.latest(project.id, "prd") is None
            listed = await uow.document_versions.list_for(project.id)
            assert [v.id for v in listed] == [second.id, first.id, feature.id]
            only = await uow.document_versions.list_for(project.id, "features")
            assert [v.id for v in only] == [feature.id]


class TestPrompts:
    async def test_get_by_name(self, layer: DataLayer) -> None:
        prompt = PromptFactory.build(prompt_name="entity_test_prompt")
        await seed(layer, prompt)
        async with layer.uow(read_only=True) as uow:
            found = await uow.prompts.get_by_name("entity_test_prompt")
            assert found is not None and found.id == prompt.id
            assert await uow.prompts.get_by_name("Entity_Test_Prompt") is None


def test_repository_classes_satisfy_their_ports() -> None:
    from app import repositories as r

    pairs = [
        (r.SqlAlchemySourceRepository, r.SourceRepository),
        (r.SqlAlchemyCrawledPageRepository, r.CrawledPageRepository),
        (r.SqlAlchemyCodeExampleRepository, r.CodeExampleRepository),
        (r.SqlAlchemyPageMetadataRepository, r.PageMetadataRepository),
        (r.SqlAlchemyProjectRepository, r.ProjectRepository),
        (r.SqlAlchemyTaskRepository, r.TaskRepository),
        (r.SqlAlchemyProjectSourceRepository, r.ProjectSourceRepository),
        (r.SqlAlchemyDocumentVersionRepository, r.DocumentVersionRepository),
        (r.SqlAlchemySettingRepository, r.SettingRepository),
        (r.SqlAlchemyPromptRepository, r.PromptRepository),
        (r.SqlAlchemyMigrationRecordRepository, r.MigrationRecordRepository),
        (r.SqlAlchemyConfiguredRepositoryRepository, r.ConfiguredRepositoryRepository),
        (r.SqlAlchemyAgentWorkOrderRepository, r.AgentWorkOrderRepository),
        (r.SqlAlchemyAgentWorkOrderStepRepository, r.AgentWorkOrderStepRepository),
    ]
    for adapter, port in pairs:
        wanted = {n for n in dir(port) if not n.startswith("_") and callable(getattr(port, n))}
        missing = {n for n in wanted if not callable(getattr(adapter, n, None))}
        assert not missing, f"{adapter.__name__} lacks {missing}"
