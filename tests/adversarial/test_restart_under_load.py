"""8 clients write while their server restarts twice (a private PostgreSQL and a private MariaDB).

Each client writes tasks with titles of its own and keeps a ledger: a title whose commit returned
is committed; one whose commit raised may or may not be. Afterwards, checked with plain SQL:
0 committed titles lost, 0 titles stored twice, and every failure a ``DataLayerError`` subclass.
``TEST_RESTART_SECONDS`` is how long the clients write (8 by default).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.bootstrap import DataLayer, bootstrap
from app.config import Settings
from app.domain import Project, Task
from app.errors import DataLayerError
from tests.support import fetch_all
from tests.support.mariadb_instance import MariaDBInstance, mariadb_instance

SECONDS = float(os.environ.get("TEST_RESTART_SECONDS", "8"))
CLIENTS = 8


class PrivatePostgres:
    """A pgserver PostgreSQL of the test's own, restarted with its own ``pg_ctl``."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
        self.directory = Path(tempfile.mkdtemp(prefix="archon-restart-pg-"))
        self.server = pgserver.get_server(self.directory / "pgdata", cleanup_mode="delete")
        self.url = self.server.get_uri().replace("postgresql://", "postgresql+asyncpg://", 1)

    def restart(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "-l", str(self.server.log), "restart"],
               pgdata=self.server.pgdata, user=self.server.system_user)  # fmt: skip

    def close(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.close()


@pytest.fixture
def private_mariadb() -> Iterator[MariaDBInstance]:
    with mariadb_instance() as instance:
        yield instance


async def _client(
    layer: DataLayer, project_id: Any, number: int, deadline: float, ledger: dict[str, str]
) -> Counter[str]:
    errors: Counter[str] = Counter()
    step = 0
    while time.monotonic() < deadline:
        step += 1
        title = f"c{number}-{step}"

        async def work(uow: Any, title: str = title) -> None:
            await uow.tasks.add(Task(project_id=project_id, title=title))

        try:
            await layer.run_in_transaction(work)
        except DataLayerError as exc:
            errors[type(exc).__name__] += 1
            ledger[title] = "unknown"  # the commit may have happened before the connection died
            await asyncio.sleep(0.05)
        except Exception as exc:  # the point of the test: none may escape untyped
            errors[f"UNTYPED {type(exc).__name__}: {exc}"] += 1
        else:
            ledger[title] = "committed"
    return errors


async def _under_restarts(url: str, restart: Callable[[], None]) -> None:
    layer = bootstrap(Settings(_env_file=None, database_url=url, vector_database="exact",
                               database_pool_size=CLIENTS))  # fmt: skip
    await layer.migrate()
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="load"))
        await uow.commit()
    ledger: dict[str, str] = {}
    deadline = time.monotonic() + SECONDS

    async def restarts() -> None:
        for _ in range(2):
            await asyncio.sleep(SECONDS / 3)
            await asyncio.to_thread(restart)

    clients = [_client(layer, project.id, n, deadline, ledger) for n in range(CLIENTS)]
    *counts, _ = await asyncio.gather(*clients, restarts())
    errors = sum(counts, Counter())
    rows = await fetch_all(layer, "SELECT title FROM archon_tasks")
    await layer.aclose()

    stored = Counter(row.title for row in rows)
    committed = [title for title, state in ledger.items() if state == "committed"]
    lost = [title for title in committed if stored[title] == 0]
    duplicated = [title for title, count in stored.items() if count > 1]
    untyped = [error for error in errors if error.startswith("UNTYPED")]
    print(f"\n{url.split(':')[0]}: {len(committed)} committed, {sum(errors.values())} failed "
          f"({dict(errors)}), lost {len(lost)}, duplicated {len(duplicated)}")  # fmt: skip
    assert committed, "no write got through: the test proved nothing"
    assert (lost, duplicated, untyped) == ([], [], [])


async def test_postgresql_restarting_under_load(private_postgres: PrivatePostgres) -> None:
    await _under_restarts(private_postgres.url, private_postgres.restart)


async def test_mariadb_restarting_under_load(private_mariadb: MariaDBInstance) -> None:
    await _under_restarts(private_mariadb.url, private_mariadb.restart)


async def _after_restart(url: str, restart: Callable[[], None], pre_ping: bool) -> list[str]:
    """Outcomes of read-only, write, read-only, write Units of Work right after a restart."""
    layer = bootstrap(Settings(_env_file=None, database_url=url, vector_database="exact",
                               database_pool_pre_ping=pre_ping))  # fmt: skip
    await layer.migrate()
    for read_only in (True, False):  # a pooled connection on each pool
        async with layer.uow(read_only=read_only) as uow:
            await uow.projects.count()
    await asyncio.to_thread(restart)
    outcomes = []
    for read_only in (True, False, True, False):
        try:
            async with layer.uow(read_only=read_only) as uow:
                await uow.projects.count()
            outcomes.append("ok")
        except DataLayerError as exc:
            outcomes.append(type(exc).__name__)
    await layer.aclose()
    return outcomes


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
async def test_pre_ping_decides_whether_a_restart_is_seen(
    kind: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("private_postgres" if kind == "postgresql" else
                                     "private_mariadb")  # fmt: skip
    unavailable = "BackendUnavailableError"
    # Off: on MariaDB the first Unit of Work on each pool (readers, writers) meets the dead
    # connection once. asyncpg knows by itself that the server closed its connection: the pool
    # replaces it at checkout (app.failover), and no Unit of Work fails.
    off = ["ok"] * 4 if kind == "postgresql" else [unavailable, unavailable, "ok", "ok"]
    assert await _after_restart(server.url, server.restart, pre_ping=False) == off
    assert await _after_restart(server.url, server.restart, pre_ping=True) == ["ok"] * 4
