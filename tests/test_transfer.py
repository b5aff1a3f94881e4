"""``copy_database`` / ``archon-db copy`` on real servers: the four paths of Archon's appendix B,
both ways, each into a new private database; an interrupted copy resumed; the refusals.

Size: ``TEST_COPY_CHUNKS`` crawled pages with 1536-d vectors (default 500; ``make
test-adversarial`` runs 50,000 in ``tests/adversarial/test_copy_large.py``) plus a tenth as many
code examples with 384-d vectors and rows in every other table (``tests/transfer_data.py``).
Every copied vector is compared bit for bit; ``TEST_COPY_NN_SAMPLE`` of them per collection
(default 40) are also asked of both indexes, whose nearest rows must be the same.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import CrawledPage, Source
from app.errors import ConflictError, DataLayerError, InvalidInputError
from app.transfer import copy_database
from tests.transfer_checks import (
    checksums,
    cli,
    cli_environment,
    killed_and_resumed,
    layer_for,
    next_ids_follow,
    pgvector_admin,
    private_database,
    run_copy,
    same_neighbours,
    seeded_pair,
)
from tests.transfer_data import seed

CHUNKS = int(os.environ.get("TEST_COPY_CHUNKS", "500"))
# Vectors whose nearest neighbour is asked of both indexes, per collection (all are compared).
NN_SAMPLE = int(os.environ.get("TEST_COPY_NN_SAMPLE", "40"))
PATHS = [
    ("pgvector", "sqlite"),
    ("sqlite", "pgvector"),
    ("postgres", "mariadb"),
    ("mariadb", "postgres"),
    ("mariadb", "sqlite"),
    ("sqlite", "mariadb"),
]


@pytest.fixture
def admin(request: pytest.FixtureRequest) -> str | None:
    """The pgvector server's admin URL when the test's path needs it (None otherwise)."""
    return pgvector_admin(request)


async def _count(layer: object, table: str) -> int:
    async with AsyncSession(layer.engine) as session:  # type: ignore[attr-defined]
        return int((await session.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def _hnsw_indexes(layer: object) -> set[str]:
    """The valid HNSW indexes of the database, by plain SQL."""
    query = (
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'hnsw' AND i.indisvalid"
    )
    async with AsyncSession(layer.engine) as session:  # type: ignore[attr-defined]
        return set((await session.execute(sa.text(query))).scalars())


@pytest.mark.parametrize(("source_kind", "target_kind"), PATHS, ids=lambda k: k)
async def test_copy_path(source_kind: str, target_kind: str, admin: str | None) -> None:
    async with seeded_pair(source_kind, target_kind, admin, CHUNKS) as (source, target):
        report = await copy_database(source, target, batch_size=200)
        assert report.verified, report.mismatched
        expected = await checksums(source)
        assert await checksums(target) == expected  # recomputed, not the report's word
        assert await _count(target, "archon_crawled_pages") == CHUNKS
        assert await _count(target, "archon_tasks") == 5
        assert report.vector_index == ("pgvector" if target_kind == "pgvector" else "exact")
        if target_kind == "pgvector":
            assert set(report.hnsw_indexes) == await _hnsw_indexes(target)
            assert {
                "idx_archon_crawled_pages_embedding_1536_hnsw",
                "idx_archon_code_examples_embedding_384_hnsw",
            } <= set(report.hnsw_indexes)
        assert await same_neighbours(source, target, NN_SAMPLE) >= min(NN_SAMPLE, CHUNKS // 10)
        await next_ids_follow(target, source)
        async with target.uow(read_only=True) as uow:
            assert await uow.settings.get_value("OPENAI_API_KEY") == "sk-secret"


@pytest.mark.parametrize(
    ("source_kind", "target_kind"),
    [("sqlite", "pgvector"), ("postgres", "mariadb")],
    ids=lambda k: k,
)
async def test_killed_copy_resumes(source_kind: str, target_kind: str, admin: str | None) -> None:
    """The CLI killed with SIGKILL at a random row, then ``--resume``: nothing lost or doubled."""
    resumed = await killed_and_resumed(source_kind, target_kind, admin, CHUNKS, NN_SAMPLE)
    assert resumed.held >= 1


async def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    async with private_database("sqlite") as source_url:
        source = layer_for("sqlite", source_url)
        try:
            await source.migrate()
            await seed(source, 20)
        finally:
            await source.aclose()
        target = tmp_path / "new.db"
        import subprocess

        shown = subprocess.run(  # noqa: S603 - our own command line
            cli("copy", "--from", source_url, "--to", f"sqlite:///{target}", "--dry-run"),
            cwd=cli_environment("sqlite")["PYTHONPATH"],
            env=cli_environment("sqlite"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert shown.returncode == 0, shown.stderr
        assert "archon_crawled_pages" in shown.stdout and "19 x 1536-d" in shown.stdout
        assert "migrates it first" in shown.stdout
        assert not target.exists()


async def test_refusals(tmp_path: Path) -> None:
    """A target holding data, the same database twice, a bad batch size: typed errors, and the
    command line's one masked line with exit 2."""
    async with private_database("sqlite") as source_url, private_database("sqlite") as other:
        source, target = layer_for("sqlite", source_url), layer_for("sqlite", other)
        try:
            await source.migrate()
            await seed(source, 10)
            with pytest.raises(InvalidInputError, match="batch_size"):
                await copy_database(source, target, batch_size=0)
            wrong: list[tuple[dict[str, Any], str]] = [
                ({"source_layer": source_url}, "source_layer"),
                ({"target_layer": None}, "target_layer"),
                ({"resume": "no"}, "resume"),
                ({"dry_run": "yes"}, "dry_run"),
                ({"verify": 0}, "verify"),
                ({"on_progress": 5}, "on_progress"),
            ]
            for change, named in wrong:
                arguments: dict[str, Any] = {
                    "source_layer": source, "target_layer": target, **change
                }  # fmt: skip
                with pytest.raises(InvalidInputError, match=named):
                    await copy_database(**arguments)
            with pytest.raises(InvalidInputError, match="same database"):
                await copy_database(source, layer_for("sqlite", source_url))
            await target.migrate()
            await seed(target, 10)
            with pytest.raises(ConflictError, match="already holds"):
                await copy_database(source, target)
            shown = await copy_database(source, target, dry_run=True)  # a migrated target
            assert shown.migrated and shown.vector_index == "exact"
            assert {t.name: t.target_rows for t in shown.tables}["archon_crawled_pages"] == 10
            assert not shown.verified and shown.tables[0].copied == 0
        finally:
            await source.aclose()
            await target.aclose()
    result = run_copy(
        "mysql://root:hunter2@127.0.0.1:1/archon", f"sqlite:///{tmp_path}/t.db", "sqlite"
    )
    assert result.returncode == 2
    assert "hunter2" not in result.stdout + result.stderr
    assert result.stderr.strip().startswith("error:")


