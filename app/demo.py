"""``python -m app.demo`` (``make demo``): the data layer end to end on the embedded default.

Runs in a fresh temporary directory (removed afterwards unless ``--keep``), with no configuration at
all, so the layer takes its embedded default there: a SQLite file (``archon.db``) and, beside it, a
Chroma folder (``archon.db-chroma``), the vector index picked by feature detection. It migrates,
writes a source with pages and a project with tasks in one Unit of Work, shows that a Unit of Work
left without commit wrote nothing, ingests the bundled corpus (``app/demo_corpus``) and prints
vector, keyword and hybrid results. Embeddings come from the local hashing embedder (no download),
so every run prints the same results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from app.cli.data import hits_table
from app.cli.doctor import choice_reason, store_rows
from app.cli.session import resolved_index
from app.config import Settings
from app.documents import ingest_documents, read_documents
from app.domain import CrawledPage, Project, Source, Task, TaskPriority, TaskStatus
from app.embedding import HashingEmbedder
from app.vector.outbox.table import pending_summary
from app.vector.port import VectorRecord

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

CORPUS = Path(__file__).parent / "demo_corpus"
# Agreement; different rankings fused by hybrid; a paraphrase sharing no word with the corpus.
QUERIES = ("retry after 429", "blocking the event loop", "throttle abusive callers")
NOTE = (
    "[dim]Vector scores come from the hashing embedder: they reward shared words and word pairs, "
    "not meaning, and scores below about 0.15 are mostly hash collisions. Keyword search needs "
    "every word of the query in the chunk. Hybrid fuses both lists by reciprocal rank.[/]"
)
embedder = HashingEmbedder(384)


async def run(console: Console) -> None:
    """The whole demo, in the current directory."""
    from app.bootstrap import bootstrap

    settings = Settings(  # nothing configured: the embedded default in this directory
        _env_file=None, database_url=None, vector_database=None, chroma_path=None, chroma_url=None
    )
    layer = bootstrap(settings)
    try:
        await layer.migrate()
        await show_setup(layer, console)
        await write_in_one_unit_of_work(layer, console)
        await roll_back(layer, console)
        await ingest_corpus(layer, console)
        for query in QUERIES:
            await search_three_ways(layer, console, query)
        console.print(NOTE)
        await show_store(layer, console)
    finally:
        await layer.aclose()


async def show_setup(layer: DataLayer, console: Console) -> None:
    index = await resolved_index(layer)
    console.rule("[bold]1. The embedded default")
    console.print(f"database      {layer.settings.safe_database_url} (migrated to head)")
    reason = (await choice_reason(layer)).replace(os.getcwd() + os.sep, "")
    console.print(f"vector index  {index.capabilities.name}: {reason}")
    console.print(f"embedder      {embedder.model_name} (feature hashing, no download)")


async def write_in_one_unit_of_work(layer: DataLayer, console: Console) -> None:
    console.rule("[bold]2. A source with pages and a project with tasks, in one Unit of Work")
    texts = [
        "Archon stores crawled documentation as chunks with embeddings.",
        "Projects group tasks; each task has a status, a priority and an order.",
    ]
    async with layer.uow() as uow:
        await uow.sources.add(Source(source_id="demo-handbook", title="Team handbook"))
        pages = await uow.pages.add_many(
            CrawledPage(url="archon-demo://handbook", chunk_number=i, content=text,
                        source_id="demo-handbook", embedding_model=embedder.model_name)
            for i, text in enumerate(texts)
        )  # fmt: skip
        vectors = embedder.embed(texts)
        records = [
            VectorRecord(p.id, v, {"source_id": p.source_id, "url": p.url}, p.content)
            for p, v in zip(pages, vectors, strict=True)
            if p.id is not None
        ]
        await uow.vectors.upsert("crawled_pages", records)
        project = await uow.projects.add(Project(title="Data layer", description="Demo project"))
        await uow.tasks.add_many(
            Task(project_id=project.id, title=title, status=status, priority=priority, task_order=i)
            for i, (title, status, priority) in enumerate(TASKS)
        )  # fmt: skip
        await uow.commit()
    console.print(await counts_table(layer, "committed"))


TASKS = (
    ("Write the migrations", TaskStatus.DONE, TaskPriority.HIGH),
    ("Plug Chroma in through the outbox", TaskStatus.REVIEW, TaskPriority.HIGH),
    ("Benchmark hybrid search", TaskStatus.TODO, TaskPriority.MEDIUM),
)


async def roll_back(layer: DataLayer, console: Console) -> None:
    console.rule("[bold]3. A Unit of Work left without commit")
    before = await counts(layer)
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="Never saved"))
        await uow.tasks.add(Task(project_id=project.id, title="Never saved either"))
        await uow.sources.add(Source(source_id="demo-ghost", title="Never saved"))
        await uow.vectors.delete("crawled_pages", [1, 2])
        inside = await uow.projects.count()
        # no commit: leaving the block rolls everything back, the outbox rows included
    after = await counts(layer)
    console.print(f"inside the Unit of Work: {inside} projects; after it: {after['projects']}")
    console.print(await counts_table(layer, "after the rollback"))
    verdict = "nothing was written" if after == before else "[red]something leaked[/]"
    console.print(f"[bold green]{verdict}[/] (rows, vectors and outbox are as before)")


async def counts(layer: DataLayer) -> dict[str, int]:
    index = await resolved_index(layer)
    async with layer.uow(read_only=True) as uow:
        found = {
            "sources": await uow.sources.count(),
            "pages": await uow.pages.count(),
            "projects": await uow.projects.count(),
            "tasks": await uow.tasks.count(),
        }
    found["vectors"] = await index.count("crawled_pages")
    found["outbox"] = sum(p.count for p in await pending_summary(layer.engine))
    return found


async def counts_table(layer: DataLayer, title: str) -> Table:
    table = Table(title=f"Rows {title}", title_justify="left")
    found = await counts(layer)
    for name in found:
        table.add_column(name, justify="right")
    table.add_row(*(str(n) for n in found.values()))
    return table


async def ingest_corpus(layer: DataLayer, console: Console) -> None:
    console.rule("[bold]4. Ingesting the bundled corpus")
    documents = read_documents(CORPUS, url_prefix="archon-demo://corpus/")
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  console=console) as progress:  # fmt: skip
        tasks: dict[str, object] = {}

        def advance(stage: str, done: int, total: int) -> None:
            task = tasks.setdefault(stage, progress.add_task(stage, total=total))
            progress.update(task, completed=done, total=total)  # type: ignore[arg-type]

        report = await ingest_documents(
            layer, "demo-corpus", documents, embedder, on_progress=advance
        )
    console.print(
        f"{len(documents)} documents -> {report.written} chunks, {report.vectors} vectors "
        f"({report.dimension} dimensions, {report.embedding_model})"
    )


async def search_three_ways(layer: DataLayer, console: Console, query: str) -> None:
    console.rule(f"[bold]5. Search: {query!r}")
    vector = embedder.embed([query])[0]
    corpus = {"source_id": _corpus_id()}
    for mode in ("vector", "keyword", "hybrid"):
        hits = await layer.search(
            "crawled_pages",
            vector=vector if mode != "keyword" else None,
            text=query if mode != "vector" else None,
            k=3,
            filters=corpus,
            mode=mode,
            embedding_model=embedder.model_name if mode != "keyword" else None,
        )
        if hits:
            console.print(hits_table(mode, hits))
        else:
            console.print(f"{mode}: no chunk holds every word of the query")


def _corpus_id() -> str:
    from app.documents import source_id_for

    return source_id_for("demo-corpus")


async def show_store(layer: DataLayer, console: Console) -> None:
    console.rule("[bold]6. The vector store: a copy of the rows' vectors")
    index = await resolved_index(layer)
    for name, value in await store_rows(layer, index):
        console.print(f"{name:<22} {value}")
    pending = sum(p.count for p in await pending_summary(layer.engine))
    console.print(f"outbox          {pending} pending operation(s)")


def main(argv: list[str] | None = None, console: Console | None = None) -> None:
    """Run the demo in a fresh temporary directory."""
    parser = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the demo's database and store")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = console or Console()
    directory = Path(tempfile.mkdtemp(prefix="archon-demo-"))
    started = time.perf_counter()
    try:
        with contextlib.chdir(directory):
            asyncio.run(run(console))
    finally:
        if args.keep:
            console.print(f'kept in {directory}: cd there and try `archon-db search "..."`')
        else:
            shutil.rmtree(directory, ignore_errors=True)
    console.print(f"[bold]done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
