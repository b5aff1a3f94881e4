"""A source database for the copy tests: every Archon table filled, chunks with 1536-d vectors.

``seed(layer, chunks)`` writes ``chunks`` crawled pages (1536-d vectors, a few without one),
a tenth as many code examples (384-d vectors), and rows in every other table: pages' metadata,
projects, tasks whose parents sort after their children by id (so the copy must defer the
self-reference), project links, document versions, settings (one encrypted), prompts and
Archon's migration log. Chunks are streamed through ``layer.ingest`` in batches, so 50,000 of
them take bounded memory here too. Vectors are seeded random Gaussian, so every vector's nearest
neighbour is itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.domain import (
    AgentWorkOrder,
    AgentWorkOrderStep,
    CodeExample,
    ConfiguredRepository,
    CrawledPage,
    DocumentVersion,
    MigrationRecord,
    PageMetadata,
    Project,
    ProjectSource,
    Prompt,
    Source,
    Task,
    TaskPriority,
    TaskStatus,
)
from app.domain.audit import AuditEntry

DIMENSION = 1536
CODE_DIMENSION = 384
SOURCES = 3


def _uuid(first: str) -> uuid.UUID:
    """A random UUID whose hex starts with ``first`` (to control key order)."""
    return uuid.UUID(first + uuid.uuid4().hex[len(first) :])


def source_ids() -> list[str]:
    return [f"{i:016x}" for i in range(1, SOURCES + 1)]


def vectors(seed: int, count: int, dimension: int) -> Iterator[np.ndarray]:
    """``count`` random vectors, made a thousand at a time."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, 1000):
        block = rng.standard_normal((min(1000, count - start), dimension)).astype(np.float32)
        yield from block


def _pages(count: int, page_ids: list[uuid.UUID]) -> Iterator[tuple[CrawledPage, Any]]:
    sources = source_ids()
    for i, vector in enumerate(vectors(7, count, DIMENSION)):
        chunk = CrawledPage(
            url=f"https://docs.example.com/{i // 10}",
            chunk_number=i % 10,
            content=f"Chunk {i}: rate limits, retries and backoff — café ünïcode",
            metadata_={"index": i, "ratio": i / 7, "tags": ["a", "b"], "nested": {"k": [1, 2.5]}},
            source_id=sources[(i // 10) % SOURCES],  # one source per URL: ingest replaces URLs
            page_id=page_ids[i % len(page_ids)] if i % 3 == 0 else None,
            llm_chat_model="gpt-4o-mini",
        )
        yield chunk, (None if i % 97 == 5 else vector.tolist())


def _code(count: int) -> Iterator[tuple[CodeExample, Any]]:
    sources = source_ids()
    for i, vector in enumerate(vectors(11, count, CODE_DIMENSION)):
        chunk = CodeExample(
            url=f"https://docs.example.com/code/{i // 5}",
            chunk_number=i % 5,
            content=f"def f{i}(x):\n    return x * {i}\n",
            summary=f"Multiplies by {i}",
            metadata_={"language": "python", "i": i},
            source_id=sources[1],
        )
        yield chunk, vector.tolist()


async def seed(layer: Any, chunks: int) -> None:
    """Fill every table of ``layer``'s (migrated, empty) database."""
    page_ids = [_uuid(hex(i)[2]) for i in range(4)]
    async with layer.uow() as uow:
        await uow.sources.add_many(
            [
                Source(
                    source_id=sid,
                    title=f"Source {n}",
                    source_url=f"https://s{n}.example.com",
                    metadata_={"knowledge_type": "technical", "n": n},
                )
                for n, sid in enumerate(source_ids())
            ]
        )
        await uow.page_metadata.add_many(
            [
                PageMetadata(
                    id=pid,
                    source_id=source_ids()[0],
                    url=f"https://docs.example.com/p{i}",
                    full_content="Full page " * 50,
                    word_count=100,
                    char_count=500,
                )
                for i, pid in enumerate(page_ids)
            ]
        )
        await uow.commit()
    sources = {sid: Source(source_id=sid) for sid in source_ids()}
    by_source: dict[str, list[Any]] = {}
    for item in _pages(chunks, page_ids):
        by_source.setdefault(item[0].source_id, []).append(item)
        if len(by_source[item[0].source_id]) >= 500:
            await layer.ingest(
                sources[item[0].source_id],
                by_source.pop(item[0].source_id),
                embedding_model="test-embedder",
            )
    for sid, items in by_source.items():
        await layer.ingest(sources[sid], items, embedding_model="test-embedder")
    await layer.ingest(
        sources[source_ids()[1]], list(_code(max(chunks // 10, 5))), embedding_model="code-embedder"
    )
    await _projects(layer)


async def _projects(layer: Any) -> None:
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="Search", docs=[{"id": "d1"}], pinned=True))
        parent = await uow.tasks.add(
            Task(
                id=_uuid("f"),
                project_id=project.id,
                title="Parent",
                status=TaskStatus.DOING,
                priority=TaskPriority.HIGH,
            )
        )
        for n in range(4):
            await uow.tasks.add(
                Task(
                    id=_uuid(str(n)),
                    project_id=project.id,
                    title=f"Child {n}",
                    parent_task_id=parent.id,
                    task_order=n,
                    archived=n == 3,
                    archived_at=datetime(2025, 1, 2, 3, 4, 5, 678901, UTC) if n == 3 else None,
                )
            )
        await uow.project_sources.add(
            ProjectSource(project_id=project.id, source_id=source_ids()[0], notes="technical")
        )
        await uow.document_versions.add(
            DocumentVersion(
                project_id=project.id,
                field_name="docs",
                version_number=1,
                content=[{"title": "v1", "x": -0.0}],
            )
        )
        await uow.settings.set_value(
            "OPENAI_API_KEY", "sk-secret", encrypt=True, category="api_keys"
        )
        await uow.settings.set_value("MODEL_CHOICE", "gpt-4.1-nano", category="rag_strategy")
        await uow.prompts.add(Prompt(prompt_name="document_builder", prompt="Build the doc."))
        uow.session.add(MigrationRecord(version="0.1.0", migration_name="001_add_source_url"))
        await uow.configured_repositories.add(
            ConfiguredRepository(repository_url="https://github.com/acme/api")
        )
        await uow.work_orders.add(
            AgentWorkOrder(agent_work_order_id="wo-1a2b3c4d", status="running",
                           repository_url="https://github.com/acme/api",
                           sandbox_identifier="sb-1", metadata_={"phase": "plan", "n": 1.5})
        )  # fmt: skip
        await uow.work_order_steps.replace_history(
            "wo-1a2b3c4d",
            [AgentWorkOrderStep(agent_work_order_id="wo-1a2b3c4d", step="plan", agent_name="a",
                                success=True, duration_seconds=1.25,
                                executed_at=datetime(2025, 1, 2, 3, 4, 5, 6, UTC))],
        )  # fmt: skip
        uow.session.add(
            AuditEntry(occurred_at=datetime(2025, 1, 2, 3, 4, 5, 6, UTC), actor="alice",
                       unit_id=str(_uuid("a")), entity="archon_projects", operation="insert",
                       entity_id=str(project.id), entity_ids=None, row_count=1,
                       fields=["title"])
        )  # fmt: skip
        await uow.commit()
