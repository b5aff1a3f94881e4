"""The Unit of Work's lease (app.repositories.lease), on every backend: statements on the driver
path and statements through the session share one pooled connection and one transaction; the
connection goes back to the pool when the transaction ends."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from app.domain import Project, Task
from app.errors import BackendUnavailableError, ConflictError, DataLayerError
from app.repositories.lease import LEASE, connected


def _checked_out(layer) -> int:
    return layer.engine.sync_engine.pool.checkedout()


def _leased(uow) -> bool:
    return uow.session.info[LEASE].held


async def _warm(layer) -> None:
    """A first connection learns the server's version; until then the session connects."""
    async with layer.uow() as uow:
        await uow.projects.list()


async def _counts(sql) -> tuple[int, int]:
    return (
        await sql.scalar("SELECT count(*) FROM archon_projects"),
        await sql.scalar("SELECT count(*) FROM archon_tasks"),
    )


@pytest.mark.parametrize("end", ["rollback", "commit"])
async def test_driver_and_session_statements_are_one_transaction(layer, sql, end) -> None:
    await _warm(layer)
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="p"))  # one row: the driver path
        expect_lease = uow.session.info[LEASE].held
        # Two rows go through the session: on another connection they would not see the
        # project (a foreign key error) or, on SQLite, would wait for its write lock.
        await uow.tasks.add_many([Task(project_id=project.id, title=t) for t in ("a", "b")])
        await uow.projects.update(project.id, {"title": "q"})
        assert _checked_out(layer) == 1
        if expect_lease:
            assert _leased(uow)
        await (uow.rollback() if end == "rollback" else uow.commit())
        assert _checked_out(layer) == 0 and not _leased(uow)
    assert await _counts(sql) == ((0, 0) if end == "rollback" else (1, 2))
    if end == "commit":
        assert await sql.scalar("SELECT title FROM archon_projects") == "q"


async def test_the_lease_is_taken_on_the_driver_path_and_given_back(make_layer, sql) -> None:
    layer = await make_layer()
    logged = await make_layer(enable_query_logging=True)  # SQLAlchemy's path: no lease taken
    await _warm(layer)
    await _warm(logged)
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="p"))
        # The session began nothing, yet holds the stored entity: a read gives the same object.
        assert _leased(uow) and not uow.session.sync_session.in_transaction()
        assert await uow.projects.get(project.id) is project
        assert not connected(uow.session.sync_session)
        await uow.commit()
        assert not _leased(uow) and _checked_out(layer) == 0
        # Still usable: the next statement takes a connection again.
        await uow.projects.add(Project(title="p2"))
        await uow.commit()
    async with logged.uow() as uow:
        await uow.projects.add(Project(title="p3"))
        assert not _leased(uow)
        await uow.commit()
    assert await _counts(sql) == (3, 0)
    for read_only in (True, False):
        async with layer.uow(read_only=read_only) as uow:
            assert len(await uow.projects.list()) == 3
        assert _checked_out(layer) == 0


async def test_a_savepoint_after_the_lease_holds_the_driver_statements(layer, sql) -> None:
    await _warm(layer)
    async with layer.uow() as uow:
        await uow.projects.add(Project(title="kept"))
        assert _leased(uow)
        with pytest.raises(ConflictError):
            async with uow.savepoint():
                project = await uow.projects.add(Project(title="inner"))
                await uow.projects.add(Project(id=project.id, title="again"))  # duplicate key
        await uow.commit()
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 1
    assert await sql.scalar("SELECT title FROM archon_projects") == "kept"


async def test_a_failed_driver_write_needs_a_rollback_then_the_lease_is_fresh(layer, sql) -> None:
    await _warm(layer)
    async with layer.uow() as uow:
        first = await uow.projects.add(Project(title="a"))
        assert _leased(uow)
        with pytest.raises(ConflictError):
            await uow.projects.add(Project(id=first.id, title="b"))
        with pytest.raises(DataLayerError, match="nothing was committed"):
            await uow.commit()
        assert not _leased(uow) and _checked_out(layer) == 0
        await uow.projects.add(Project(title="c"))
        await uow.commit()
    assert [r[0] for r in await sql.all("SELECT title FROM archon_projects")] == ["c"]


async def test_concurrent_calls_cannot_split_the_transaction(layer, sql) -> None:
    await _warm(layer)
    await layer.engine.dispose()  # the next checkout connects, which waits for the server
    async with layer.uow() as uow:
        outcomes = await asyncio.gather(
            uow.projects.add(Project(title="a")),
            uow.projects.add(Project(title="b")),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, DataLayerError)]
        assert len(refused) == 1 and "concurrently" in str(refused[0])
        assert _checked_out(layer) == 1  # the one that connected holds the only connection
        await uow.rollback()
        await uow.projects.add(Project(title="c"))
        await uow.commit()
    assert [r[0] for r in await sql.all("SELECT title FROM archon_projects")] == ["c"]
    assert _checked_out(layer) == 0


@pytest.mark.backends("pgvector", "postgres", "mariadb")
async def test_a_dropped_connection_fails_the_write_then_the_next_unit_of_work_works(
    layer, sql
) -> None:
    await _warm(layer)
    async with layer.uow() as uow:
        await uow.projects.add(Project(title="lost"))
        assert _leased(uow)
        await sql.drop_other_connections()
        await asyncio.sleep(0.2)
        with pytest.raises(BackendUnavailableError):
            await uow.projects.add(Project(title="also lost"))
        with pytest.raises(DataLayerError, match="nothing was committed"):
            await uow.commit()
    async with layer.uow() as uow:
        await uow.projects.add(Project(title="kept"))
        await uow.commit()
    assert [r[0] for r in await sql.all("SELECT title FROM archon_projects")] == ["kept"]
    assert _checked_out(layer) == 0


@pytest.mark.backends("pgvector", "postgres", "mariadb")
@pytest.mark.parametrize("leased", [True, False])
async def test_the_error_that_ends_the_block_is_never_replaced_by_a_dead_connection(
    layer, sql, leased: bool
) -> None:
    await _warm(layer)
    with pytest.raises(KeyError, match="the caller's own error"):
        async with layer.uow() as uow:
            if leased:
                await uow.projects.add(Project(title="lost"))
            else:
                await uow.session.execute(sa.text("SELECT 1"))  # the session's own connection
            await sql.drop_other_connections()
            await asyncio.sleep(0.2)
            raise KeyError("the caller's own error")
    async with layer.uow() as uow:  # the dead connection left the pool quietly
        await uow.projects.add(Project(title="kept"))
        await uow.commit()
    assert [r[0] for r in await sql.all("SELECT title FROM archon_projects")] == ["kept"]
    assert _checked_out(layer) == 0
