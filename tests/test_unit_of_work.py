"""The Unit of Work contract, on every backend: commit, rollback, savepoints, read-only, retries."""

from __future__ import annotations

import asyncio

import pytest

from app.domain import Project, Source
from app.errors import (
    BackendUnavailableError,
    ConflictError,
    DataLayerError,
    InvalidInputError,
    RetryableError,
    UnsupportedFeatureError,
)

pytestmark = pytest.mark.pooler


async def test_commit_makes_writes_durable(layer, sql) -> None:
    async with layer.uow() as uow:
        await uow.projects.add(Project(title="kept"))
        await uow.commit()
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 1


async def test_leaving_without_commit_rolls_back(layer, sql) -> None:
    async with layer.uow() as uow:
        await uow.projects.add(Project(title="dropped"))
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 0


async def test_exception_rolls_back_and_propagates(layer, sql) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with layer.uow() as uow:
            await uow.projects.add(Project(title="dropped"))
            raise RuntimeError("boom")
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 0


async def test_entities_stay_usable_after_the_block(layer) -> None:
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="p"))
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        read = await uow.projects.get_or_raise(project.id)
    assert read.title == "p" and read.created_at is not None


async def test_savepoint_rolls_back_only_nested_work(layer, sql) -> None:
    async with layer.uow() as uow:
        await uow.sources.add(Source(source_id="outer"))
        with pytest.raises(ConflictError):
            async with uow.savepoint():
                await uow.sources.add(Source(source_id="inner"))
                await uow.sources.add(Source(source_id="outer"))  # duplicate key
        async with uow.savepoint():
            await uow.sources.add(Source(source_id="second"))
        await uow.commit()
    rows = await sql.all("SELECT source_id FROM archon_sources ORDER BY source_id")
    assert [r[0] for r in rows] == ["outer", "second"]


async def test_read_only_uow_cannot_commit(layer, sql) -> None:
    async with layer.uow(read_only=True) as uow:
        with pytest.raises(UnsupportedFeatureError):
            await uow.commit()
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 0


@pytest.mark.backends("sqlite", "pgvector", "postgres", "pgbouncer", "mariadb")
async def test_read_only_uow_is_read_only_in_the_database(layer, sql) -> None:
    with pytest.raises(DataLayerError):
        async with layer.uow(read_only=True) as uow:
            await uow.projects.add(Project(title="nope"))
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 0


@pytest.mark.backends("sqlite", "mariadb")
async def test_read_only_uow_sends_no_rollback(layer, monkeypatch) -> None:
    """Readers run autocommit: leaving one sends nothing to the driver, writers still roll back."""
    import aiomysql
    import aiosqlite

    rollbacks = []
    for driver in (aiosqlite.Connection, aiomysql.Connection):
        original = driver.rollback

        async def counted(self, _original=original):
            rollbacks.append(1)
            return await _original(self)

        monkeypatch.setattr(driver, "rollback", counted)
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="p"))
        await uow.commit()
    rollbacks.clear()
    for _ in range(3):
        async with layer.uow(read_only=True) as uow:
            assert await uow.projects.get(project.id) is not None
            assert len(await uow.projects.list()) == 1
    assert rollbacks == []
    async with layer.uow() as uow:
        await uow.projects.add(Project(title="never committed"))
    assert rollbacks  # an open transaction is always rolled back
    async with layer.uow(read_only=True) as uow:
        assert await uow.projects.count() == 1


@pytest.mark.backends("mariadb")
async def test_read_only_isolation_level_does_not_outlive_its_uow(layer) -> None:
    async with layer.uow(read_only=True, isolation_level="REPEATABLE READ") as reader:
        assert await reader.projects.count() == 0
        async with layer.uow() as writer:
            await writer.projects.add(Project(title="p"))
            await writer.commit()
        assert await reader.projects.count() == 0  # one snapshot
    async with layer.uow(read_only=True, isolation_level="READ UNCOMMITTED"):
        pass
    async with layer.uow(read_only=True) as uow:
        assert await uow.projects.count() == 1
        level = (await uow.session.execute(_text("SELECT @@tx_isolation"))).scalar_one()
        autocommit = (await uow.session.execute(_text("SELECT @@autocommit"))).scalar_one()
    assert (level.replace("-", " ").upper(), autocommit) == ("REPEATABLE READ", 1)


