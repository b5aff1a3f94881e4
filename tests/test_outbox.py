"""The vector outbox: Chroma writes recorded in the SQL transaction and applied after commit.

Runs on every backend, against a real Chroma (embedded, or a ``chroma run`` server that the tests
stop and start). The database is checked with plain SQL; the store through its own index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from app.bootstrap import DataLayer
from app.cli import _register
from app.cli import app as cli
from app.domain import CrawledPage, Source
from app.errors import InvalidInputError
from app.vector.outbox.rows import as_vector
from app.vector.outbox.table import OUTBOX_TABLE, pending_summary, replay_pending
from app.vector.port import VectorRecord
from tests.chroma_server import ChromaServer
from tests.support import Backend, LayerFactory, execute, fetch_all, fetch_scalar
from tests.vector_fixtures import clustered

COLLECTION = "crawled_pages"
SECRET = "hunter2"


@pytest.fixture
def server() -> Iterator[ChromaServer]:
    chroma = ChromaServer()
    chroma.start()
    yield chroma
    chroma.close()


def _credentialed(server: ChromaServer) -> str:
    # Chroma ignores URL credentials; they are here to prove no message or row ever shows them.
    return server.url.replace("http://", f"http://admin:{SECRET}@")


@pytest.fixture
async def embedded_layer(make_layer: LayerFactory, tmp_path: Path) -> DataLayer:
    return await make_layer(vector_database="chroma", chroma_path=str(tmp_path / "chroma"))


@pytest.fixture
async def server_layer(make_layer: LayerFactory, server: ChromaServer) -> DataLayer:
    return await make_layer(vector_database="chroma", chroma_url=_credentialed(server))


VECTORS = clustered(40, 384, centres=4, seed=21)


async def write_pages(
    layer: DataLayer,
    n: int,
    *,
    source_id: str = "src-a",
    commit: bool = True,
    with_vectors: bool = True,
) -> list[int]:
    """A source and ``n`` pages with their vectors, in one Unit of Work."""
    async with layer.uow() as uow:
        await uow.sources.upsert_many(
            [Source(source_id=source_id, title=source_id)], on=["source_id"]
        )
        pages = await uow.pages.add_many(
            CrawledPage(url=f"https://{source_id}.test/{i}", chunk_number=0, content=f"page {i}",
                        source_id=source_id, metadata_={"n": i})
            for i in range(n)
        )  # fmt: skip
        ids = [page.id for page in pages if page.id is not None]
        if with_vectors:
            records = [_record(i, p, source_id) for p, i in enumerate(ids)]
            await uow.vectors.upsert(COLLECTION, records)
        if commit:
            await uow.commit()
    return ids


def _record(row_id: int, position: int, source_id: str, vector: Any = None) -> VectorRecord:
    vector = VECTORS[position] if vector is None else vector
    return VectorRecord(row_id, list(vector), {"source_id": source_id, "n": position})


async def outbox_rows(layer: DataLayer) -> list[Any]:
    return await fetch_all(
        layer, f"SELECT record_id, op, attempts, last_error FROM {OUTBOX_TABLE} ORDER BY id"
    )


async def page_count(layer: DataLayer) -> int:
    return int(await fetch_scalar(layer, "SELECT count(*) FROM archon_crawled_pages"))


def cli_env(backend: Backend, server: ChromaServer) -> dict[str, str]:
    return {
        "DATABASE_URL": backend.url,
        "VECTOR_DATABASE": "chroma",
        "CHROMA_URL": _credentialed(server),
    }


async def run_cli(args: list[str], env: dict[str, str]) -> Result:
    """``archon-db ARGS`` in a worker thread (the command runs its own event loop)."""
    _register()
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, args, env=env, catch_exceptions=False)


async def test_vectors_reach_the_store_only_after_commit(embedded_layer: DataLayer) -> None:
    index = embedded_layer.vector_index
    async with embedded_layer.uow() as uow:
        await uow.sources.add(Source(source_id="src-a", title="a"))
        (page,) = await uow.pages.add_many(
            [CrawledPage(url="https://a.test/0", chunk_number=0, content="x", source_id="src-a")]
        )
        assert page.id is not None
        await uow.vectors.upsert(COLLECTION, [_record(page.id, 0, "src-a")])
        assert await index.count(COLLECTION) == 0
        await uow.commit()
        assert uow.vectors.last_report.applied == 1

    assert await index.count(COLLECTION) == 1
    assert await outbox_rows(embedded_layer) == []
    (hit,) = await index.query(COLLECTION, list(VECTORS[0]), k=1)
    assert hit.id == page.id


async def test_a_rolled_back_unit_of_work_leaves_nothing_anywhere(
    embedded_layer: DataLayer,
) -> None:
    await write_pages(embedded_layer, 5, commit=False)

    assert await embedded_layer.vector_index.count(COLLECTION) == 0
    assert await outbox_rows(embedded_layer) == []
    assert await page_count(embedded_layer) == 0


async def test_a_refused_vector_fails_inside_the_unit_of_work(embedded_layer: DataLayer) -> None:
    async with embedded_layer.uow() as uow:
        with pytest.raises(InvalidInputError, match="383"):
            await uow.vectors.upsert(COLLECTION, [VectorRecord(1, [0.1] * 383)])
        with pytest.raises(InvalidInputError, match="NaN"):
            await uow.vectors.upsert(COLLECTION, [VectorRecord(1, [float("nan")] * 384)])
    assert await outbox_rows(embedded_layer) == []


async def test_a_stopped_store_keeps_the_commit_and_sync_brings_it_level(
    server_layer: DataLayer, server: ChromaServer, backend: Backend
) -> None:
    server.stop()
    ids = await write_pages(server_layer, 8)  # the commit succeeds; applying it does not

    assert await page_count(server_layer) == 8
    pending = await outbox_rows(server_layer)
    assert [row.record_id for row in pending] == [str(i) for i in ids]
    assert all(row.op == "upsert" and row.attempts == 1 for row in pending)
    assert all("could not be reached" in row.last_error for row in pending)
    assert not any(SECRET in row.last_error for row in pending)

    status = await run_cli(["vectors", "status"], cli_env(backend, server))
    assert status.exit_code == 2 and SECRET not in status.output  # the store is down
    still_down = await run_cli(["vectors", "sync"], cli_env(backend, server))
    assert still_down.exit_code == 1, still_down.output
    assert "upsert" in still_down.output and SECRET not in still_down.output
    assert [row.attempts for row in await outbox_rows(server_layer)] == [2] * 8

    server.start()
    result = await run_cli(["vectors", "sync"], cli_env(backend, server))

    assert result.exit_code == 0, result.output
    assert "applied 8" in result.output
    assert await outbox_rows(server_layer) == []
    assert await server_layer.vector_index.count(COLLECTION) == 8
    hits = await server_layer.vector_index.query(COLLECTION, list(VECTORS[3]), k=1)
    assert hits[0].id == ids[3]


async def test_vectors_live_in_the_rows_and_the_outbox_holds_only_ids(
    server_layer: DataLayer, server: ChromaServer
) -> None:
    server.stop()
    ids = await write_pages(server_layer, 3)

    rows = await fetch_all(
        server_layer, f"SELECT record_id, op, payload, vector FROM {OUTBOX_TABLE} ORDER BY id"
    )
    assert [(row.record_id, row.op) for row in rows] == [(str(i), "upsert") for i in ids]
    assert all(row.payload is None and row.vector is None for row in rows)
    stored = await fetch_all(
        server_layer,
        "SELECT id, embedding_384, embedding_dimension FROM archon_crawled_pages ORDER BY id",
    )
    for position, row in enumerate(stored):
        vector = as_vector(row.embedding_384, 384)  # a float32 blob, or pgvector's value
        assert np.array_equal(vector, np.asarray(VECTORS[position], dtype=np.float32))
        assert row.embedding_dimension == 384


async def test_writes_undone_inside_the_unit_of_work_never_reach_the_store(
    embedded_layer: DataLayer,
) -> None:
    ids = await write_pages(embedded_layer, 4, with_vectors=False)
    async with embedded_layer.uow() as uow:
        await uow.vectors.upsert(COLLECTION, [_record(ids[0], 1, "src-a")])
        await uow.rollback()  # the first write is gone; the Unit of Work goes on
        await uow.vectors.upsert(COLLECTION, [_record(ids[1], 2, "src-a")])
        with pytest.raises(RuntimeError):
            async with uow.savepoint():
                await uow.vectors.upsert(COLLECTION, [_record(ids[2], 3, "src-a")])
                raise RuntimeError("undo the savepoint")
        await uow.vectors.upsert(COLLECTION, [_record(ids[3], 4, "src-a")])
        await uow.commit()

    hits = await embedded_layer.vector_index.query(COLLECTION, list(VECTORS[0]), k=10)
    assert sorted(int(h.id) for h in hits) == [ids[1], ids[3]]
    assert await outbox_rows(embedded_layer) == []
    with_vectors = await fetch_scalar(
        embedded_layer, "SELECT count(*) FROM archon_crawled_pages WHERE embedding_384 IS NOT NULL"
    )
    assert with_vectors == 2


async def test_a_newer_write_supersedes_an_older_pending_one(
    server_layer: DataLayer, server: ChromaServer
) -> None:
    server.stop()
    ids = await write_pages(server_layer, 2)  # pending: the store is down
    server.start()
    async with server_layer.uow() as uow:
        await uow.vectors.upsert(COLLECTION, [_record(ids[0], 0, "src-a", VECTORS[30])])
        await uow.commit()
        assert uow.vectors.last_report.failed == 0

    # Both rows of ids[0] went (the older one superseded); ids[1] waits for a replay.
    assert [row.record_id for row in await outbox_rows(server_layer)] == [str(ids[1])]
    (hit,) = await server_layer.vector_index.query(COLLECTION, list(VECTORS[30]), k=1)
    assert hit.id == ids[0] and hit.score == pytest.approx(1.0, abs=1e-3)
    assert await server_layer.vector_index.count(COLLECTION) == 1


async def test_deleting_rows_deletes_their_vectors(embedded_layer: DataLayer) -> None:
    keep = await write_pages(embedded_layer, 3, source_id="src-keep")
    gone = await write_pages(embedded_layer, 4, source_id="src-gone")
    index = embedded_layer.vector_index

    async with embedded_layer.uow() as uow:  # only the rows: their vectors follow
        assert await uow.pages.delete_where({"source_id": "src-gone"}) == 4
        assert await uow.pages.delete(keep[0])
        await uow.commit()

    assert await index.count(COLLECTION) == 2
    assert await index.count(COLLECTION, {"source_id": "src-gone"}) == 0
    hits = await index.query(COLLECTION, list(VECTORS[0]), k=10)
    assert {h.id for h in hits} == set(keep[1:])
    assert not {h.id for h in hits} & set(gone)


async def test_delete_where_sees_the_writes_of_the_same_unit_of_work(
    embedded_layer: DataLayer,
) -> None:
    ids = await write_pages(embedded_layer, 5, with_vectors=False)
    async with embedded_layer.uow() as uow:
        await uow.vectors.upsert(COLLECTION, [_record(i, p, "src-a") for p, i in enumerate(ids)])
        assert await uow.vectors.delete_where(COLLECTION, {"metadata.n": {"gte": 3}}) == 2
        await uow.commit()

    assert await embedded_layer.vector_index.count(COLLECTION) == 3
    assert await page_count(embedded_layer) == 5  # the rows stay; only their vectors went


async def test_replays_keep_the_newest_operation_and_are_idempotent(
    server_layer: DataLayer, server: ChromaServer
) -> None:
    server.stop()
    ids = await write_pages(server_layer, 6)
    async with server_layer.uow() as uow:  # later operations on the same ids, also pending
        await uow.vectors.delete(COLLECTION, [ids[0]])
        await uow.vectors.upsert(COLLECTION, [_record(ids[1], 1, "src-a", VECTORS[30])])
        await uow.commit()
    snapshot = await fetch_all(server_layer, f"SELECT * FROM {OUTBOX_TABLE} ORDER BY id")
    assert len(snapshot) == 8
    summary = {(s.op, s.count, s.failed) for s in await pending_summary(server_layer.engine)}
    assert summary == {("upsert", 7, 7), ("delete", 1, 1)}

    server.start()
    feed = await server_layer.vector_feed()
    first = await replay_pending(feed)
    state = await _store_state(server_layer)
    await _reinsert(server_layer, snapshot)  # the same operations, delivered again
    second = await replay_pending(feed)

    assert (first.applied, first.failed) == (6, 0)  # one operation per id: the newest
    assert (second.applied, second.failed) == (6, 0)
    assert await _store_state(server_layer) == state
    assert set(state) == {str(i) for i in ids[1:]}
    (hit,) = await server_layer.vector_index.query(COLLECTION, list(VECTORS[30]), k=1)
    assert hit.id == ids[1] and hit.score == pytest.approx(1.0, abs=1e-3)
    assert await replay_pending(feed) == type(first)()  # nothing left


async def _store_state(layer: DataLayer) -> dict[str, int]:
    index = layer.vector_index
    hits = await index.query(COLLECTION, list(VECTORS[0]), k=50)
    return {str(h.id): int(h.metadata["metadata"]["n"]) for h in hits}


async def _reinsert(layer: DataLayer, rows: list[Any]) -> None:
    for row in rows:
        values = {k: v for k, v in row._mapping.items() if k != "id"}
        columns = ", ".join(values)
        placeholders = ", ".join(f":{k}" for k in values)
        await execute(
            layer, f"INSERT INTO {OUTBOX_TABLE} ({columns}) VALUES ({placeholders})", **values
        )


async def test_the_status_command_lists_pending_operations(
    server_layer: DataLayer, server: ChromaServer, backend: Backend, tmp_path: Path
) -> None:
    server.stop()
    await write_pages(server_layer, 2)
    server.start()

    status = await run_cli(["vectors", "status"], cli_env(backend, server))

    assert status.exit_code == 0, status.output
    assert "chroma" in status.output and "crawled_pages" in status.output
    assert "upsert" in status.output  # the pending operations, not yet synced


async def test_the_next_start_replays_what_a_stopped_store_missed(
    server_layer: DataLayer, server: ChromaServer, make_layer: LayerFactory
) -> None:
    server.stop()
    ids = await write_pages(server_layer, 5)
    assert len(await outbox_rows(server_layer)) == 5
    server.start()

    restarted = await make_layer(chroma_url=_credentialed(server), vector_database="chroma")
    report = await restarted.start()

    assert report.applied == 5 and report.failed == 0
    assert await outbox_rows(restarted) == []
    assert await restarted.vector_index.count(COLLECTION) == 5
    hits = await restarted.vector_index.query(COLLECTION, list(VECTORS[2]), k=1)
    assert hits[0].id == ids[2]
