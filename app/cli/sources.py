"""``archon-db sources list [--json]`` and ``archon-db sources delete ID [--yes]``.

Deleting a source deletes its chunks, code examples and page metadata in one transaction
(``uow.sources.delete_with_content``); an external vector store (Chroma, Weaviate) drops their
vectors through the deletes the database queues, applied after the commit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.session import Url, fail, out, require_schema, with_layer

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

app = typer.Typer(help="The knowledge sources: list them, delete one.", no_args_is_help=True)


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One source as ``sources list`` shows it."""

    source_id: str
    title: str
    pages: int
    chunks: int
    code_examples: int
    updated_at: str


async def source_lines(layer: DataLayer, source_id: str | None = None) -> list[SourceLine]:
    """Every source (or the one ``source_id``) with its counts, newest first."""
    filters = {"source_id": source_id} if source_id is not None else None
    async with layer.uow(read_only=True) as uow:
        summaries = await uow.sources.list_with_counts(filters, order_by=["-updated_at"])
        ids = [s.source.source_id for s in summaries]
        urls = await uow.pages.count_urls_by_source(ids) if ids else {}
    return [
        SourceLine(
            source_id=s.source.source_id,
            title=s.source.source_display_name or s.source.title or "",
            pages=urls.get(s.source.source_id, 0),
            chunks=s.page_count,
            code_examples=s.code_example_count,
            updated_at=s.source.updated_at.isoformat(timespec="seconds"),
        )
        for s in summaries
    ]


@app.command("list")
def list_sources(
    as_json: Annotated[bool, typer.Option("--json", help="Print the sources as JSON.")] = False,
    url: Url = None,
) -> None:
    """The sources, with their documents (pages), chunks and code examples."""

    async def work(layer: DataLayer) -> list[SourceLine]:
        await require_schema(layer)
        return await source_lines(layer)

    lines = with_layer(url, work, must_exist=True)
    if as_json:
        typer.echo(json.dumps([asdict(line) for line in lines]))
        return
    if not lines:
        out.print("no sources", highlight=False)
        return
    table = Table(title="Sources", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("title", overflow="fold")
    for column in ("pages", "chunks", "code examples"):
        table.add_column(column, justify="right")
    table.add_column("updated", no_wrap=True)
    for line in lines:
        updated = line.updated_at[:16].replace("T", " ")  # to the minute, in UTC
        table.add_row(line.source_id, escape(line.title), str(line.pages), str(line.chunks),
                      str(line.code_examples), updated)  # fmt: skip
    out.print(table)


@app.command("delete")
def delete_source(
    source_id: Annotated[str, typer.Argument(help="The source's id (see `sources list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: Url = None,
) -> None:
    """Delete a source with its chunks, code examples and their vectors."""

    async def find(layer: DataLayer) -> list[SourceLine]:
        await require_schema(layer)
        return await source_lines(layer, source_id)

    found = with_layer(url, find, must_exist=True)
    if not found:
        fail(f"no source with id {source_id!r}: `archon-db sources list` shows the ids")
    line = found[0]
    what = (
        f"source {line.source_id} ({line.title}): {line.chunks} chunk(s), "
        f"{line.code_examples} code example(s)"
    )
    if not yes and not typer.confirm(f"Delete {what}?", default=False):
        out.print("nothing deleted", highlight=False)
        raise typer.Exit(1)

    async def delete(layer: DataLayer) -> int:
        async with layer.uow() as uow:
            removed = await uow.sources.delete_with_content(source_id)
            await uow.commit()
        return removed

    removed = with_layer(url, delete, must_exist=True)
    out.print(f"deleted {escape(what)} ({removed} row(s))", highlight=False)