async def test_unknown_isolation_level_is_refused(layer) -> None:
    with pytest.raises(InvalidInputError, match="isolation level"):
        layer.uow(isolation_level="CHAOTIC")


async def test_isolation_level_is_applied(layer) -> None:
    async with layer.uow(isolation_level="SERIALIZABLE") as uow:
        await uow.projects.count()
        mariadb = getattr(layer.engine.dialect, "is_mariadb", False)  # known once connected
        queries = {
            "postgresql": "SHOW transaction_isolation",
            # MariaDB before 11.1 knows only the older name; MySQL 8 only the newer one.
            "mysql": "SELECT @@tx_isolation" if mariadb else "SELECT @@transaction_isolation",
        }
        if layer.dialect_name in queries:
            level = (await uow.session.execute(_text(queries[layer.dialect_name]))).scalar_one()
            assert level.replace("-", " ").upper() == "SERIALIZABLE"


async def test_using_a_closed_uow_is_an_error(layer) -> None:
    uow = layer.uow()
    with pytest.raises(DataLayerError, match="not open"):
        _ = uow.session


async def test_run_in_transaction_retries_lost_races(layer, sql) -> None:
    attempts = 0

    async def work(uow) -> str:
        nonlocal attempts
        attempts += 1
        await uow.projects.add(Project(title=f"try {attempts}"))
        if attempts < 3:
            raise RetryableError("simulated serialization failure")
        return "done"

    assert await layer.run_in_transaction(work, attempts=5) == "done"
    assert attempts == 3
    rows = await sql.all("SELECT title FROM archon_projects")
    assert [r[0] for r in rows] == ["try 3"]


async def test_run_in_transaction_gives_up_after_the_last_attempt(layer) -> None:
    async def work(uow) -> None:
        raise RetryableError("always loses")

    with pytest.raises(RetryableError):
        await layer.run_in_transaction(work, attempts=2)


@pytest.mark.backends("pgvector", "postgres", "mariadb")
async def test_real_serialization_conflicts_are_retried(layer, sql) -> None:
    """Concurrent read-modify-write increments under SERIALIZABLE: none is lost."""
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="counter", description="0"))
        await uow.commit()
    gate = asyncio.Barrier(4)

    async def increment(uow) -> None:
        current = await uow.projects.get_or_raise(project.id)
        if gate.n_waiting < 4 and not gate.broken:
            try:
                await asyncio.wait_for(gate.wait(), 0.5)
            except (TimeoutError, asyncio.BrokenBarrierError):
                pass
        await uow.projects.update(project.id, {"description": str(int(current.description) + 1)})

    await asyncio.gather(
        *(
            layer.run_in_transaction(increment, attempts=20, isolation_level="SERIALIZABLE")
            for _ in range(4)
        )
    )
    assert await sql.scalar("SELECT description FROM archon_projects") == "4"


def _text(statement: str):
    from sqlalchemy import text

    return text(statement)


@pytest.mark.backends("pgvector", "postgres", "mariadb")
async def test_a_database_restart_fails_one_call_then_the_next_works(layer, sql) -> None:
    """Pooled connections are not pinged: one the server dropped fails once, translated, and the
    pool is renewed, so the next Unit of Work works (writers and readers alike)."""
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="before"))
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        assert await uow.projects.get(project.id) is not None
    await sql.drop_other_connections()
    await asyncio.sleep(0.2)

    async def write() -> None:
        async with layer.uow() as uow:
            await uow.projects.update(project.id, {"title": "after"})
            await uow.commit()

    async def read() -> str:
        async with layer.uow(read_only=True) as uow:
            return (await uow.projects.get_or_raise(project.id)).title

    for call in (write, read):
        try:
            await call()
        except BackendUnavailableError:
            pass  # the dropped connection: reported once, as what it is
    await write()
    assert await read() == "after"


async def test_a_unit_of_work_can_be_reopened_but_not_nested(layer, sql) -> None:
    uow = layer.uow()
    async with uow:
        await uow.projects.add(Project(title="first"))
        with pytest.raises(DataLayerError, match="open already"):
            async with uow:
                pass
        await uow.commit()
    async with uow:  # a fresh session and fresh repositories
        await uow.projects.add(Project(title="second"))
        await uow.commit()
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 2
