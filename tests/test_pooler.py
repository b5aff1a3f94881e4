"""Supabase mode behind a transaction pooler: many clients, no prepared-statement collisions.

pgbouncer in transaction mode hands each transaction any server connection; asyncpg's cached,
named prepared statements then meet connections that never prepared them. Supabase mode turns the
cache off and names every statement uniquely (the whole repository contract suite also runs on
this backend, see ``pytest.mark.pooler``). asyncpg prepares and executes in two round trips, so no
statement runs in autocommit there either: the pooler could split the two across connections.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from app.config import DatabaseType
from app.domain import CrawledPage, Project, Source, Task
from app.errors import RetryableError, translate_errors

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


# -- many concurrent Units of Work, half of them searches, through the pooler -------------------

UNITS = 200
DIMENSION = 8
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _vector(n: int) -> list[float]:
    return [float((n * (i + 3)) % 7 + 1) for i in range(DIMENSION)]


async def _ingest_corpus(layer) -> None:
    source = Source(source_id="pool", title="pool")
    pages = [
        (
            CrawledPage(
                url=f"https://pool.example.com/{n}",
                chunk_number=0,
                content=f"{WORDS[n % len(WORDS)]} {WORDS[(n + 1) % len(WORDS)]} page {n}",
                source_id="pool",
            ),
            _vector(n),
        )
        for n in range(30)
    ]
    await layer.ingest(source, pages)


async def _unit(layer, n: int) -> None:
    kind = n % 8
    if kind == 0:
        await layer.search("crawled_pages", vector=_vector(n), k=5, mode="vector")
    elif kind == 2:
        await layer.search("crawled_pages", text=WORDS[n % len(WORDS)], k=5, mode="keyword")
    elif kind in (4, 6):
        await layer.search("crawled_pages", vector=_vector(n), text=WORDS[n % 6], k=5)
    elif kind == 1:
        async with layer.uow() as uow:
            await uow.projects.add(Project(title=f"u{n}"))
            await uow.commit()
    else:
        async with layer.uow(read_only=True) as uow:
            await uow.pages.list(filters={"source_id": "pool"}, limit=5)


@pytest.mark.parametrize("pool_size", [5, 100])
async def test_200_concurrent_units_half_searches(make_pooled_layer, pool_size: int) -> None:
    layer = await make_pooled_layer(vector_database="pgvector", database_pool_size=pool_size)
    await _ingest_corpus(layer)

    outcomes = await asyncio.gather(
        *(_unit(layer, n) for n in range(UNITS)), return_exceptions=True
    )

    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    assert errors == []
    async with layer.uow(read_only=True) as uow:
        assert await uow.projects.count({"title": {"like": "u%"}}) == UNITS // 8


@pytest.mark.parametrize(
    "statements",
    [
        ["EXECUTE archon_never_prepared"],  # 26000, as when the pooler switched connections
        ["PREPARE archon_twice AS SELECT 1", "PREPARE archon_twice AS SELECT 1"],  # 42P05
    ],
)
async def test_pooler_prepared_statement_errors_are_retryable(layer, statements) -> None:
    with pytest.raises(RetryableError, match="run it again"):
        async with layer.uow() as uow:
            with translate_errors("running a prepared statement"):
                for statement in statements:
                    await uow.session.execute(sa.text(statement))


# -- detection and the command line through the pooler ------------------------------------------


async def test_detection_and_the_command_line_work_through_the_pooler(
    make_layer, backend
) -> None:
    from typer.testing import CliRunner

    from app.cli import _register
    from app.cli import app as cli
    from app.vector.sql.pgvector import PgVectorIndex

    detected = await make_layer(vector_database=None)  # chosen on first use, through pgbouncer
    assert isinstance(await detected.vector_index.resolve(), PgVectorIndex)
    env = {"DATABASE_URL": backend.url, "DATABASE_TYPE": "supabase", "VECTOR_DATABASE": None}
    _register()

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    for args in (
        ("doctor",), ("vectors", "status"), ("search", "rate limit", "--mode", "keyword"),
        ("migrate", "current"), ("vectors", "reconcile"),
    ):  # fmt: skip
        result = await asyncio.to_thread(run, *args)  # one at a time: the runner swaps stdout
        assert result.exit_code == 0, (args, result.output)
