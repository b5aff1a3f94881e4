"""Reads on the driver connection (app.repositories.driver), on every backend: the same entities
as SQLAlchemy's own path, one object per row in a Unit of Work, driver errors translated."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from app.domain import Project, Task, TaskStatus
from app.errors import BackendUnavailableError, ConflictError, DataLayerError, NotFoundError
from app.repositories import driver


async def _seed(layer) -> Project:
    async with layer.uow() as uow:
        project = await uow.projects.add(
            Project(title="p", docs=[{"a": 1}], features=["x"], data=[], pinned=True)
        )
        await uow.tasks.add_many(
            Task(project_id=project.id, title=f"t{n}", status=status, sources=[{"n": n}],
                 task_order=n, feature="f" if n % 2 else None)
            for n, status in enumerate([TaskStatus.TODO, TaskStatus.DOING, TaskStatus.DONE])
        )  # fmt: skip
        await uow.commit()
    return project


async def test_default_engines_read_on_the_driver_connection(make_layer) -> None:
    layer = await make_layer()
    logged = await make_layer(enable_query_logging=True)
    await _seed(layer)
    for read_only in (False, True):
        async with layer.uow(read_only=read_only) as uow:
            await uow.projects.list()  # connects
            assert driver.runner(uow.session) is not None
        async with logged.uow(read_only=read_only) as uow:
            await uow.projects.list()
            # Logging every statement needs SQLAlchemy's own path.
            assert driver.runner(uow.session) is None


async def test_the_driver_path_reads_what_the_session_path_reads(make_layer) -> None:
    layer = await make_layer()
    plain = await make_layer(enable_query_logging=True)  # SQLAlchemy's path throughout
    project = await _seed(layer)

    async def read(on) -> tuple[list[dict], dict, list[dict]]:
        async with on.uow(read_only=True) as uow:
            tasks = await uow.tasks.list({"project_id": project.id}, order_by=["task_order"])
            got = await uow.projects.get(project.id)
            sliced = await uow.tasks.list(
                {"status": {"in": ["todo", "done"]}}, order_by=["-task_order"], limit=1, offset=1
            )
            return (
                [t.model_dump() for t in tasks],
                got.model_dump(),
                [t.model_dump() for t in sliced],
            )

    fast, slow = await read(layer), await read(plain)
    assert fast == slow
    tasks, got, sliced = fast
    assert [t["title"] for t in tasks] == ["t0", "t1", "t2"]
    assert [t["title"] for t in sliced] == ["t0"]
    assert isinstance(tasks[0]["id"], uuid.UUID) and tasks[0]["status"] == TaskStatus.TODO
    assert tasks[1]["sources"] == [{"n": 1}] and tasks[0]["feature"] is None
    assert got["pinned"] is True and got["docs"] == [{"a": 1}]
    assert got["created_at"].utcoffset().total_seconds() == 0


async def test_a_row_is_one_entity_in_a_unit_of_work(layer, sql) -> None:
    project = await _seed(layer)
    async with layer.uow() as uow:
        got = await uow.projects.get(project.id)
        assert await uow.projects.get(project.id) is got
        assert (await uow.projects.list())[0] is got
        # Another writer changes the row (on SQLite it would wait for this writer's lock).
        changes = layer.dialect_name != "sqlite"
        if changes:
            await sql.execute("UPDATE archon_projects SET title = 'changed'")
        await uow.rollback()  # expires what the session holds: the next read refreshes it
        again = await uow.projects.get(project.id)
        assert again is got
        assert again.title == ("changed" if changes else "p")
        listed = await uow.tasks.list(order_by=["task_order"])
        assert [t.title for t in listed] == ["t0", "t1", "t2"]


@pytest.mark.backends("mariadb")
async def test_a_dropped_connection_fails_the_read_once_then_is_replaced(layer, sql) -> None:
    project = await _seed(layer)
    async with layer.uow(read_only=True) as uow:
        assert await uow.projects.get(project.id) is not None
        assert driver.runner(uow.session) is not None
    await sql.drop_other_connections()
    await asyncio.sleep(0.2)
    with pytest.raises(BackendUnavailableError, match="reachable"):
        async with layer.uow(read_only=True) as uow:
            await uow.projects.get(project.id)
    async with layer.uow(read_only=True) as uow:
        assert (await uow.projects.get_or_raise(project.id)).title == "p"


@pytest.mark.backends("pgvector", "postgres")
async def test_a_connection_the_server_dropped_is_replaced_at_checkout(layer, sql) -> None:
    """PostgreSQL's pools look at a pooled connection as they hand it out (no round trip): one
    the server closed is replaced, so the read after the drop already succeeds."""
    project = await _seed(layer)
    async with layer.uow(read_only=True) as uow:
        assert await uow.projects.get(project.id) is not None
        assert driver.runner(uow.session) is not None
    await sql.drop_other_connections()
    await asyncio.sleep(0.2)
    async with layer.uow(read_only=True) as uow:
        assert (await uow.projects.get_or_raise(project.id)).title == "p"


async def test_single_row_writes_store_what_the_session_path_stores(make_layer, sql) -> None:
    layer = await make_layer()
    plain = await make_layer(enable_query_logging=True)  # SQLAlchemy's path throughout
    stored = []
    for on in (layer, plain):
        async with on.uow() as uow:
            project = await uow.projects.add(Project(title="p", docs=[{"a": [1, None]}]))
            task = await uow.tasks.add(
                Task(project_id=project.id, title="t", status=TaskStatus.REVIEW, sources=[])
            )
            updated = await uow.tasks.update(task.id, {"title": "t2", "sources": [{"s": 1}]})
            assert updated is await uow.tasks.get(task.id)  # one entity per row
            assert updated.title == "t2" and updated.sources == [{"s": 1}]
            await uow.commit()
        stored.append(
            await sql.all(
                "SELECT t.title, t.status, t.sources, p.docs FROM archon_tasks t "
                "JOIN archon_projects p ON p.id = t.project_id WHERE t.id = :id",
                id=task.id if layer.dialect_name == "postgresql" else task.id.hex,
            )
        )
    assert stored[0] == stored[1] and len(stored[0]) == 1


async def test_a_failed_single_row_write_needs_a_rollback_then_works(layer, sql) -> None:
    project = await _seed(layer)
    async with layer.uow() as uow:
        with pytest.raises(ConflictError):
            await uow.projects.add(Project(id=project.id, title="again"))
        with pytest.raises(DataLayerError, match="roll"):
            await uow.projects.update(project.id, {"title": "lost"})
        await uow.rollback()
        assert (await uow.projects.update(project.id, {"title": "kept"})).title == "kept"
        with pytest.raises(NotFoundError):
            await uow.projects.update(uuid.uuid4(), {"title": "none"})
        await uow.rollback()
        assert (await uow.projects.update(project.id, {"title": "kept"})).title == "kept"
        await uow.commit()
    assert await sql.scalar("SELECT title FROM archon_projects") == "kept"


async def test_statements_are_compiled_once_per_shape_and_in_lists_fall_back(layer) -> None:
    table = Project.__table__
    async with layer.uow(read_only=True) as uow:
        await uow.projects.list()
        run = driver.runner(uow.session)
        assert run is not None
        first = run.cache.prepare(sa.select(table.c.id).where(table.c.title == "a").limit(3))
        second = run.cache.prepare(sa.select(table.c.id).where(table.c.title == "b").limit(7))
        assert first is not None and second is not None
        assert first[0] is second[0]  # one compiled form for both values
        assert first[1][:2] == ["a", 3] and second[1][:2] == ["b", 7]  # (SQLite: OFFSET 0)
        # An expanding IN list is rendered per call by SQLAlchemy: not this path's.
        assert run.cache.prepare(sa.select(table.c.id).where(table.c.title.in_(["a"]))) is None
        assert [p.title for p in await uow.projects.list({"title": {"in": ["none"]}})] == []


def test_sqlite_timestamps_come_back_as_utc_from_any_iso_text() -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.dialects import sqlite

    from app.domain.types import TZDateTime

    process = TZDateTime().result_processor(sqlite.dialect(), None)
    assert process("2026-01-02 03:04:05.123456") == datetime(2026, 1, 2, 3, 4, 5, 123456, UTC)
    assert process("2026-01-02 03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    east = process("2026-01-02T05:04:05+02:00")
    assert east == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) and east.utcoffset() == timedelta(0)
    assert process(None) is None


def test_a_fixed_statement_takes_its_own_literals_and_demands_its_parameters() -> None:
    from sqlalchemy.dialects import sqlite

    table = Project.__table__
    statement = sa.select(table.c.id).where(
        table.c.title == sa.bindparam("q"),
        table.c.description.is_not_distinct_from(sa.literal(None, sa.Text)),
        table.c.github_repo == sa.literal("repo"),
    )
    cache = driver.StatementCache(sqlite.dialect())
    prepared = cache.prepare_fixed(statement, {"q": "title"})
    assert prepared is not None and prepared[1] == ["title", None, "repo"]
    with pytest.raises(KeyError):
        cache.prepare_fixed(statement, {})
