"""``archon-db vectors``: replay the outbox (``sync``), show the index (``status``), add a length.

Exit codes: 0 success; 1 ``sync`` left operations pending (the store refused or is still down);
2 an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from app.cli.session import (
    EXIT_PENDING,
    Url,
    fail,
    out,
    require_schema,
    resolved_index,
    with_layer,
)
from app.vector.outbox import PendingSummary, pending_summary, replay_pending
from app.vector.port import COLLECTIONS

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

app = typer.Typer(
    help="The vector index: replay pending writes, show its state, add an embedding length.",
    no_args_is_help=True,
)


def pending_table(pending: list[PendingSummary]) -> Table:
    """The outbox's pending operations as a table."""
    table = Table(title="Pending vector operations (outbox)")
    for column in ("collection", "operation", "pending", "failed", "attempts", "last error"):
        table.add_column(column, overflow="fold")
    for row in pending:
        table.add_row(
            row.collection,
            row.op,
            str(row.count),
            str(row.failed),
            str(row.max_attempts),
            row.last_error or "",
        )
    return table


@app.command()
def sync(url: Url = None) -> None:
    """Apply the vector writes still pending in the outbox (idempotent; safe to repeat)."""

    async def work(layer: DataLayer) -> tuple[int, list[PendingSummary]]:
        await require_schema(layer)
        report = await replay_pending(layer)
        return report.applied, await pending_summary(layer.engine)

    applied, pending = with_layer(url, work)
    out.print(f"applied {applied} pending vector operation(s)", highlight=False)
    if pending:
        out.print(pending_table(pending))
        out.print("the store refused or could not be reached: run `archon-db vectors sync` again")
        raise typer.Exit(EXIT_PENDING)
    out.print("the vector store is level with the database", highlight=False)


@app.command()
def status(url: Url = None) -> None:
    """Show the vector index in use, its collections and any pending outbox operations."""

    async def work(layer: DataLayer) -> tuple[Any, dict[str, Any], list[PendingSummary]]:
        index = await resolved_index(layer)
        counts = {c: await index.count(c) for c in COLLECTIONS}
        return index, counts, await pending_summary(layer.engine)

    index, counts, pending = with_layer(url, work)
    caps = index.capabilities
    mode = "transactional" if caps.transactional else "through the outbox"
    out.print(f"vector index: {caps.name} (writes {mode})", highlight=False)
    for collection, count in counts.items():
        out.print(f"  {collection}: {count} vector(s)", highlight=False)
    if pending:
        out.print(pending_table(pending))
    else:
        out.print("no pending vector operations", highlight=False)


@app.command("add-dimension")
def add_dimension(
    dimension: Annotated[int, typer.Argument(help="Embedding length, e.g. 100 or 4096.")],
    metric: Annotated[str, typer.Option(help="cosine, l2 or inner_product.")] = "cosine",
    collection: Annotated[
        list[str] | None,
        typer.Option("--collection", help="crawled_pages and/or code_examples (default both)."),
    ] = None,
    url: Url = None,
) -> None:
    """Make the index ready for vectors of DIMENSION (a column, or a store collection)."""
    targets = collection or list(COLLECTIONS)
    unknown = sorted(set(targets) - set(COLLECTIONS))
    if unknown:
        fail(f"unknown collection(s) {unknown}; use {sorted(COLLECTIONS)}")

    async def work(layer: DataLayer) -> str:
        await require_schema(layer)
        index = await resolved_index(layer)
        for name in targets:
            await index.ensure_collection(name, dimension, metric)
        return str(index.capabilities.name)

    backend = with_layer(url, work)
    out.print(
        f"{backend}: {', '.join(targets)} ready for {dimension}-dimension vectors ({metric})",
        highlight=False,
    )
