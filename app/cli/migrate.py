"""``archon-db migrate``: upgrade, downgrade, current, check and adopt.

Exit codes: 0 success; 1 the schema differs from the models (``check``) or the database cannot be
adopted (``adopt``); 2 an error (unreachable database, unknown revision, bad URL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrations
from app.cli.session import Url, fail, out, require_database_file, settings_for, with_layer
from app.config import mask_url
from app.engines import create_engine_for
from app.errors import DataLayerError
from app.migrations import AdoptReport, Severity

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

EXIT_DIFFERENT = 1
T = TypeVar("T")

app = typer.Typer(
    help="Schema migrations (Alembic) and adopting an existing Archon database.",
    no_args_is_help=True,
)
def _run(
    url: str | None, work: Callable[[AsyncEngine], Awaitable[T]], *, read_only: bool = False
) -> tuple[str, T]:
    """Run ``work`` on a short-lived engine; the masked URL and the result. ``read_only``: a
    SQLite file that is not there is an error, never created."""
    settings = settings_for(url)
    database_url = settings.database_url or ""
    if read_only:
        require_database_file(settings)

    async def main() -> T:
        engine = create_engine_for(database_url, settings)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return mask_url(database_url), asyncio.run(main())
    except DataLayerError as exc:
        fail(str(exc))
    except sa_exc.ArgumentError as exc:  # unknown dialect or driver not installed
        fail(f"{mask_url(database_url)}: {exc}")


@app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    url: Url = None,
) -> None:
    """Apply the migrations up to REVISION (default: head)."""

    async def work(engine: AsyncEngine) -> str | None:
        await migrations.upgrade(engine, revision)
        return await migrations.current(engine)

    where, now = _run(url, work)
    out.print(f"{where} is at revision {now}", highlight=False)


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' removes everything.")],
    url: Url = None,
) -> None:
    """Revert the migrations down to REVISION."""

    async def work(layer: DataLayer) -> str | None:
        # Through the layer: an external store drops the collections of an identity that goes.
        await layer.downgrade(revision)
        return await migrations.current(layer.engine)

    now = with_layer(url, work, must_exist=True)
    where = settings_for(url).safe_database_url
    out.print(f"{where} is at revision {now or '(base)'}", highlight=False)


@app.command()
def current(url: Url = None) -> None:
    """Show the database's revision and the newest one available."""
    where, revision = _run(url, migrations.current, read_only=True)
    head = migrations.head()
    state = "up to date" if revision == head else f"head is {head}"
    out.print(f"{where}: {revision or '(none)'} ({state})", highlight=False)


@app.command()
def check(url: Url = None) -> None:
    """List the differences between the models and the database; exit 1 when there are any."""
    where, differences = _run(url, migrations.check, read_only=True)
    if not differences:
        out.print(f"{where}: the schema matches the models", highlight=False)
        return
    out.print(f"{where}: {len(differences)} difference(s) from the models", highlight=False)
    for line in differences:
        out.print(f"  - {line}", highlight=False)
    raise typer.Exit(EXIT_DIFFERENT)


_STYLE = {Severity.BLOCKER: "bold red", Severity.WARNING: "yellow", Severity.NOTE: "dim"}


def _print_report(where: str, report: AdoptReport) -> None:
    table = Table(title=f"Adopting {where}", show_lines=False)
    table.add_column("Severity")
    table.add_column("Object")
    table.add_column("Difference")
    for finding in sorted(report.findings, key=lambda f: list(Severity).index(f.severity)):
        style = _STYLE[finding.severity]
        table.add_row(f"[{style}]{finding.severity.value}[/]", finding.subject, finding.message)
    if report.findings:
        out.print(table)


@app.command()
def adopt(
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="If nothing blocks it: perform Archon's upgrade 004 where pending "
            "(beta embedding column to embedding_1536), then stamp the baseline revision.",
        ),
    ] = False,
    url: Url = None,
) -> None:
    """Compare an existing Archon database (Supabase / PostgreSQL) with what the layer needs."""
    where, report = _run(url, lambda engine: migrations.adopt(engine, apply=apply))
    _print_report(where, report)
    counts = f"{len(report.blockers)} blocker(s), {len(report.warnings)} warning(s)"
    if not report.adoptable:
        out.print(
            f"[bold red]not adoptable[/]: {counts}. Apply Archon's upgrade scripts for what is "
            "missing, then run adopt again.",
            highlight=False,
        )
        raise typer.Exit(EXIT_DIFFERENT)
    if report.stamped:
        out.print(f"adopted: stamped {migrations.BASELINE_REVISION} ({counts})", highlight=False)
    elif report.revision is not None:
        out.print(f"already managed by Alembic at {report.revision} ({counts})", highlight=False)
    else:
        out.print(f"adoptable ({counts}); run again with --apply to stamp it", highlight=False)
