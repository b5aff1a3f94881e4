"""``archon-db copy --from URL --to URL``: one Archon database into another, any backend to any.

The source is only read (its rows, vectors included: a source's external store is not needed);
the environment's vector settings (``VECTOR_DATABASE``, ``CHROMA_PATH``, ``WEAVIATE_URL``...)
describe the target. Exit codes: 0 copied and verified; 1 copied but a count or checksum differs
(the source was written meanwhile?); 2 an error (unreachable database, a target holding data
without ``--resume``...). URLs are printed masked.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import exc as sa_exc

from app.cli.session import (
    EXIT_PENDING,
    err,
    fail,
    out,
    progress_bar,
    require_database_file,
    settings_for,
)
from app.config import mask_url
from app.errors import DataLayerError
from app.transfer import DEFAULT_BATCH, CopyReport, copy_database


def copy(
    source: Annotated[
        str, typer.Option("--from", help="URL of the database to copy.", show_default=False)
    ],
    target: Annotated[
        str, typer.Option("--to", help="URL of the database to copy into.", show_default=False)
    ],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted copy (the target may hold "
            "rows of it: they are skipped by key).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be copied; write nothing.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Rows per batch.")
    ] = DEFAULT_BATCH,
) -> None:
    """Copy every table, vectors included, into another database (migrated first), verify it."""
    from app.bootstrap import bootstrap

    for option, url in (("--from", source), ("--to", target)):
        if not url.strip():
            fail(f"{option} is empty: give the URL of a database")
    # The source's rows hold its vectors; its own store (if any) is never needed.
    source_settings = settings_for(source, vector_database="exact")
    require_database_file(source_settings)  # only read: a missing file is not created
    target_settings = settings_for(target)

    async def main() -> CopyReport:
        source_layer = bootstrap(source_settings)
        try:
            target_layer = bootstrap(target_settings)
            try:
                out.print(
                    f"copying {source_layer.settings.safe_database_url} -> "
                    f"{target_layer.settings.safe_database_url}",
                    highlight=False,
                )
                with progress_bar("copy") as advance:
                    return await copy_database(
                        source_layer,
                        target_layer,
                        resume=resume,
                        dry_run=dry_run,
                        batch_size=batch_size,
                        on_progress=advance,
                    )
            finally:
                await target_layer.aclose()
        finally:
            await source_layer.aclose()

    try:
        report = asyncio.run(main())
    except DataLayerError as exc:
        fail(str(exc))
    except sa_exc.ArgumentError as exc:  # unknown dialect or driver not installed
        fail(f"{mask_url(source)} -> {mask_url(target)}: {exc}")
    out.print(summary(report))
    if report.dry_run:
        return
    index = report.vector_index
    if report.hnsw_indexes:
        index += f" (HNSW indexes built: {', '.join(report.hnsw_indexes)})"
    if report.store_records is not None:
        index += f" (store rebuilt from the rows: {report.store_records} record(s))"
    out.print(f"target vector index: {index}", highlight=False)
    if not report.verified:
        err.print(f"[bold red]differs:[/] {', '.join(report.mismatched)} ({_why(report)})",
                  highlight=False)  # fmt: skip
        raise typer.Exit(EXIT_PENDING)
    out.print(
        f"copied and verified in {report.seconds:.1f} s: every count and checksum matches",
        highlight=False,
    )


def _why(report: CopyReport) -> str:
    """What a difference after a copy means: rows skipped by key that were not the source's
    (a target holding other rows, which another resume cannot mend), or a source written to."""
    skipped = [t.name for t in report.tables if t.skipped and t.name in report.mismatched]
    if skipped:
        return (
            f"rows of {', '.join(skipped)} were skipped because the target holds rows with the "
            "same keys: if they are other rows, not an earlier copy's, copy into an empty "
            "database; if the source was written to meanwhile, run the copy again with --resume"
        )
    return "was the source written to during the copy? run the copy again with --resume"


def summary(report: CopyReport) -> Table:
    """Per table: rows, vectors, what was copied or skipped, and whether the checksums agree."""
    title = f"{'Would copy' if report.dry_run else 'Copied'}: {report.source} -> {report.target}"
    table = Table(title=title, title_justify="left")
    table.add_column("table", no_wrap=True)
    table.add_column("source rows", justify="right")
    table.add_column("vectors")
    if report.dry_run:
        table.add_column("target rows now", justify="right")
    else:
        for column in ("copied", "skipped", "target rows", "checksum", "ok"):
            table.add_column(column, justify="right" if column != "checksum" else "left")
    for row in report.tables:
        vectors = ", ".join(f"{n} x {dim}-d" for dim, n in row.vectors.items()) or "-"
        cells = [row.name, str(row.source_rows), vectors]
        if report.dry_run:
            cells.append(str(row.target_rows))
        else:
            cells += [
                str(row.copied),
                str(row.skipped),
                str(row.target_rows),
                (row.target_checksum or "")[:16],
                "yes" if row.verified else "NO",
            ]
        table.add_row(*cells)
    if report.dry_run and not report.migrated:
        table.caption = "the target is not at the latest schema: the copy migrates it first"
    return table
