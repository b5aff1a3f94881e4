"""``archon-db ingest``, ``search``, ``doctor`` and ``vectors``: through typer's CliRunner.

The embedded default (a SQLite file and a Chroma folder in a temporary directory) for the
ingest/search round trip, checked with plain SQL; ``doctor`` on every backend.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from app.cli import _register
from app.cli import app as cli
from app.documents import source_id_for
from tests.support import Backend, LayerFactory

DOCS = {
    "limits.md": "# Rate limits\n\nA token bucket allows short bursts of requests.\n\n"
    "## Leaky bucket\n\nThe leaky bucket drains requests at a constant rate.\n",
    "indexes.md": "# Indexes\n\nA B-tree index serves range scans; GIN serves jsonb containment.\n",
    "notes.txt": "Coroutines await sockets while the event loop runs other tasks.\n",
}


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    yield tmp_path


def env_for(workdir: Path) -> dict[str, str | None]:
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'archon.db'}",
        "CHROMA_PATH": str(workdir / "chroma"),
        "VECTOR_DATABASE": None,  # unset: picked by detection (Chroma, on SQLite)
    }


def invoke(args: list[str], env: dict[str, str | None]) -> Result:
    _register()
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def said(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def pages(workdir: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(workdir / "archon.db") as db:
        query = "SELECT url, chunk_number, embedding_model FROM archon_crawled_pages ORDER BY 1, 2"
        return list(db.execute(query))


def test_ingest_then_search_on_the_embedded_default(workdir: Path) -> None:
    env = env_for(workdir)
    assert invoke(["migrate", "upgrade"], env).exit_code == 0

    result = invoke(["ingest", str(workdir / "docs"), "--source", "handbook", "--url-prefix",
                     "kb://"], env)  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "3 file(s)" in said(result) and "embedded with archon-hashing-v1-384" in said(result)
    assert "writing" in result.output  # the progress bar
    rows = pages(workdir)
    assert {url for url, _, _ in rows} == {"kb://limits.md", "kb://indexes.md", "kb://notes.txt"}
    assert {model for _, _, model in rows} == {"archon-hashing-v1-384"}

    found = invoke(["search", "token bucket bursts", "--k", "2"], env)
    assert found.exit_code == 0, found.output
    first_row = next(line for line in found.output.splitlines() if line.startswith("│ 1 "))
    assert "limits.md#0" in first_row
    keyword = invoke(["search", "jsonb containment", "--mode", "keyword"], env)
    assert "indexes.md#0" in keyword.output and "keyword" in keyword.output
    vector = invoke(["search", "event loop", "--mode", "vector", "--source", "handbook"], env)
    assert "notes.txt#0" in vector.output
    nothing = invoke(["search", "event loop", "--source", "another"], env)
    assert "no results" in nothing.output


def test_ingesting_again_replaces_the_chunks(workdir: Path) -> None:
    env = env_for(workdir)
    invoke(["migrate", "upgrade"], env)
    invoke(["ingest", str(workdir / "docs"), "--source", "handbook"], env)
    (workdir / "docs" / "limits.md").write_text("# Rate limits\n\nRewritten in one chunk.\n")

    again = invoke(["ingest", str(workdir / "docs" / "limits.md"), "--source", "handbook"], env)

    assert again.exit_code == 0, again.output
    assert "1 chunk(s) written, 1 replaced" in said(again)
    limits = [row for row in pages(workdir) if row[0].endswith("limits.md")]
    assert [number for _, number, _ in limits] == [0]
    status = invoke(["vectors", "status"], env)
    assert "crawled_pages vectors: 3 in the rows, 3 in the store" in status.output
    assert "no pending vector operations" in status.output


def test_vectors_add_dimension(workdir: Path) -> None:
    env = env_for(workdir)
    invoke(["migrate", "upgrade"], env)

    result = invoke(["vectors", "add-dimension", "100", "--collection", "crawled_pages"], env)

    assert result.exit_code == 0, result.output
    assert "ready for 100-dimension vectors" in said(result)
    bad = invoke(["vectors", "add-dimension", "100", "--collection", "nope"], env)
    assert bad.exit_code == 2 and "unknown collection" in said(bad)


def test_mistakes_exit_2_and_say_what_to_do(workdir: Path) -> None:
    env = env_for(workdir)
    unmigrated = invoke(["search", "anything"], env)
    assert unmigrated.exit_code == 2 and "archon-db migrate upgrade" in said(unmigrated)
    invoke(["migrate", "upgrade"], env)
    missing = invoke(["ingest", str(workdir / "nope"), "--source", "x"], env)
    assert missing.exit_code == 2 and "neither a file nor a directory" in said(missing)
    empty = workdir / "empty"
    empty.mkdir()
    assert invoke(["ingest", str(empty), "--source", "x"], env).exit_code == 2
    mode = invoke(["search", "x", "--mode", "fuzzy"], env)
    assert mode.exit_code == 2 and "unknown mode" in said(mode)


def test_the_source_name_is_hashed_like_archons_ids() -> None:
    assert source_id_for("handbook") == source_id_for("handbook")
    assert len(source_id_for("handbook")) == 16


async def test_doctor_reports_the_database_and_the_vector_choice(
    backend: Backend, make_layer: LayerFactory, tmp_path: Path
) -> None:
    await make_layer()  # migrates the backend's database
    env = {
        "DATABASE_URL": backend.url,
        "CHROMA_PATH": str(tmp_path / "chroma"),
        "VECTOR_DATABASE": None,
    }
    _register()
    runner = CliRunner()

    result = await asyncio.to_thread(runner.invoke, cli, ["doctor"], env=env)

    assert result.exit_code == 0, result.output
    out = said(result)
    assert "server version" in out and "schema revision" in out and "up to date" in out
    assert "VECTOR_DATABASE" in out and "unset: picked by detection" in out
    if backend.has_pgvector:
        assert "in use │ pgvector" in out and "PostgreSQL has pgvector" in out
    else:
        assert "in use │ chroma" in out and "CHROMA_URL / CHROMA_PATH" in out
        assert "outbox │ 0 pending" in out
        assert "0 in the rows, 0 in the store" in out
    assert "archon-hashing-v1-384" in out
    assert "password" not in out.lower() or "***" in out


@pytest.mark.parametrize(
    "arguments",
    [["search", "hello", "--source", "\udcff"], ["ingest", ".", "--source", "a\udcffb"]],
)
def test_a_name_that_is_no_text_exits_2_on_one_line(
    workdir: Path, arguments: list[str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # A command-line byte that is not UTF-8 arrives as a lone surrogate: the source name's id
    # (a hash of its UTF-8) used to raise UnicodeEncodeError, a traceback with exit status 1.
    from app.cli import main

    url = f"sqlite+aiosqlite:///{workdir / 'archon.db'}"
    assert invoke(["migrate", "upgrade", "--url", url], env_for(workdir)).exit_code == 0
    (workdir / "doc.md").write_text("hello world")
    monkeypatch.chdir(workdir)
    monkeypatch.setattr("sys.argv", ["archon-db", *arguments, "--url", url])
    with pytest.raises(SystemExit) as exited:
        main()
    output = capsys.readouterr()
    assert exited.value.code == 2, output
    assert output.err.strip().count("\n") == 0 and "source" in output.err, output.err


def test_an_empty_query_exits_2_on_one_line(workdir: Path) -> None:
    result = invoke(["search", "   "], env_for(workdir))
    assert result.exit_code == 2
    assert "the query is empty" in said(result) and "Traceback" not in result.output


def test_a_sqlite_file_that_cannot_be_opened_is_one_line_every_time(tmp_path: Path) -> None:
    """aiosqlite's worker thread of the failed connection answers after the loop closed: its
    traceback used to follow the error line in about half the runs."""
    command = [sys.executable, "-m", "app.cli", "doctor", "--url", f"sqlite:///{tmp_path}"]
    for _ in range(6):
        run = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
        assert run.returncode == 2
        assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr, run.stderr
