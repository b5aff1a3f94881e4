"""``archon-db vectors``: keep an external store level with the rows, show it, add a length.

``sync`` replays the outbox, ``status`` shows rows against store records, ``reconcile`` compares
them vector by vector (``--apply`` repairs), ``rebuild`` recreates the store from the rows
(``--from-store`` first copies an older version's store into the rows), ``prune`` removes other
databases' collections, ``add-dimension`` makes room for a new embedding length.

Exit codes: 0 success; 1 ``sync`` left operations pending, or ``reconcile`` found differences it
did not repair; 2 an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from app.cli.doctor import store_rows
from app.cli.session import (
    EXIT_PENDING,
    Url,
    fail,
    out,
    progress_bar,
    require_schema,
    resolved_index,
    with_layer,
)
from app.vector.outbox.reconcile import CollectionCheck, RebuildReport, summarize
from app.vector.outbox.table import PendingSummary, pending_summary, replay_pending
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

    async def work(layer: DataLayer) -> tuple[int, list[PendingSummary], list[tuple[str, str]]]:
        await require_schema(layer)
        report = await replay_pending(await layer.vector_feed())
        pending = await pending_summary(layer.engine)
        # The store's counts against the rows' (this also proves the store answers).
        rows = [] if pending else await store_rows(layer, await resolved_index(layer))
        return report.applied, pending, rows

    applied, pending, rows = with_layer(url, work, must_exist=True)
    out.print(f"applied {applied} pending vector operation(s)", highlight=False)
    if pending:
        out.print(pending_table(pending))
        out.print("the store refused or could not be reached: run `archon-db vectors sync` again")
        raise typer.Exit(EXIT_PENDING)
    for name, value in rows:
        out.print(f"  {name}: {value}", highlight=False)
    out.print(
        "no vector operation is pending (`archon-db vectors reconcile` compares the store with "
        "the rows vector by vector)",
        highlight=False,
    )


@app.command()
def status(url: Url = None) -> None:
    """Show the vector index in use, per collection the rows holding a vector and the store's
    records (a warning when they differ), and any pending outbox operations."""

    async def work(layer: DataLayer) -> tuple[Any, list[tuple[str, str]], list[PendingSummary]]:
        await require_schema(layer)
        index = await resolved_index(layer)
        return index, await store_rows(layer, index), await pending_summary(layer.engine)

    index, rows, pending = with_layer(url, work, must_exist=True)
    caps = index.capabilities
    mode = "in the rows" if caps.transactional else "in the rows, copied to the store"
    out.print(f"vector index: {caps.name} (vectors {mode})", highlight=False)
    for name, value in rows:
        style = "bold yellow" if "DIFFERENT" in value or name == "other collections" else None
        out.print(f"  {name}: {value}", highlight=False, style=style)
    if pending:
        out.print(pending_table(pending))
    else:
        out.print("no pending vector operations", highlight=False)


@app.command()
def reconcile(
    apply: Annotated[bool, typer.Option("--apply", help="Repair what differs.")] = False,
    url: Url = None,
) -> None:
    """Compare the external store with the rows, vector by vector: orphans (no row), missing
    (not in the store) and stale (a different vector). Exit 1 when they differ and --apply was
    not given."""

    async def work(layer: DataLayer) -> list[CollectionCheck]:
        await require_schema(layer)
        with progress_bar("comparing") as advance:
            return await layer.reconcile_vectors(apply=apply, on_progress=advance)

    checks = with_layer(url, work, must_exist=True)
    table = Table(title="Vector store against the rows")
    for column in ("collection", "rows", "store", "orphans", "missing", "stale", "repaired"):
        table.add_column(column, justify="left" if column == "collection" else "right")
    for c in checks:
        table.add_row(c.collection, *(str(n) for n in (
            c.rows, c.stored, c.orphans, c.missing, c.stale, c.repaired)))  # fmt: skip
    out.print(table)
    if all(c.level for c in checks):
        out.print("the store is level with the rows", highlight=False)
    elif apply:
        out.print("repaired: the store now holds what the rows hold", highlight=False)
    else:
        out.print("the store differs: run `archon-db vectors reconcile --apply`", highlight=False)
        raise typer.Exit(EXIT_PENDING)


@app.command()
def rebuild(
    collection: Annotated[
        str | None, typer.Argument(help="crawled_pages or code_examples (default both).")
    ] = None,
    from_store: Annotated[
        bool,
        typer.Option(
            "--from-store",
            help="First copy the vectors of a store written by an older version (collections "
            "not named by the database) into the rows that hold none.",
        ),
    ] = False,
    new_identity: Annotated[
        bool,
        typer.Option(
            "--new-identity",
            help="Give this database a new identity first (a copy of another database: a "
            "restored dump or a copied file shares the original's identity, hence its store).",
        ),
    ] = False,
    url: Url = None,
) -> None:
    """Recreate the external store from the rows (empty, new, deleted or broken store)."""
    if collection is not None and collection not in COLLECTIONS:
        fail(f"unknown collection {collection!r}; use one of {sorted(COLLECTIONS)}")

    async def work(layer: DataLayer) -> list[RebuildReport]:
        await require_schema(layer)
        with progress_bar("rebuilding") as advance:
            return await layer.rebuild_vectors(
                collection, from_store=from_store, new_identity=new_identity, on_progress=advance
            )

    reports = with_layer(url, work, must_exist=True)
    for report in reports:
        if report.moved_aside:
            out.print(f"the store could not be used; moved it to {report.moved_aside}")
            break
    for report in reports:
        lengths = ", ".join(map(str, report.dimensions)) or "none"
        out.print(
            f"{report.collection}: {report.records} vector(s) written (lengths: {lengths})",
            highlight=False,
        )


@app.command()
def prune(
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
    url: Url = None,
) -> None:
    """Remove the store's collections that are not this database's (another database's, an
    earlier life of this one, an older version's). On a store several databases share, those
    are the other databases' own: say --yes only when they are gone."""

    async def names(layer: DataLayer) -> list[str]:
        feed = await layer.vector_feed()
        if feed is None:
            return []
        await summarize(feed)  # names the store's collections by this database
        return list(await feed.store.foreign())

    found = with_layer(url, names, must_exist=True)
    if not found:
        out.print("the store holds no other collections", highlight=False)
        return
    out.print("not this database's: " + ", ".join(found), highlight=False)
    if not yes and not typer.confirm("delete them?", default=False):
        raise typer.Exit(EXIT_PENDING)

    async def drop(layer: DataLayer) -> None:
        feed = await layer.vector_feed()
        assert feed is not None
        await feed.store.drop_foreign(found)

    with_layer(url, drop, must_exist=True)
    out.print(f"removed {len(found)} collection(s)", highlight=False)


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
        feed = await layer.vector_feed()
        for name in targets:
            if feed is not None:  # the rows' column, and the store's collection named for them
                await feed.ensure_collection(name, dimension, metric)
            else:
                await index.ensure_collection(name, dimension, metric)
        return str(index.capabilities.name)

    backend = with_layer(url, work, must_exist=True)
    out.print(
        f"{backend}: {', '.join(targets)} ready for {dimension}-dimension vectors ({metric})",
        highlight=False,
    )
