"""Supabase mode behind a transaction pooler: many clients, no prepared-statement collisions.

pgbouncer in transaction mode hands each transaction any server connection; asyncpg's cached,
named prepared statements then meet connections that never prepared them. Supabase mode turns the
cache off and names every statement uniquely (the whole repository contract suite also runs on
this backend, see ``pytest.mark.pooler``).
"""

from __future__ import annotations

import asyncio

import pytest

from app.config import DatabaseType
from app.domain import Project, Task

pytestmark = [pytest.mark.backends("pgbouncer"), pytest.mark.pooler]

CLIENTS = 20


async def test_concurrent_clients_through_the_pooler(layer, sql) -> None:
    assert layer.settings.database_type is DatabaseType.SUPABASE

    async def client(n: int) -> int:
        for round_ in range(3):
            async with layer.uow() as uow:
                project = await uow.projects.add(Project(title=f"p{n}-{round_}"))
                await uow.tasks.add(Task(project_id=project.id, title="t"))
                await uow.commit()
            async with layer.uow(read_only=True) as uow:
                await uow.tasks.list(filters={"project_id": project.id})
        async with layer.uow(read_only=True) as uow:
            return await uow.projects.count({"title": {"like": f"p{n}-%"}})

    counts = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    assert counts == [3] * CLIENTS
    assert await sql.scalar("SELECT count(*) FROM archon_tasks") == 3 * CLIENTS
