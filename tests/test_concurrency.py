"""Concurrent writers, each in its own Unit of Work: no lost update, no duplicate number.

Twenty transactions run at once (``asyncio.gather``) on every backend, and behind pgbouncer in
transaction mode. They are released together so that they really contend for the same rows;
``run_in_transaction`` retries the ones a backend aborts as deadlocked or unserializable.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.bootstrap import DataLayer
from app.domain import Project, TaskStatus
from app.testing import ProjectFactory, TaskFactory, save
from tests.support import LayerFactory, Sql

pytestmark = pytest.mark.pooler

WRITERS = 20
Work = Callable[[Any], Awaitable[Any]]


@pytest.fixture
async def pooled(make_layer: LayerFactory) -> DataLayer:
    """A layer whose pool lets every writer hold a connection at once."""
    return await make_layer(database_pool_size=WRITERS)


async def race(layer: DataLayer, works: list[Work]) -> list[Any]:
    """Run every ``work`` in its own transaction, all released at the same moment."""
    start = asyncio.Event()

    async def one(work: Work) -> Any:
        async def gated(uow: Any) -> Any:
            await start.wait()
            return await work(uow)

        return await layer.run_in_transaction(gated, attempts=10)

    pending = [asyncio.ensure_future(one(work)) for work in works]
    await asyncio.sleep(0.05)  # let every writer reach the gate
    start.set()
    return await asyncio.gather(*pending)


async def new_project(layer: DataLayer, tasks: int = 0) -> tuple[Project, list[Any]]:
    project = ProjectFactory.build()
    built = TaskFactory.build_batch(tasks, project=project, status=TaskStatus.TODO)
    for order, task in enumerate(built):
        task.task_order = order
    async with layer.uow() as uow:
        await save(uow, project, *built)
        await uow.commit()
    return project, built


def db_uuid(layer: DataLayer, value: uuid.UUID) -> Any:
    return value if layer.dialect_name == "postgresql" else value.hex


async def test_concurrent_moves_lose_no_update(pooled: DataLayer, sql: Sql) -> None:
    project, tasks = await new_project(pooled, tasks=10)
    rng = random.Random(20)
    columns = [TaskStatus.TODO, TaskStatus.DOING]

    def mover(task_id: uuid.UUID, position: int, status: TaskStatus) -> Work:
        return lambda uow: uow.tasks.move(task_id, position, status=status)

    moves = [
        mover(rng.choice(tasks).id, rng.randrange(len(tasks)), rng.choice(columns))
        for _ in range(WRITERS)
    ]
    await race(pooled, moves)
    rows = await sql.all(
        "SELECT id, status, task_order FROM archon_tasks WHERE project_id = :p",
        p=db_uuid(pooled, project.id),
    )
    assert sorted(uuid.UUID(str(r[0])) for r in rows) == sorted(t.id for t in tasks)
    for status in ("todo", "doing"):
        orders = sorted(r[2] for r in rows if r[1] == status)
        assert orders == list(range(len(orders))), f"{status}: {orders}"


async def test_concurrent_document_versions_are_numbered_once_each(
    pooled: DataLayer, sql: Sql
) -> None:
    project, _ = await new_project(pooled)

    def writer(n: int) -> Work:
        return lambda uow: uow.document_versions.create_next(project.id, "docs", [{"draft": n}])

    created = await race(pooled, [writer(n) for n in range(WRITERS)])
    assert sorted(v.version_number for v in created) == list(range(1, WRITERS + 1))
    rows = await sql.all(
        "SELECT version_number FROM archon_document_versions "
        "WHERE project_id = :p AND field_name = 'docs'",
        p=db_uuid(pooled, project.id),
    )
    assert sorted(r[0] for r in rows) == list(range(1, WRITERS + 1))


async def test_concurrent_links_and_settings_never_duplicate(pooled: DataLayer, sql: Sql) -> None:
    project, _ = await new_project(pooled)

    def link(_: int) -> Work:
        return lambda uow: uow.project_sources.link(project.id, "shared-source")

    def setting(n: int) -> Work:
        return lambda uow: uow.settings.set_value("RACED_KEY", f"value-{n}", encrypt=n % 2 == 0)

    links = await race(pooled, [link(n) for n in range(WRITERS)])
    assert len({ps.id for ps in links}) == 1
    await race(pooled, [setting(n) for n in range(WRITERS)])
    assert await sql.scalar("SELECT COUNT(*) FROM archon_project_sources") == 1
    key = pooled.engine.dialect.identifier_preparer.quote("key")
    columns = "value, encrypted_value, is_encrypted"
    rows = await sql.all(f"SELECT {columns} FROM archon_settings WHERE {key} = 'RACED_KEY'")
    assert len(rows) == 1
    value, encrypted, is_encrypted = rows[0]
    assert (value is None) == bool(is_encrypted) and (encrypted is None) != bool(is_encrypted)
    async with pooled.uow(read_only=True) as uow:
        final = await uow.settings.get_value("RACED_KEY")
    assert final in {f"value-{n}" for n in range(WRITERS)}
