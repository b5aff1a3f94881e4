"""``archon-db ingest PATH --source NAME`` and ``archon-db search "query"``.

Both embed with the deterministic local embedder (``app.embedding.HashingEmbedder``, 384
dimensions), so what ``ingest`` stored is what ``search`` compares against.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.session import Url, fail, out, require_schema, with_layer
from app.documents import ingest_documents, read_documents, source_id_for
from app.embedding import default_embedder
from app.errors import InvalidInputError
from app.vector.outbox.table import replay_pending

if TYPE_CHECKING:
    from app.bootstrap import DataLayer
    from app.ingest import IngestReport
    from app.vector.port import SearchHit

MODES = ("auto", "vector", "keyword", "hybrid")


def ingest(
    path: Annotated[Path, typer.Argument(help="A Markdown/text file or a directory of them.")],
    source: Annotated[str, typer.Option("--source", help="Name of the source to store them as.")],
    url_prefix: Annotated[
        str | None,
        typer.Option(help="URL prefix for the files (default: their file:// URIs)."),
    ] = None,
    url: Url = None,
) -> None:
    """Chunk, embed and store Markdown/text files as one source, replacing earlier versions."""
    try:
        documents = read_documents(path, url_prefix)
    except (InvalidInputError, OSError) as exc:
        fail(str(exc))
    if not documents:
        fail(f"no .md, .markdown or .txt files under {path}")
    embedder = default_embedder()

    async def work(layer: DataLayer) -> IngestReport:
        await require_schema(layer)
        await replay_pending(await layer.vector_feed())
        with Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=False,
        ) as progress:
            tasks: dict[str, Any] = {}

            def advance(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            return await ingest_documents(layer, source, documents, embedder, on_progress=advance)

    report = with_layer(url, work, must_exist=True)
    out.print(
        f"source {source!r} ({report.source_id}): {len(documents)} file(s), {report.written} "
        f"chunk(s) written, {report.replaced} replaced, {report.vectors} vector(s) "
        f"embedded with {embedder.model_name}",
        highlight=False,
    )


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    mode: Annotated[str, typer.Option(help="auto, vector, keyword or hybrid.")] = "auto",
    k: Annotated[int, typer.Option("--k", help="How many results.", min=1, max=1000)] = 10,
    source: Annotated[
        str | None, typer.Option("--source", help="Only this source (by name).")
    ] = None,
    url: Url = None,
) -> None:
    """Search the stored chunks by meaning (vector), by words (keyword) or both (hybrid)."""
    if mode not in MODES:
        fail(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    embedder = default_embedder()
    filters = {"source_id": source_id_for(source)} if source else None

    async def work(layer: DataLayer) -> list[SearchHit]:
        await require_schema(layer)
        return await layer.search(
            "crawled_pages",
            vector=embedder.embed([query])[0] if mode != "keyword" else None,
            text=query if mode != "vector" else None,
            k=k,
            filters=filters,
            mode=mode,
            embedding_model=embedder.model_name if mode != "keyword" else None,
        )

    hits = with_layer(url, work, must_exist=True)
    if not hits:
        out.print("no results", highlight=False)
        return
    out.print(hits_table(f"{mode} search: {query}", hits))


def hits_table(title: str, hits: list[SearchHit]) -> Table:
    """Search hits as a table: rank, score, how they matched, where from, a snippet."""
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("match")
    table.add_column("document#chunk", overflow="fold", max_width=34)
    table.add_column("text", overflow="fold")
    for rank, hit in enumerate(hits, 1):
        page = hit.entity
        where = f"{page.url.rsplit('/', 1)[-1]}#{page.chunk_number}"
        table.add_row(str(rank), f"{hit.score:.4f}", hit.match_type, where, snippet(page.content))
    return table


def snippet(text: str, width: int = 110) -> str:
    """The first words of ``text`` on one line, skipping Markdown heading marks."""
    flat = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= width else flat[: width - 1].rsplit(" ", 1)[0] + "…"
