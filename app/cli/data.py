"""``archon-db ingest PATH --source NAME [--move]`` and ``archon-db search "query" [--json]``.

Both embed with the deterministic local embedder (``app.embedding.HashingEmbedder``, 384
dimensions), so what ``ingest`` stored is what ``search`` compares against.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.session import Url, err, fail, out, require_schema, with_layer
from app.documents import source_id_for
from app.embedding import default_embedder
from app.errors import InvalidInputError
from app.folders import FolderScan, ingest_folder, scan_folder
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
    move: Annotated[
        bool,
        typer.Option("--move", help="Take over files whose URLs another source holds."),
    ] = False,
    url: Url = None,
) -> None:
    """Chunk, embed and store Markdown/text files as one source, replacing earlier versions.

    Streams file by file in one transaction: all files or, on an error, none. Files with a NUL
    byte or bytes that are not UTF-8, and files of other types, are skipped and named."""
    try:
        source_id_for(source)  # a name that is no text is refused before the folder is read
        scan = scan_folder(path, url_prefix)
    except (InvalidInputError, OSError) as exc:
        fail(str(exc))
    for skipped in (*scan.skipped, *scan.unsupported):
        err.print(f"skipped {escape(str(skipped.path))}: {skipped.reason}", highlight=False,
                  soft_wrap=True)  # fmt: skip
    if not scan.files:
        fail(f"no .md, .markdown or .txt files to ingest under {path}{_left_out(scan)}")
    embedder = default_embedder()

    async def work(layer: DataLayer) -> IngestReport:
        await require_schema(layer)
        await replay_pending(await layer.vector_feed())
        with stage_progress() as advance:
            return await ingest_folder(
                layer, source, scan, embedder, on_progress=advance, move=move
            )

    report = with_layer(url, work, must_exist=True)
    out.print(
        f"source {source!r} ({report.source_id}): {len(scan.files)} file(s){_left_out(scan)}, "
        f"{report.written} chunk(s) written, {report.replaced} replaced, {report.vectors} "
        f"vector(s) embedded with {embedder.model_name}",
        highlight=False,
    )


def _left_out(scan: FolderScan) -> str:
    """``, N skipped, M unsupported`` (the files left out), or nothing."""
    parts = [f"{len(scan.skipped)} skipped"] if scan.skipped else []
    parts += [f"{len(scan.unsupported)} unsupported"] if scan.unsupported else []
    return "".join(f", {part}" for part in parts)


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per stage; yields ``advance(stage, done, total)``."""
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

        yield advance


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    mode: Annotated[str, typer.Option(help="auto, vector, keyword or hybrid.")] = "auto",
    k: Annotated[int, typer.Option("--k", help="How many results.", min=1, max=1000)] = 10,
    source: Annotated[
        str | None, typer.Option("--source", help="Only this source (by name).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the hits as JSON (a list, best first).")
    ] = False,
    url: Url = None,
) -> None:
    """Search the stored chunks by meaning (vector), by words (keyword) or both (hybrid)."""
    if mode not in MODES:
        fail(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if not query.strip():
        fail("the query is empty: give the words or the question to search for")
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
    if as_json:
        typer.echo(json.dumps([hit_json(rank, hit) for rank, hit in enumerate(hits, 1)]))
        return
    if not hits:
        out.print("no results", highlight=False)
        return
    out.print(hits_table(f"{mode} search: {query}", hits))


def hit_json(rank: int, hit: SearchHit) -> dict[str, Any]:
    """One hit as plain JSON values: rank, score, how it matched, the chunk and where from."""
    page = hit.entity
    return {
        "rank": rank,
        "score": float(hit.score),
        "match_type": hit.match_type,
        "id": page.id,
        "source_id": page.source_id,
        "url": page.url,
        "chunk_number": page.chunk_number,
        "content": page.content,
        "metadata": page.metadata_,
    }


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
