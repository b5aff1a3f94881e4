"""What the copy tests share: private databases per backend, the CLI in a subprocess, and the
checks a copy must pass (checksums recomputed, nearest neighbours, id counters, plain SQL)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.bootstrap import DataLayer, bootstrap
from app.config import Settings
from app.domain import CrawledPage
from app.transfer.canonical import table_checksum
from app.transfer.read import batches
from app.transfer.tables import TableSpec, table_specs
from app.vector.factory import concrete_view
from tests.support import backends as servers
from tests.transfer_data import seed

ROOT = Path(__file__).resolve().parents[1]
APPROXIMATE_K = 500
INDEX_OF = {"pgvector": "pgvector", "sqlite": "exact", "postgres": "exact", "mariadb": "exact"}


@asynccontextmanager
async def private_database(kind: str, pgvector_admin: str | None = None) -> AsyncIterator[str]:
    """A new, empty database of ``kind`` (sqlite, pgvector, postgres, mariadb), dropped after."""
    if kind == "sqlite":
        context: Any = servers.sqlite_backend()
    elif kind == "mariadb":
        context = servers.mariadb_backend()
    elif kind == "postgres":
        context = servers.postgres_backend("postgres", servers.postgres_admin_url())
    else:
        assert pgvector_admin is not None
        context = servers.postgres_backend("pgvector", pgvector_admin)
    async with context as backend:
        yield backend.url


def layer_for(kind: str, url: str, **overrides: Any) -> DataLayer:
    values = {"database_url": url, "vector_database": INDEX_OF[kind], **overrides}
    return bootstrap(Settings(_env_file=None, **values))


def cli_environment(kind: str) -> dict[str, str]:
    """The environment of a CLI run whose target is ``kind`` (no stray database settings)."""
    prefixes = ("DATABASE_", "CHROMA_", "VECTOR_", "WEAVIATE_", "MYSQL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update({"VECTOR_DATABASE": INDEX_OF[kind], "PYTHONPATH": str(ROOT)})
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


def run_copy(source: str, target: str, kind: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``archon-db copy`` in a subprocess, to completion."""
    return subprocess.run(  # noqa: S603 - our own command line
        cli("copy", "--from", source, "--to", target, *extra),
        cwd=ROOT,
        env=cli_environment(kind),
        capture_output=True,
        text=True,
        timeout=3600,
    )


def measured_copy(source: str, target: str, kind: str, *extra: str) -> tuple[int, str, float]:
    """``archon-db copy`` in a subprocess: (exit status, output, peak RSS in MiB)."""
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            cli("copy", "--from", source, "--to", target, *extra),
            cwd=ROOT, env=cli_environment(kind), stdout=output, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, high_water_mib(process.pid))
            time.sleep(0.1)
        output.seek(0)
        return process.returncode, output.read(), peak


