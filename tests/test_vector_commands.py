"""``archon-db vectors reconcile / rebuild / prune / status`` and ``doctor`` on a drifted store, and
the read-only commands that must never create a database or a store folder."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings
from typer.testing import CliRunner, Result

from app.bootstrap import DataLayer, bootstrap
from app.cli import _register
from app.cli import app as cli
from app.config import Settings
from app.domain import CrawledPage, Source
from app.vector.port import VectorRecord
from tests.support import fetch_scalar
from tests.vector_fixtures import clustered

COLLECTION = "crawled_pages"
VECTORS = clustered(30, 384, centres=3, seed=9)
pytestmark = pytest.mark.backends("sqlite")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str | None]:
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'archon.db'}",
        "VECTOR_DATABASE": None,
        "CHROMA_PATH": None,
        "CHROMA_URL": None,
        **extra,
    }


async def run(args: list[str], env: dict[str, str | None], cwd: Path | None = None) -> Result:
    _register()

    def invoke() -> Result:
        before = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
        finally:
            os.chdir(before)

    return await asyncio.to_thread(invoke)


def plain(result: Result) -> str:
    """The output's words in order, table borders and wrapping undone."""
    return " ".join(re.sub(r"[│┌┐└┘├┤┬┴┼─]", " ", result.output).split())


async def migrated(tmp_path: Path, n: int = 12) -> tuple[DataLayer, list[int]]:
    """The embedded default on a file of the test's own: SQLite + Chroma beside it."""
    layer = bootstrap(
        Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'archon.db'}")
    )
    await layer.migrate()
    items = [
        (CrawledPage(url=f"https://a.test/{i}", chunk_number=0, content=f"page {i}",
                     source_id="src-a"), VECTORS[i])
        for i in range(n)
    ]  # fmt: skip
    await layer.ingest(Source(source_id="src-a", title="a"), items)
    return layer, [int(chunk.id or 0) for chunk, _ in items]


async def test_the_embedded_store_lives_beside_the_database_file(tmp_path: Path) -> None:
    layer, _ = await migrated(tmp_path)
    await layer.aclose()
    assert (tmp_path / "archon.db-chroma").is_dir()
    assert not (tmp_path / "chroma_data").exists()


async def test_reconcile_finds_and_repairs_drift_and_says_so(tmp_path: Path) -> None:
    layer, ids = await migrated(tmp_path)
    feed = await layer.vector_feed()
    assert feed is not None
    await feed.store.delete(COLLECTION, [str(ids[0]), str(ids[1])])  # missing from the store
    await layer.aclose()
    env = env_for(tmp_path)

    found = await run(["vectors", "reconcile"], env)
    assert found.exit_code == 1, found.output
    assert "crawled_pages" in found.output and "vectors reconcile --apply" in found.output
    status = await run(["vectors", "status"], env)
    assert "12 in the rows, 10 in the store" in status.output and "DIFFERENT" in status.output

    repaired = await run(["vectors", "reconcile", "--apply"], env)
    assert repaired.exit_code == 0, repaired.output
    level = await run(["vectors", "reconcile"], env)
    assert level.exit_code == 0 and "level" in level.output


async def test_rebuild_after_the_store_folder_was_deleted(tmp_path: Path) -> None:
    layer, ids = await migrated(tmp_path)
    await layer.aclose()
    shutil.rmtree(tmp_path / "archon.db-chroma")
    env = env_for(tmp_path)

    rebuilt = await run(["vectors", "rebuild"], env)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "crawled_pages: 12 vector(s) written (lengths: 384)" in rebuilt.output
    again = bootstrap(Settings(_env_file=None, database_url=env["DATABASE_URL"]))
    (hit,) = await again.search(COLLECTION, vector=list(VECTORS[4]), k=1)
    assert hit.entity.id == ids[4]
    await again.aclose()


