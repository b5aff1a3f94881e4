"""Row ids are never handed out again, even after the server restarts (a private MariaDB).

InnoDB before MariaDB 10.2.4 / MySQL 8 recomputed AUTO_INCREMENT as max(id) + 1 at start-up, so
deleting the newest rows and restarting reused their ids; a store's vector for a deleted row
would then answer for a new one. Checked with the layer on Chroma: no hit is ever attributed to a
row it was not written for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bootstrap import bootstrap
from app.config import Settings
from app.domain import CrawledPage, Source
from tests.support import fetch_scalar
from tests.support.mariadb_instance import MariaDBInstance, mariadb_instance
from tests.vector_fixtures import clustered

VECTORS = clustered(20, 384, centres=2, seed=3)


@pytest.fixture
def mariadb() -> Iterator[MariaDBInstance]:
    with mariadb_instance() as instance:
        yield instance


async def test_deleted_ids_stay_unused_across_a_restart(
    mariadb: MariaDBInstance, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, database_url=mariadb.url, vector_database="chroma",
                        chroma_path=str(tmp_path / "store"))  # fmt: skip
    layer = bootstrap(settings)
    await layer.migrate()
    items = [
        (CrawledPage(url=f"https://a.test/{i}", chunk_number=0, content="x", source_id="a"),
         VECTORS[i])
        for i in range(10)
    ]  # fmt: skip
    await layer.ingest(Source(source_id="a", title="a"), items)
    newest = max(int(chunk.id or 0) for chunk, _ in items)
    async with layer.uow() as uow:  # the newest rows go: a restart must not hand their ids out
        await uow.sources.delete("a")
        await uow.commit()
    await layer.aclose()

    mariadb.restart()

    layer = bootstrap(settings)
    async with layer.uow() as uow:
        await uow.sources.add(Source(source_id="b", title="b"))
        fresh = await uow.pages.add_many(
            CrawledPage(url=f"https://b.test/{i}", chunk_number=0, content="y", source_id="b")
            for i in range(10)
        )
        await uow.commit()
    assert min(int(page.id or 0) for page in fresh) > newest
    for position in range(10):
        assert await layer.search("crawled_pages", vector=list(VECTORS[position]), k=3) == []
    stored = await fetch_scalar(layer, "SELECT count(*) FROM archon_vector_outbox")
    assert stored == 0
    await layer.aclose()
