"""The audit log (``ENABLE_AUDIT_LOG``) on every backend: each write path recorded with its actor,
in the transaction of the write, never a value; read with ``uow.audit``, pruned by the CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import _register
from app.cli import app as cli
from app.domain import Project, Setting, Source, Task
from app.errors import ConflictError, InvalidInputError
from app.testing.factories import CrawledPageFactory, SourceFactory
from app.vector import VectorRecord
from tests.support import Backend, LayerFactory, Sql
from tests.vector_fixtures import clustered, vector_backend_for

pytestmark = [
    pytest.mark.backends("sqlite", "postgres", "pgvector", "mariadb", "pgbouncer"),
    pytest.mark.pooler,
]
SECRET = "sk-live-4f9c2d7e1b8a-never-logged"
COLUMNS = "actor, entity, operation, entity_id, entity_ids, row_count, fields, unit_id"


@pytest.fixture
async def audited(backend: Backend, make_layer: LayerFactory) -> Any:
    return await make_layer(enable_audit_log=True, vector_database=vector_backend_for(backend))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def entries(sql: Sql) -> list[dict[str, Any]]:
    """Every audit row, in the order written, its JSON columns decoded (plain SQL)."""
    rows = await sql.all(f"SELECT {COLUMNS} FROM archon_audit_log ORDER BY id")
    return [
        {**row._asdict(), "entity_ids": _json(row.entity_ids), "fields": _json(row.fields)}
        for row in rows
    ]


async def test_repository_writes_are_recorded_with_the_actor(audited, sql) -> None:
    async with audited.uow(actor="alice@example.com") as uow:
        project = await uow.projects.add(Project(title="Audit", description="d"))
        await uow.projects.update(project.id, {"title": "Audited"})
        tasks = await uow.tasks.add_many(
            [Task(project_id=project.id, title=t) for t in ("a", "b", "c")]
        )
        await uow.sources.upsert_many([Source(source_id="s1", title="S")], on=["source_id"])
        await uow.tasks.delete(tasks[0].id)
        assert await uow.tasks.delete_where({"title": {"in": ["b", "c"]}}) == 2
        await uow.tasks.delete(tasks[0].id)  # nothing left to delete: no entry
        await uow.commit()

    got = await entries(sql)
    assert [(e["entity"], e["operation"]) for e in got] == [
        ("archon_projects", "insert"),
        ("archon_projects", "update"),
        ("archon_tasks", "insert"),
        ("archon_sources", "upsert"),
        ("archon_tasks", "delete"),
        ("archon_tasks", "delete"),
    ]
    assert {e["actor"] for e in got} == {"alice@example.com"}
    assert len({e["unit_id"] for e in got}) == 1  # one Unit of Work
    insert, update, bulk, upsert, one, where = got
    assert insert["entity_id"] == str(project.id) and insert["row_count"] == 1
    assert {"title", "description", "id"} <= set(insert["fields"])
    assert set(update["fields"]) == {"title", "updated_at"}
    assert bulk["entity_id"] is None and bulk["row_count"] == 3
    assert bulk["entity_ids"] == [str(t.id) for t in tasks]
    assert upsert["entity_id"] == "s1" and "title" in upsert["fields"]
    assert one["entity_id"] == str(tasks[0].id) and one["row_count"] == 1
    assert where["entity_ids"] is None and where["row_count"] == 2 and where["fields"] == []
    assert await sql.scalar("SELECT count(*) FROM archon_audit_log WHERE entity_ids IS NULL") == 1
    async with audited.uow(read_only=True) as uow:
        unknown = await uow.audit.list({"entity_ids": {"is_null": True}})
    assert [(e.operation, e.row_count) for e in unknown] == [("delete", 2)]


async def test_entity_specific_writes_are_recorded(audited, sql) -> None:
    async with audited.uow() as uow:
        project = await uow.projects.add(Project(title="P"))
        parent = await uow.tasks.add(Task(project_id=project.id, title="parent", task_order=0))
        await uow.tasks.add(Task(project_id=project.id, title="x", task_order=1))
        await uow.tasks.add(Task(project_id=project.id, title="child", parent_task_id=parent.id))
        await uow.tasks.move(parent.id, 1)
        await uow.tasks.archive(parent.id, archived_by="bob")
        version = await uow.document_versions.create_next(project.id, "docs", {"v": 1})
        await uow.sources.add(Source(source_id="gone"))
        await uow.sources.delete_with_content("gone")
        await uow.commit()

    got = [
        (e["entity"], e["operation"], e["entity_id"], e["row_count"]) for e in await entries(sql)
    ]
    assert got[0][3] == 1 and {e[0] for e in got[:4]} == {"archon_projects", "archon_tasks"}
    assert ("archon_tasks", "update", str(parent.id), 1) in got  # the move
    assert ("archon_tasks", "update", None, 1) in got  # "x" renumbered by the move
    assert ("archon_tasks", "update", None, 2) in got  # archive: parent and child
    assert ("archon_document_versions", "insert", str(version.id), 1) in got
    assert got[-1] == ("archon_sources", "delete", "gone", 1)
    assert everyone_is(await entries(sql), "system")


def everyone_is(rows: list[dict[str, Any]], actor: str) -> bool:
    return bool(rows) and all(row["actor"] == actor for row in rows)


async def test_rolled_back_work_leaves_no_entry(audited, sql) -> None:
    async with audited.uow(actor="carol") as uow:
        await uow.projects.add(Project(title="never committed"))
    with pytest.raises(RuntimeError):
        async with audited.uow(actor="carol") as uow:
            await uow.projects.add(Project(title="raised"))
            raise RuntimeError("boom")
    async with audited.uow(actor="carol") as uow:
        await uow.projects.add(Project(title="rolled back"))
        await uow.rollback()
        with pytest.raises(ConflictError):
            async with uow.savepoint():
                await uow.sources.add(Source(source_id="inner"))
                await uow.sources.add(Source(source_id="inner"))
        kept = await uow.sources.add(Source(source_id="kept"))
        await uow.commit()

    got = await entries(sql)
    assert [(e["entity"], e["entity_id"]) for e in got] == [("archon_sources", kept.source_id)]
    assert await sql.scalar("SELECT count(*) FROM archon_projects") == 0


async def test_no_value_is_ever_stored_only_names(audited, sql) -> None:
    async with audited.uow(actor="admin") as uow:
        await uow.settings.set_value("OPENAI_API_KEY", SECRET, encrypt=True)
        plain = await uow.settings.add(Setting(key="WEBHOOK_TOKEN", value=SECRET + "-plain"))
        await uow.settings.update(plain.id, {"value": SECRET + "-updated"})
        await uow.commit()

    rows = await sql.all("SELECT * FROM archon_audit_log")
    dumped = json.dumps([[str(value) for value in row] for row in rows])
    assert len(rows) == 3 and SECRET not in dumped
    got = await entries(sql)
    assert got[0]["entity_id"] == "key=OPENAI_API_KEY"
    assert {"encrypted_value", "is_encrypted"} <= set(got[0]["fields"])
    assert set(got[2]["fields"]) == {"value", "updated_at"}


async def test_disabled_records_nothing(layer, sql) -> None:
    async with layer.uow(actor="dave") as uow:
        await uow.projects.add(Project(title="unaudited"))
        await uow.commit()
    assert await sql.scalar("SELECT count(*) FROM archon_audit_log") == 0


async def test_ingest_and_vector_writes_are_recorded(audited, sql) -> None:
    source = SourceFactory.build()
    pages = [CrawledPageFactory.build(source=source, url="https://a.example.com", chunk_number=n)
             for n in range(3)]  # fmt: skip
    vectors = clustered(3, 384, centres=3, seed=1)
    items = [(page, vector.tolist()) for page, vector in zip(pages, vectors, strict=True)]
    await audited.ingest(source, items)
    again = [CrawledPageFactory.build(source=source, url="https://a.example.com", chunk_number=0)]
    await audited.ingest(source, [(again[0], vectors[0].tolist())], actor="crawler")
    async with audited.uow(actor="indexer") as uow:
        record = VectorRecord(id=again[0].id, vector=vectors[1].tolist(), metadata={})
        await uow.vectors.upsert("crawled_pages", [record])
        await uow.vectors.delete("crawled_pages", [again[0].id])
        await uow.commit()

    got = [(e["entity"], e["operation"], e["row_count"], e["actor"]) for e in await entries(sql)]
    pages_table = "archon_crawled_pages"
    assert ("archon_sources", "upsert", 1, "system") in got
    assert (pages_table, "delete", 3, "crawler") in got  # the second ingest replaced the URL
    assert [g for g in got if g[1] == "insert"] == [
        (pages_table, "insert", 3, "system"),
        (pages_table, "insert", 1, "crawler"),
    ]
    assert got[-2:] == [
        (pages_table, "vector_upsert", 1, "indexer"),
        (pages_table, "vector_delete", 1, "indexer"),
    ]
    last = (await entries(sql))[-1]
    assert last["entity_id"] == str(again[0].id) and "embedding_384" in last["fields"]


async def test_the_log_is_read_with_filters(audited) -> None:
    async with audited.uow(actor="erin") as uow:
        project = await uow.projects.add(Project(title="P"))
        tasks = await uow.tasks.add_many([Task(project_id=project.id, title=t) for t in "ab"])
        await uow.tasks.update(tasks[1].id, {"status": "doing"})
        await uow.commit()
    async with audited.uow(actor="frank") as uow:
        await uow.projects.update(project.id, {"title": "Q"})
        await uow.commit()

    async with audited.uow(read_only=True) as uow:
        everything = await uow.audit.list()
        by_erin = await uow.audit.list({"actor": "erin", "entity": "archon_tasks"})
        touching = await uow.audit.list({"entity_ids": {"contains": [str(tasks[1].id)]}})
        newest = await uow.audit.list(order_by=["-id"], limit=1)
        titles = await uow.audit.count({"fields": {"contains": ["title"]}})
        with pytest.raises(InvalidInputError, match="unknown filter field 'who'"):
            await uow.audit.list({"who": "erin"})
    assert len(everything) == 4 and everything[0].occurred_at.tzinfo is not None
    assert [(e.operation, e.row_count) for e in by_erin] == [("insert", 2), ("update", 1)]
    assert [e.operation for e in touching] == ["insert", "update"]
    assert newest[0].actor == "frank" and newest[0].fields == ["title", "updated_at"]
    assert "'frank' update archon_projects" in repr(newest[0])
    assert titles == 3  # the project's insert and update, and the tasks' insert


async def test_prune_deletes_old_entries_only(audited, sql) -> None:
    for title in ("old", "new"):
        async with audited.uow() as uow:
            await uow.projects.add(Project(title=title))
            await uow.commit()
    old_id = await sql.scalar("SELECT min(id) FROM archon_audit_log")
    await sql.execute(
        "UPDATE archon_audit_log SET occurred_at = :at WHERE id = :id",
        at=(await _now(audited)) - timedelta(days=100),
        id=old_id,
    )
    async with audited.uow() as uow:
        with pytest.raises(InvalidInputError, match="older_than"):
            await uow.audit.prune(older_than=timedelta(0))
        assert await uow.audit.prune(older_than=timedelta(days=90)) == 1
        await uow.commit()
    assert await sql.scalar("SELECT count(*) FROM archon_audit_log") == 1


async def _now(layer: Any) -> Any:
    from app.domain.types import utcnow

    now = utcnow()
    return now if layer.dialect_name == "postgresql" else now.replace(tzinfo=None)


async def test_cli_prunes_and_refuses_bad_durations(audited, backend: Backend, sql) -> None:
    async with audited.uow() as uow:
        await uow.projects.add(Project(title="p"))
        await uow.commit()
    await sql.execute(
        "UPDATE archon_audit_log SET occurred_at = :at",
        at=(await _now(audited)) - timedelta(hours=13),
    )
    _register()
    env = {"DATABASE_URL": backend.url, "VECTOR_DATABASE": "exact"}
    if backend.database_type is not None:  # behind the pooler: supabase's settings
        env["DATABASE_TYPE"] = backend.database_type

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["audit", "prune", *args], env=env)

    kept = await asyncio.to_thread(run, "--older-than", "1d")
    assert kept.exit_code == 0 and "deleted 0 audit entries" in kept.output
    for bad in ("90", "ninety days", "0d", "-5d", "5y", "999999999w", "1000000w", "800000000h"):
        refused = await asyncio.to_thread(run, "--older-than", bad)
        assert refused.exit_code == 2 and "--older-than" in refused.output, (bad, refused.output)
        assert len(refused.output.strip().splitlines()) == 1
    pruned = await asyncio.to_thread(run, "--older-than", "12h")
    assert pruned.exit_code == 0 and "deleted 1 audit entries older than 12h" in pruned.output
    assert await sql.scalar("SELECT count(*) FROM archon_audit_log") == 0


async def test_actor_is_checked(audited) -> None:
    for bad in ("", "   ", "x" * 256, "a\x00b", 42):
        with pytest.raises(InvalidInputError, match="actor"):
            audited.uow(actor=bad)
    with pytest.raises(InvalidInputError, match="actor"):
        await audited.ingest(SourceFactory.build(), [], actor="")


async def test_sqlalchemys_path_records_the_same(backend: Backend, make_layer, sql) -> None:
    # Query logging takes every statement off the driver path: the entries go through the
    # session, and more of them than fit one INSERT.
    logged = await make_layer(enable_audit_log=True, enable_query_logging=True)
    async with logged.uow(actor="gina") as uow:
        for n in range(25):
            await uow.projects.add(Project(title=f"p{n}"))
        await uow.commit()
    got = await entries(sql)
    assert len(got) == 25 and everyone_is(got, "gina")
    async with logged.uow(read_only=True) as uow:
        assert await uow.audit.count({"operation": "insert"}) == 25
        with pytest.raises(InvalidInputError, match="limit"):
            await uow.audit.list(limit=-1)
        assert len(await uow.audit.list(limit=10, offset=20)) == 5
    async with logged.uow() as uow:
        with pytest.raises(InvalidInputError, match="year 1"):
            await uow.audit.prune(older_than=timedelta(days=999_999_999))


async def test_each_commit_is_one_unit(audited, sql) -> None:
    async with audited.uow(actor="hal") as uow:
        first = await uow.projects.add(Project(title="one"))
        await uow.projects.update(first.id, {"pinned": True})
        await uow.commit()
        await uow.projects.add(Project(title="two"))  # the same Unit of Work, a new transaction
        await uow.commit()

    async def work(uow: Any) -> None:
        await uow.projects.delete(first.id)

    await audited.run_in_transaction(work, actor="ivy")
    got = await entries(sql)
    units = [e["unit_id"] for e in got]
    assert units[0] == units[1] and len(set(units)) == 3
    assert [e["actor"] for e in got] == ["hal", "hal", "hal", "ivy"]


@pytest.mark.backends("sqlite")
async def test_writes_for_an_external_store_are_recorded(make_layer, tmp_path, sql) -> None:
    chroma = await make_layer(
        enable_audit_log=True, vector_database="chroma", chroma_path=str(tmp_path / "chroma")
    )
    source = SourceFactory.build()
    pages = [CrawledPageFactory.build(source=source, url="https://c.example.com", chunk_number=n)
             for n in range(2)]  # fmt: skip
    vectors = clustered(2, 384, centres=2, seed=3)
    await chroma.ingest(source, [(p, v.tolist()) for p, v in zip(pages, vectors, strict=True)])
    async with chroma.uow(actor="jo") as uow:
        record = VectorRecord(id=pages[0].id, vector=vectors[1].tolist(), metadata={})
        await uow.vectors.upsert("crawled_pages", [record])
        assert await uow.vectors.delete_where("crawled_pages", {"chunk_number": 1}) == 1
        await uow.commit()

    got = [(e["operation"], e["entity_ids"], e["actor"]) for e in await entries(sql)]
    assert got[-2:] == [
        ("vector_upsert", [str(pages[0].id)], "jo"),
        ("vector_delete", [str(pages[1].id)], "jo"),
    ]
    assert ("insert", [str(p.id) for p in pages], "system") in got


async def test_a_large_write_takes_several_entries(audited, sql, monkeypatch) -> None:
    from app.repositories import audit

    monkeypatch.setattr(audit, "IDS_PER_ENTRY", 2)
    async with audited.uow() as uow:
        added = await uow.projects.add_many([Project(title=f"p{n}") for n in range(5)])
        await uow.commit()
    got = await entries(sql)
    assert [e["entity_ids"] for e in got] == [
        [str(p.id) for p in added[0:2]],
        [str(p.id) for p in added[2:4]],
        [str(added[4].id)],
    ]
    assert [e["row_count"] for e in got] == [2, 2, 1] and got[2]["entity_id"] == str(added[4].id)


@pytest.mark.backends("postgres", "pgvector")
async def test_the_table_is_private_on_postgresql(audited, sql) -> None:
    query = "SELECT relrowsecurity FROM pg_class WHERE relname = 'archon_audit_log'"
    assert await sql.scalar(query) is True
    # Private as Archon's settings are: the service role only (anon and authenticated: none).
    policies = "SELECT policyname FROM pg_policies WHERE tablename = 'archon_audit_log'"
    assert [r[0] for r in await sql.all(policies)] == [
        "Allow service role full access to archon_audit_log"
    ]