async def test_rebuild_moves_a_broken_embedded_store_aside(tmp_path: Path) -> None:
    layer, ids = await migrated(tmp_path)
    await layer.aclose()
    folder = tmp_path / "archon.db-chroma"
    (folder / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    env = env_for(tmp_path)

    rebuilt = await run(["vectors", "rebuild"], env)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "moved it to" in rebuilt.output
    assert any(p.name.startswith("archon.db-chroma.broken-") for p in tmp_path.iterdir())
    again = bootstrap(Settings(_env_file=None, database_url=env["DATABASE_URL"]))
    (hit,) = await again.search(COLLECTION, vector=list(VECTORS[7]), k=1)
    assert hit.entity.id == ids[7]
    await again.aclose()


async def test_an_older_versions_store_is_copied_into_the_rows(tmp_path: Path) -> None:
    layer, ids = await migrated(tmp_path, n=6)
    # As an older version left it: vectors only in Chroma, in collections named without the
    # database's identity; the rows without vectors.
    await layer.aclose()
    folder = str(tmp_path / "archon.db-chroma")
    client = chromadb.PersistentClient(folder, settings=ChromaSettings(anonymized_telemetry=False))
    old = client.get_or_create_collection(
        "archon_crawled_pages_384", configuration={"hnsw": {"space": "cosine"}},
        metadata={"archon_metric": "cosine"}, embedding_function=None,
    )  # fmt: skip
    old.add(
        ids=[str(i) for i in ids],
        embeddings=np.asarray(VECTORS[10:16], dtype=np.float32),
        metadatas=[{"_archon_id": i, "url": f"https://a.test/{p}", "chunk_number": 0}
                   for p, i in enumerate(ids)],
    )  # fmt: skip
    old.add(  # a record whose row has another URL now: never copied
        ids=["999"], embeddings=np.asarray(VECTORS[20:21], dtype=np.float32),
        metadatas=[{"_archon_id": 999, "url": "https://elsewhere.test/", "chunk_number": 0}],
    )  # fmt: skip
    del client
    again = bootstrap(Settings(_env_file=None, database_url=env_for(tmp_path)["DATABASE_URL"]))
    await again.start()
    await _clear_row_vectors(again)
    await again.aclose()
    env = env_for(tmp_path)

    doctor = await run(["doctor"], env)
    assert "vectors rebuild --from-store" in plain(doctor)
    rebuilt = await run(["vectors", "rebuild", "--from-store"], env)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "crawled_pages: 6 vector(s) written" in rebuilt.output
    final = bootstrap(Settings(_env_file=None, database_url=env["DATABASE_URL"]))
    (hit,) = await final.search(COLLECTION, vector=list(VECTORS[12]), k=1)
    assert hit.entity.id == ids[2]
    assert (
        await fetch_scalar(
            final, "SELECT count(*) FROM archon_crawled_pages WHERE embedding_384 IS NOT NULL"
        )
        == 6
    )
    await final.aclose()


async def _clear_row_vectors(layer: DataLayer) -> None:
    async with layer.uow() as uow:
        await uow.vectors.delete_where(COLLECTION, {"source_id": "src-a"})
        await uow.commit()


async def test_doctor_names_another_lifes_store_and_prune_removes_it(tmp_path: Path) -> None:
    layer, _ = await migrated(tmp_path)
    await layer.aclose()
    (tmp_path / "archon.db").unlink()  # the database goes; its store folder stays
    env = env_for(tmp_path)
    assert (await run(["migrate", "upgrade"], env)).exit_code == 0

    doctor = await run(["doctor"], env)
    assert doctor.exit_code == 0, doctor.output
    assert "never read" in plain(doctor) and "vectors prune" in plain(doctor)
    pruned = await run(["vectors", "prune", "--yes"], env)
    assert pruned.exit_code == 0 and "removed 1 collection(s)" in pruned.output
    assert "holds no other collections" in (await run(["vectors", "prune"], env)).output


@pytest.mark.parametrize(
    "args",
    [["search", "anything"], ["doctor"], ["vectors", "status"], ["migrate", "current"],
     ["migrate", "check"], ["vectors", "sync"], ["vectors", "rebuild"], ["vectors", "reconcile"],
     ["migrate", "downgrade", "base"]],
)  # fmt: skip
async def test_read_only_commands_create_nothing(tmp_path: Path, args: list[str]) -> None:
    env: dict[str, str | None] = {
        "DATABASE_URL": None, "VECTOR_DATABASE": None, "CHROMA_PATH": None, "CHROMA_URL": None,
    }  # fmt: skip

    result = await run(args, env, cwd=tmp_path)

    assert result.exit_code == 2, result.output
    assert "no database at" in result.output and "migrate upgrade" in result.output
    assert list(tmp_path.iterdir()) == []


async def test_a_server_database_gets_no_implicit_store_folder(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "DATABASE_URL": "mysql://root@127.0.0.1:3306/test",
        "VECTOR_DATABASE": "chroma", "CHROMA_PATH": None, "CHROMA_URL": None,
    }  # fmt: skip
    result = await run(["vectors", "status"], env, cwd=tmp_path)
    assert result.exit_code == 2
    assert "CHROMA_URL" in result.output and "CHROMA_PATH" in result.output
    assert list(tmp_path.iterdir()) == []


async def test_add_dimension_makes_the_column_and_this_databases_collection(
    tmp_path: Path,
) -> None:
    layer, _ = await migrated(tmp_path, n=1)
    await layer.aclose()
    env = env_for(tmp_path)

    added = await run(["vectors", "add-dimension", "100", "--metric", "l2"], env)
    assert added.exit_code == 0, added.output
    again = bootstrap(Settings(_env_file=None, database_url=env["DATABASE_URL"]))
    feed = await again.vector_feed()
    assert feed is not None
    assert (await feed.store.dimensions(COLLECTION)).get(100) == "l2"
    assert await feed.store.foreign() == []
    async with again.uow() as uow:
        (page,) = await uow.pages.list({"source_id": "src-a"})
        await uow.vectors.upsert(COLLECTION, [VectorRecord(page.id, [0.5] * 100)])
        await uow.commit()
    (hit,) = await again.search(COLLECTION, vector=[0.5] * 100, k=1)
    assert hit.entity.id == page.id and hit.score == pytest.approx(0.0, abs=1e-5)  # -distance
    await again.aclose()


async def test_downgrade_base_drops_the_collections_of_the_detected_store(
    tmp_path: Path,
) -> None:
    layer, _ = await migrated(tmp_path, n=3)  # VECTOR_DATABASE unset: Chroma by detection
    feed = await layer.vector_feed()
    assert feed is not None and await feed.store.dimensions(COLLECTION)
    await layer.aclose()
    env = env_for(tmp_path)

    assert (await run(["migrate", "downgrade", "base"], env)).exit_code == 0
    client = chromadb.PersistentClient(
        str(tmp_path / "archon.db-chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    assert [c.name for c in client.list_collections()] == []


async def test_rebuild_moves_aside_a_file_where_the_store_folder_should_be(
    tmp_path: Path,
) -> None:
    layer, ids = await migrated(tmp_path, n=4)
    await layer.aclose()
    shutil.rmtree(tmp_path / "archon.db-chroma")
    (tmp_path / "archon.db-chroma").write_text("not a folder")

    rebuilt = await run(["vectors", "rebuild"], env_for(tmp_path))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "moved it to" in rebuilt.output and (tmp_path / "archon.db-chroma").is_dir()


async def test_a_copied_database_gets_its_own_identity_and_store(tmp_path: Path) -> None:
    layer, ids = await migrated(tmp_path, n=5)
    await layer.aclose()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "archon.db", copy / "archon.db")
    store = str(tmp_path / "archon.db-chroma")  # both point at one store, as a clone would
    env = env_for(copy, CHROMA_PATH=store)
    before = await fetch_scalar(
        bootstrap(Settings(_env_file=None, database_url=env["DATABASE_URL"])),
        "SELECT identity FROM archon_database_identity",
    )

    rebuilt = await run(["vectors", "rebuild", "--new-identity"], env)
    assert rebuilt.exit_code == 0, rebuilt.output
    clone = bootstrap(Settings(_env_file=None, database_url=env["DATABASE_URL"],
                               chroma_path=store))  # fmt: skip
    assert await fetch_scalar(clone, "SELECT identity FROM archon_database_identity") != before
    async with clone.uow() as uow:  # the copy deletes a page: the original's store keeps it
        await uow.pages.delete(ids[0])
        await uow.commit()
    await clone.aclose()
    original = bootstrap(Settings(_env_file=None, database_url=env_for(tmp_path)["DATABASE_URL"]))
    (hit,) = await original.search(COLLECTION, vector=list(VECTORS[0]), k=1)
    assert hit.entity.id == ids[0]
    assert all(check.level for check in await original.reconcile_vectors())
    await original.aclose()


def test_a_lost_auto_increment_lock_is_retryable() -> None:
    import pymysql
    from sqlalchemy import exc as sa_exc

    from app.errors import RetryableError, translate_errors

    # MariaDB reports a deadlock on InnoDB's AUTO-INC lock (taken by the triggers' INSERT ...
    # SELECT into the outbox) as 1467, not 1213.
    lost = pymysql.err.OperationalError(1467, "Failed to read auto-increment value")
    with pytest.raises(RetryableError):
        with translate_errors("writing"):
            raise sa_exc.OperationalError("INSERT ...", {}, lost)
