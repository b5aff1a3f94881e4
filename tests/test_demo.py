"""``python -m app.demo`` (``make demo``): quick, tidy, and the same output every time."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run_demo(cwd: Path, *args: str) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VECTOR_DATABASE")}
    env.update(COLUMNS="120", PYTHONPATH=str(ROOT), DATABASE_URL="mysql://ignored:secret@nowhere/x")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "app.demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, time.perf_counter() - started


def run_demo_here(cwd: Path) -> str:
    """The demo in this process (``main()``), its output recorded at the same width."""
    from rich.console import Console

    from app import demo

    console = Console(record=True, width=120, file=io.StringIO())
    with contextlib.chdir(cwd):
        demo.main([], console)
    return console.export_text()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, float, Path]:
    """``python -m app.demo``, then ``main()`` again in this process, from the same directory."""
    cwd = tmp_path_factory.mktemp("demo-cwd")
    first, seconds = run_demo(cwd)
    second = run_demo_here(cwd)
    return first, second, seconds, cwd


def test_the_demo_tells_the_whole_story(two_runs: tuple[str, str, float, Path]) -> None:
    out = " ".join(two_runs[0].split())
    assert "sqlite+aiosqlite:///archon.db (migrated to head)" in out  # the embedded default
    assert (
        "vector index chroma: sqlite has no pgvector; embedded Chroma beside the database file: "
        "archon.db-chroma" in out
    )
    assert re.search(r"crawled_pages vectors\s+(\d+) in the rows, \1 in the store", out)
    assert "nothing was written" in out
    assert re.search(r"5 documents -> \d+ chunks, \d+ vectors \(384 dimensions", out)
    for query in ("retry after 429", "blocking the event loop", "throttle abusive callers"):
        assert f"Search: '{query}'" in out
    assert "http-rate-limiting.md#4" in out and "python-asyncio.md#" in out
    assert "outbox 0 pending operation(s)" in out
    assert "secret" not in out


def test_it_finishes_well_under_a_minute(two_runs: tuple[str, str, float, Path]) -> None:
    assert two_runs[2] < 30


def test_it_can_run_again_and_prints_the_same(two_runs: tuple[str, str, float, Path]) -> None:
    first, second, _, _ = two_runs

    def stable(text: str) -> str:
        return re.sub(r"done in [\d.]+ s", "", text)

    assert stable(first) == stable(second)


def test_it_leaves_the_working_directory_alone(two_runs: tuple[str, str, float, Path]) -> None:
    assert list(two_runs[3].iterdir()) == []


def test_keep_leaves_the_database_and_the_store(tmp_path: Path) -> None:
    out, _ = run_demo(tmp_path, "--keep")
    kept = Path(re.search(r"kept in (\S+):", out).group(1))  # type: ignore[union-attr]
    try:
        assert (kept / "archon.db").is_file() and (kept / "archon.db-chroma").is_dir()
    finally:
        import shutil

        shutil.rmtree(kept)
