"""A writer killed with SIGKILL at random moments never leaves the store unrepairable.

Per store kind (embedded Chroma, a ``chroma run`` server), ``TEST_CRASH_RUNS`` times (default
20): a writer process ingests, re-ingests and deletes sources and is killed after a random delay;
then ``vectors sync`` runs (``vectors rebuild`` when the embedded store no longer opens), and the
store must hold exactly the rows' vectors, id by id, checked with plain SQL.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bootstrap import DataLayer, bootstrap
from app.config import Settings
from app.errors import DataLayerError, InvalidInputError
from tests.chroma_server import ChromaServer
from tests.support import fetch_all

RUNS = int(os.environ.get("TEST_CRASH_RUNS", "20"))
ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "crawled_pages"


@pytest.fixture
def chroma_server() -> Iterator[ChromaServer]:
    server = ChromaServer()
    server.start()
    yield server
    server.close()


def _environment(url: str, store: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CHROMA_"))}
    env.update({"DATABASE_URL": url, "VECTOR_DATABASE": "chroma", **store})
    env["PYTHONPATH"] = str(ROOT)
    return env


def _kill_a_writer(env: dict[str, str], seed: int, rng: random.Random) -> str:
    """Start the writer, let it work a random while, SIGKILL it; what it printed."""
    writer = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "tests.adversarial.store_writer", str(seed)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(rng.uniform(1.5, 4.0))  # start-up (~1.5 s) included: kills land anywhere
    writer.send_signal(signal.SIGKILL)
    output, _ = writer.communicate(timeout=30)
    return output.decode(errors="replace")


async def _repair(settings: Settings) -> tuple[DataLayer, str]:
    """``vectors sync``; ``vectors rebuild`` when the store cannot be used any more."""
    layer = bootstrap(settings)
    try:
        report = await layer.start()
        if not report.failed:
            return layer, "sync"
    except InvalidInputError:
        raise
    except DataLayerError:
        pass  # the embedded store no longer opens: the rows hold every vector
    await layer.rebuild_vectors()
    return layer, "rebuild"


async def _assert_level(layer: DataLayer) -> int:
    rows = await fetch_all(
        layer, "SELECT id FROM archon_crawled_pages WHERE embedding_384 IS NOT NULL"
    )
    feed = await layer.vector_feed()
    assert feed is not None
    stored: set[str] = set()
    for dimension in await feed.store.dimensions(COLLECTION):
        stored.update(await feed.store.stored_ids(COLLECTION, dimension))
    assert stored == {str(row.id) for row in rows}
    checks = await layer.reconcile_vectors()
    assert all(check.level for check in checks), checks
    return len(rows)


async def _crash_loop(settings: Settings, env: dict[str, str], seed: int) -> None:
    migrating = bootstrap(settings)
    await migrating.migrate()
    await migrating.aclose()
    rng = random.Random(seed)
    repairs = []
    for run in range(RUNS):
        output = _kill_a_writer(env, seed * 1000 + run, rng)
        assert "Traceback" not in output, output
        layer, how = await _repair(settings)
        try:
            await _assert_level(layer)
        finally:
            await layer.aclose()
        repairs.append(how)
    print(f"{RUNS} kills: repaired by {repairs.count('sync')} sync(s), "
          f"{repairs.count('rebuild')} rebuild(s)")  # fmt: skip


async def test_sigkill_with_embedded_chroma(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archon.db'}"
    store = {"CHROMA_PATH": str(tmp_path / "store")}
    settings = Settings(_env_file=None, database_url=url, vector_database="chroma",
                        chroma_path=store["CHROMA_PATH"])  # fmt: skip
    await _crash_loop(settings, _environment(url, store), seed=1)


async def test_sigkill_with_a_chroma_server(tmp_path: Path, chroma_server: ChromaServer) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archon.db'}"
    store = {"CHROMA_URL": chroma_server.url}
    settings = Settings(_env_file=None, database_url=url, vector_database="chroma",
                        chroma_url=chroma_server.url)  # fmt: skip
    await _crash_loop(settings, _environment(url, store), seed=2)