async def test_parent_cycle_and_the_fallback_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two tasks each the other's parent (no order puts a parent first): written with the
    reference empty, then completed by an UPDATE. And on a server without multi-row INSERT ...
    RETURNING (MySQL 8), the plain executemany INSERT: forced here on MariaDB."""
    import app.transfer.write as write

    monkeypatch.setattr(write, "can_insert_with_columns", lambda dialect: False)
    async with seeded_pair("sqlite", "mariadb", None, 20) as (source, target):
        async with AsyncSession(source.engine) as session, session.begin():
            ids = (await session.execute(sa.text("SELECT id FROM archon_tasks LIMIT 2"))).scalars()
            first, second = list(ids)
            update = "UPDATE archon_tasks SET parent_task_id = :p WHERE id = :i"
            await session.execute(sa.text(update), [{"p": second, "i": first},
                                                    {"p": first, "i": second}])  # fmt: skip
        sid = "0000000000000001"
        odd = [(CrawledPage(url="https://odd.example.com", chunk_number=i, content=f"odd {i}",
                            source_id=sid), [float(i + 1), 1.0] * 4) for i in range(3)]  # fmt: skip
        await source.ingest(Source(source_id=sid), odd)  # an 8-d column the target lacks
        report = await copy_database(source, target, batch_size=7)
        assert report.verified, report.mismatched
        assert {t.name: t.vectors for t in report.tables}["archon_crawled_pages"] == {
            8: 3,
            1536: 19,
        }
        assert await checksums(target) == await checksums(source)
        assert await same_neighbours(source, target, 5) == 10


def test_canonical_values() -> None:
    """What the checksums compare: one form per value whatever the backend returned."""
    import enum
    import uuid
    from datetime import UTC, date, datetime, timedelta, timezone
    from decimal import Decimal

    import numpy as np

    from app.transfer.canonical import canonical, key_text

    class Colour(enum.Enum):
        RED = "red"

    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    east = timezone(timedelta(hours=2))
    assert canonical(datetime(2025, 1, 1, 12, tzinfo=east)) == "2025-01-01T10:00:00.000000+00:00"
    assert canonical(datetime(2025, 1, 1, 10)) == canonical(datetime(2025, 1, 1, 10, tzinfo=UTC))
    assert canonical({"b": [-0.0, Decimal("1.50")], "a": Colour.RED}) == {
        "b": [0.0, "1.5"],
        "a": "red",
    }
    assert canonical(np.array([1.0], dtype=np.float64)) == "0000803f"
    assert canonical(b"\x01") == "01" and canonical(date(2025, 1, 2)) == "2025-01-02"
    assert canonical(key) == str(key) and canonical(complex(1, 2)) == "(1+2j)"
    assert key_text(7) < key_text(10)  # integers ordered as numbers, not as text


async def test_command_line_into_a_chroma_store(tmp_path: Path) -> None:
    """``archon-db copy`` in process (typer's runner): into SQLite whose index is an embedded
    Chroma store, rebuilt from the copied rows (``vectors reconcile`` finds them level); a second
    run is refused, ``--resume`` skips every row and verifies again."""
    import asyncio

    from typer.testing import CliRunner

    from app.cli import _register
    from app.cli import app as command_line

    _register()
    target = f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"
    env = {"CHROMA_PATH": str(tmp_path / "chroma"), "VECTOR_DATABASE": None, "DATABASE_URL": None}

    async def run(*args: str) -> tuple[int, str]:
        result = await asyncio.to_thread(CliRunner().invoke, command_line, list(args), env=env)
        return result.exit_code, " ".join(result.output.split())

    async with private_database("sqlite") as source_url:
        source = layer_for("sqlite", source_url)
        try:
            await source.migrate()
            await seed(source, 30)
        finally:
            await source.aclose()
        code, said = await run("copy", "--from", source_url, "--to", target, "--dry-run")
        assert code == 0 and "29 x 1536-d" in said and "5 x 384-d" in said, said
        code, said = await run("copy", "--from", source_url, "--to", target, "--batch-size", "7")
        assert code == 0, said
        assert "store rebuilt from the rows: 34 record(s)" in said and "chroma" in said
        assert "every count and checksum matches" in said
        code, said = await run("vectors", "reconcile", "--url", target)
        assert code == 0, said
        code, said = await run("copy", "--from", source_url, "--to", target)
        assert code == 2 and "--resume" in said
        code, said = await run("copy", "--from", source_url, "--to", target, "--resume")
        assert code == 0 and "every count and checksum matches" in said, said


async def _refused_onto_itself(source_kind: str, url: str, alias_url: str) -> None:
    """``copy_database(resume=True)`` from ``url`` into ``alias_url`` (one database) is refused,
    and the source keeps its settings."""
    source, alias = layer_for(source_kind, url), layer_for(source_kind, alias_url)
    try:
        assert source.engine.url != alias.engine.url
        await source.migrate()
        await seed(source, 5)
        settings = await _count(source, "archon_settings")
        assert settings
        with pytest.raises(InvalidInputError, match="same database"):
            await copy_database(source, alias, resume=True)
        assert await _count(source, "archon_settings") == settings
    finally:
        await source.aclose()
        await alias.aclose()


async def test_the_same_database_spelt_another_way() -> None:
    """One SQLite file named by a relative and by an absolute URL, or a server database reached
    by another host name: the same database, refused before anything is written (with resume
    the copy would first empty the setup tables, the source's own settings)."""
    async with private_database("sqlite") as url:
        path = make_url(url).database or ""
        relative = os.path.relpath(path, Path.cwd())
        await _refused_onto_itself("sqlite", url, f"sqlite+aiosqlite:///{relative}")
    async with private_database("postgres") as url:
        await _refused_onto_itself("postgres", url, url.replace("127.0.0.1", "localhost"))


def test_command_line_sources_that_are_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty ``--from``/``--to`` is not the default database, and a SQLite source that does
    not exist is not created: each one error line, exit 2, no file left behind."""
    from typer.testing import CliRunner

    from app.cli import _register
    from app.cli import app as command_line

    _register()
    monkeypatch.chdir(tmp_path)
    missing, target = tmp_path / "missing.db", tmp_path / "target.db"
    cases = [
        ("", f"sqlite:///{target}", "--from"),
        (f"sqlite:///{target}", "  ", "--to"),
        (f"sqlite:///{missing}", f"sqlite:///{target}", str(missing)),
    ]
    for source, into, named in cases:
        result = CliRunner().invoke(
            command_line, ["copy", "--from", source, "--to", into], env={"DATABASE_URL": None}
        )
        assert result.exit_code == 2, result.output
        assert named in result.output and "error:" in result.output
    assert sorted(tmp_path.iterdir()) == []


async def test_resumed_into_a_target_holding_other_rows(tmp_path: Path) -> None:
    """``--resume`` into a database that holds rows of its own with the source's ids: those
    source rows are skipped by key, so the check says the copy differs (exit 1), naming the
    tables and that the target may hold other rows (another --resume cannot mend it)."""
    from typer.testing import CliRunner

    from app.cli import _register
    from app.cli import app as command_line

    _register()
    source_url, target_url = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    source, target = layer_for("sqlite", source_url), layer_for("sqlite", target_url)
    try:
        await source.migrate()
        await seed(source, 10)
        await target.migrate()
        other = [
            (CrawledPage(url=f"https://other.example/{i}", chunk_number=0, content=f"other {i}",
                         source_id="other"), [1.0] * 1536)
            for i in range(3)
        ]  # fmt: skip
        await target.ingest(Source(source_id="other"), other)
    finally:
        await source.aclose()
        await target.aclose()
    args = ["copy", "--from", source_url, "--to", target_url, "--resume"]
    env = {"DATABASE_URL": None, "VECTOR_DATABASE": "exact"}
    result = await asyncio.to_thread(CliRunner().invoke, command_line, args, env=env)
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())  # unwrapped
    assert "differs:" in said and "archon_crawled_pages" in said
    assert "if they are other rows" in said and "copy into an empty database" in said


async def test_killed_twice_then_resumed() -> None:
    """Killed, resumed and killed again further on, then resumed to the end: verified, every
    row once."""
    import random

    from tests.transfer_checks import kill_copy_midway

    async with seeded_pair("sqlite", "sqlite", None, 200) as (source, target):
        source_url, target_url = (
            str(source.settings.database_url),
            str(target.settings.database_url),
        )
        rng = random.Random(7)
        await kill_copy_midway(source_url, target_url, "sqlite", target, 100, rng)
        await kill_copy_midway(source_url, target_url, "sqlite", target, 200, rng, "--resume")
        finished = run_copy(source_url, target_url, "sqlite", "--resume")
        assert finished.returncode == 0, finished.stdout + finished.stderr
        assert "every count and checksum matches" in finished.stdout
        assert await checksums(target) == await checksums(source)
        assert await _count(target, "archon_crawled_pages") == 200


async def test_a_damaged_vector_names_its_row() -> None:
    """A stored vector of the wrong length (a damaged float32 blob): the copy stops with an
    error naming the table, the column and the row's key."""
    async with seeded_pair("sqlite", "sqlite", None, 10) as (source, target):
        async with AsyncSession(source.engine) as session, session.begin():
            key = (
                await session.execute(sa.text("SELECT min(id) FROM archon_code_examples"))
            ).scalar_one()
            await session.execute(
                sa.text(
                    "UPDATE archon_code_examples SET embedding_384 = x'0102030405' WHERE id = :i"
                ),
                {"i": key},
            )
        with pytest.raises(DataLayerError, match=f"archon_code_examples.*id {key}.*embedding_384"):
            await copy_database(source, target)
