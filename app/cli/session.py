"""What the commands that open a data layer share: settings, one event loop, errors, consoles.

Exit codes: 0 success; 1 the command ran but left work undone (e.g. vector writes still pending);
2 an error (unreachable database or store, bad input, missing migration).
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import exc as sa_exc

from app.config import ConfigurationWarning, Settings, mask_url, sqlite_file
from app.errors import ConfigurationError, DataLayerError

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

EXIT_PENDING = 1
EXIT_ERROR = 2
T = TypeVar("T")
out = Console()
err = Console(stderr=True)

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Database URL; default: DATABASE_URL (or MYSQL_*) from the environment.",
        show_default=False,
    ),
]


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error on one line and exit with status 2."""
    # escape: a URL's [IPv6] host or a value in brackets is text, not rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


def settings_for(url: str | None, **overrides: Any) -> Settings:
    """The environment's settings, with ``--url`` overriding DATABASE_URL (and ``overrides``
    their fields); a setting that cannot be used exits 2 with one line naming it."""
    if url:
        overrides["database_url"] = url
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigurationWarning)
        try:
            settings, problem = Settings(**overrides), None
        except ConfigurationError as exc:
            problem = str(exc)
    for warning in caught:
        if issubclass(warning.category, ConfigurationWarning):
            err.print(f"[yellow]warning:[/] {escape(str(warning.message))}", soft_wrap=True)
        else:  # not ours to print: back to the filters the user set
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)  # fmt: skip
    if problem is not None:
        fail(problem)
    return settings


def with_layer(
    url: str | None, work: Callable[[DataLayer], Awaitable[T]], *, must_exist: bool = False
) -> T:
    """Run ``work`` on a data layer built from the settings, closing it afterwards.

    ``must_exist``: the command works on a database made before (reads, vector maintenance)
    and never creates one: a SQLite file that is not there is an error saying how to make it.
    """
    from app.bootstrap import bootstrap

    settings = settings_for(url)
    if must_exist:
        require_database_file(settings)

    async def main() -> T:
        layer = bootstrap(settings)
        try:
            return await work(layer)
        finally:
            await layer.aclose()

    try:
        return asyncio.run(main())
    except DataLayerError as exc:
        fail(str(exc))
    except sa_exc.ArgumentError as exc:  # unknown dialect or driver not installed
        fail(f"{mask_url(settings.database_url or '')}: {exc}")


def require_database_file(settings: Settings) -> None:
    """Fail, naming the path and the command that creates it, when the SQLite file is missing."""
    path = sqlite_file(settings.database_url)
    if path is not None and not os.path.exists(path):
        fail(
            f"no database at {path}: run `archon-db migrate upgrade` to create it (or set "
            "DATABASE_URL to an existing database)"
        )


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar per collection; yields ``advance(collection, done, total)`` (total 0
    when unknown)."""
    with Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}

        def advance(collection: str, done: int, total: int) -> None:
            if collection not in tasks:
                tasks[collection] = progress.add_task(f"{description} {collection}", total=None)
            progress.update(tasks[collection], completed=done, total=total or None)

        yield advance


async def require_schema(layer: DataLayer) -> None:
    """Fail with the command to run when the database is not migrated to head."""
    from app import migrations

    revision = await migrations.current(layer.engine)
    if revision != migrations.head():
        fail(
            f"{layer.settings.safe_database_url} is at revision {revision or '(none)'}, "
            f"not {migrations.head()}: run `archon-db migrate upgrade` first"
        )


async def resolved_index(layer: DataLayer) -> Any:
    """The layer's vector index, chosen now if it is chosen on first use."""
    index = layer.vector_index
    resolve = getattr(index, "resolve", None)
    return await resolve() if resolve is not None else index