def high_water_mib(pid: int) -> float:
    """The process's peak resident memory so far (``VmHWM``), in MiB; 0 once it is gone.

    Not ``ru_maxrss`` from ``wait4``: Linux carries into it the resident size of the process
    that spawned the child (the test, holding hundreds of MiB) from before the ``exec``."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _rows_in(layer: DataLayer, table: str) -> int:
    async with AsyncSession(layer.engine) as session:
        try:
            found = await session.execute(sa.text(f"SELECT count(*) FROM {table}"))
        except sa.exc.DBAPIError:
            return -1  # not created yet
        return int(found.scalar_one())


async def kill_copy_midway(
    source: str,
    target: str,
    kind: str,
    target_layer: DataLayer,
    total: int,
    rng: random.Random,
    *extra: str,
) -> tuple[int, int, float]:
    """Start the copy, SIGKILL it once the target holds a random number of chunk rows.

    Returns (the kill's threshold, the chunk rows the target held then, the copy's peak RSS in
    MiB)."""
    # In the first half of the chunk table, in small batches under a few thousand rows: the rest
    # of the chunks takes dozens of batches, so the kill lands inside the chunk table even when
    # the copy is fast (a whole 500-row table in batches of 40 could outrun the polling).
    threshold = rng.randint(1, max(1, total // 2))
    batch = "10" if total < 5_000 else "40"
    process = subprocess.Popen(  # noqa: S603 - our own command line
        cli("copy", "--from", source, "--to", target, "--batch-size", batch, *extra),
        cwd=ROOT,
        env=cli_environment(kind),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    held, deadline, peak = -1, time.monotonic() + 1800, 0.0
    try:
        while process.poll() is None and time.monotonic() < deadline:
            peak = max(peak, high_water_mib(process.pid))
            held = await _rows_in(target_layer, "archon_crawled_pages")
            if held >= threshold:
                break
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the copy ended before it could be killed"
    return threshold, held, peak


async def checksums(layer: DataLayer) -> dict[str, tuple[int, str]]:
    """Rows and canonical checksum of every copied table, computed afresh."""
    async with AsyncSession(layer.engine) as session:
        specs = await table_specs(session)
    return {spec.name: await table_checksum(layer.engine, spec, 500) for spec in specs}


async def stored_vectors(
    layer: DataLayer, table: str, keys: set[int] | None = None
) -> dict[int, np.ndarray]:
    """The vectors of ``table`` by row id (all, or those of ``keys``), read in batches by key:
    only what is kept is held in memory."""
    async with AsyncSession(layer.engine) as session:
        (spec,) = [s for s in await table_specs(session) if s.name == table]
    mirror = TableSpec(spec.table, ("id",), spec.vectors, ())
    found = {}
    async for rows in batches(layer.engine, mirror, 1000):
        for row in rows:
            if keys is not None and int(row["id"]) not in keys:
                continue
            for column in spec.vectors.values():
                if row[column] is not None:
                    found[int(row["id"])] = row[column]
    return found


async def vector_ids(layer: DataLayer, table: str) -> list[int]:
    """The ids of the rows of ``table`` that hold a vector, ascending (plain SQL)."""
    async with AsyncSession(layer.engine) as session:
        (spec,) = [s for s in await table_specs(session) if s.name == table]
        held = " OR ".join(f"{column} IS NOT NULL" for column in spec.vectors.values())
        query = f"SELECT id FROM {table} WHERE {held} ORDER BY id"
        return [int(key) for key in (await session.execute(sa.text(query))).scalars()]


async def nearest(layer: DataLayer, collection: str, vectors: dict[int, np.ndarray]) -> dict:
    """The top-1 row id the layer's index gives for each vector. An approximate index (HNSW)
    is asked for 500 (its candidate list grows with k: ``hnsw.ef_search`` 1000), the best kept:
    a recall question of the index, not of the copy."""
    found = {}
    async with layer.uow(read_only=True) as uow:
        index = await concrete_view(uow.vectors)
        k = APPROXIMATE_K if index.capabilities.approximate else 1
        for key, vector in vectors.items():
            hits = await uow.vectors.query(collection, vector.tolist(), k=k)
            found[key] = hits[0].id if hits else None
    return found


async def same_neighbours(source: DataLayer, target: DataLayer, sample: int | None = None) -> int:
    """Assert that the same rows hold vectors on both sides and that for every copied vector
    (or a seeded sample of ``sample`` per collection: an exact index answers a query in ~25 ms)
    the vector is the source's, bit for bit, and the target's index gives the same nearest row
    as the source's; how many were queried. (The checksums compare every vector's bytes.)"""
    compared = 0
    for collection, table in (
        ("crawled_pages", "archon_crawled_pages"),
        ("code_examples", "archon_code_examples"),
    ):
        keys = await vector_ids(source, table)
        assert await vector_ids(target, table) == keys
        if sample is not None and len(keys) > sample:
            keys = random.Random(5).sample(keys, sample)
        vectors = await stored_vectors(source, table, set(keys))
        copied = await stored_vectors(target, table, set(keys))
        assert copied.keys() == vectors.keys() == set(keys)
        for key, vector in vectors.items():
            assert np.array_equal(copied[key], vector), f"{table} {key}: vector differs"
        before = await nearest(source, collection, vectors)
        assert await nearest(target, collection, vectors) == before
        compared += len(vectors)
    return compared


async def next_ids_follow(target: DataLayer, source: DataLayer) -> None:
    """A new chunk in the target gets an id past every copied id."""
    async with AsyncSession(source.engine) as session:
        largest = await session.execute(sa.text("SELECT max(id) FROM archon_crawled_pages"))
        copied = int(largest.scalar_one())
    async with target.uow() as uow:
        page = await uow.pages.add(
            CrawledPage(
                url="https://new.example.com",
                chunk_number=0,
                content="after the copy",
                source_id="0000000000000001",
            )
        )
        await uow.commit()
    assert page.id > copied


def pgvector_admin(request: Any) -> str | None:
    """For a synchronous fixture: the pgvector server's admin URL when the test's parameters
    name pgvector (the session's server, started on first use), else None."""
    params = getattr(request.node, "callspec", None)
    kinds = params.params.values() if params is not None else ()
    return request.getfixturevalue("pgvector_server") if "pgvector" in kinds else None


@dataclass
class ResumedCopy:
    """What ``killed_and_resumed`` saw: chunk rows in the target at the kill, peak RSS (MiB)
    of the killed and of the resumed copy, and the resumed copy's output."""

    held: int
    killed_peak: float
    resumed_peak: float
    output: str


async def killed_and_resumed(
    source_kind: str, target_kind: str, admin: str | None, chunks: int, nn_sample: int
) -> ResumedCopy:
    """Seed a new source, kill ``archon-db copy`` at a random chunk row, check that a rerun
    without ``--resume`` is refused, resume, and check the result (checksums recomputed, same
    nearest rows, id counters)."""
    async with seeded_pair(source_kind, target_kind, admin, chunks) as (source, target):
        source_url = source.settings.database_url
        target_url = target.settings.database_url
        assert source_url is not None and target_url is not None
        _, held, killed_peak = await kill_copy_midway(
            source_url, target_url, target_kind, target, chunks, random.Random()
        )
        assert 1 <= held < chunks, held  # killed inside the chunk table
        refused = run_copy(source_url, target_url, target_kind)
        assert refused.returncode == 2 and "--resume" in refused.stderr
        status, output, peak = measured_copy(source_url, target_url, target_kind, "--resume")
        assert status == 0, output
        assert "every count and checksum matches" in output
        assert await checksums(target) == await checksums(source)
        assert await same_neighbours(source, target, nn_sample) >= min(nn_sample, chunks // 10)
        await next_ids_follow(target, source)
        return ResumedCopy(held, killed_peak, peak, output)


@asynccontextmanager
async def seeded_pair(
    source_kind: str, target_kind: str, admin: str | None, chunks: int
) -> AsyncIterator[tuple[DataLayer, DataLayer]]:
    """(source, target) layers on new private databases, the source migrated and seeded with
    ``chunks`` chunks and every other table, the target empty and not migrated."""
    async with (
        private_database(source_kind, admin) as source_url,
        private_database(target_kind, admin) as target_url,
    ):
        source = layer_for(source_kind, source_url)
        target = layer_for(target_kind, target_url)
        try:
            await source.migrate()
            await seed(source, chunks)
            yield source, target
        finally:
            await source.aclose()
            await target.aclose()
