"""Read-only Units of Work go to the read replicas when ENABLE_READ_REPLICAS is on.

A second database stands in for the replica (no replication: each write goes where it is sent),
which is what shows the routing: reads see the replica's rows, writes land on the primary.
"""

from __future__ import annotations

import pytest

from app.bootstrap import bootstrap
from app.config import Settings
from app.domain import Project
from tests.test_migrations import fresh  # noqa: F401  (a fixture)

pytestmark = pytest.mark.backends("sqlite", "postgres")


async def test_reads_use_the_replica_and_writes_the_primary(layer, fresh, sql) -> None:  # noqa: F811
    replica_url = fresh.url.render_as_string(hide_password=False)
    replica = bootstrap(Settings(database_url=replica_url, vector_database="exact"))
    routed = bootstrap(
        Settings(
            database_url=layer.settings.database_url,
            database_read_urls=[replica_url],
            enable_read_replicas=True,
            database_read_your_writes_seconds=0,  # reads go to the replica even after a write
            vector_database="exact",
        )
    )
    try:
        await replica.migrate()
        async with replica.uow() as uow:
            await uow.projects.add(Project(title="on the replica"))
            await uow.commit()

        async with routed.uow() as uow:
            await uow.projects.add(Project(title="on the primary"))
            await uow.commit()
        async with routed.uow(read_only=True) as uow:
            seen = [p.title for p in await uow.projects.list()]
    finally:
        await routed.aclose()
        await replica.aclose()
    assert seen == ["on the replica"]
    assert await sql.scalar("SELECT title FROM archon_projects") == "on the primary"


async def test_replicas_are_ignored_unless_enabled(layer) -> None:
    settings = Settings(
        database_url=layer.settings.database_url,
        database_read_urls=["sqlite+aiosqlite:///elsewhere.db"],
        vector_database="exact",
    )
    assert settings.enable_read_replicas is False
    quiet = bootstrap(settings)
    try:
        assert all("elsewhere" not in str(e.url) for e in quiet.read_engines)
    finally:
        await quiet.aclose()
