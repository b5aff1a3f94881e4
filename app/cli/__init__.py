"""The ``archon-db`` command line. Each command group lives in its own module."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="archon-db",
    help="Archon data layer: migrations, vectors, ingestion and search.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"archon-db {version('archon-data')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("archon-db (version unknown: the archon-data package is not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Archon data layer: migrations, vectors, ingestion and search."""


_registered = False


def _register() -> None:
    # Imported here so that `import app.cli` stays cheap and each group owns its module.
    global _registered
    if _registered:  # tests register before invoking; main() must not add the groups twice
        return
    _registered = True
    from app.cli import audit, data, doctor, migrate, sources, stats, transfer, vectors

    app.add_typer(migrate.app, name="migrate")
    app.add_typer(vectors.app, name="vectors")
    app.add_typer(audit.app, name="audit")
    app.add_typer(sources.app, name="sources")
    app.command()(data.ingest)
    app.command()(data.search)
    app.command()(doctor.doctor)
    app.command()(stats.stats)
    app.command(name="copy")(transfer.copy)


def main() -> None:
    """Entry point of the ``archon-db`` console script: a ``DataLayerError`` no command turned
    into its message still ends as one line and exit status 2, never a traceback."""
    from app.cli.session import fail
    from app.errors import DataLayerError
    from app.memory import limit_arenas

    limit_arenas()  # before any thread starts: see app.memory
    threading.excepthook = _quiet_driver_threads(threading.excepthook)
    _register()
    try:
        app()
    except DataLayerError as exc:
        try:
            fail(str(exc))
        except typer.Exit as exit_:
            raise SystemExit(exit_.exit_code) from None


def _quiet_driver_threads(
    previous: Callable[[threading.ExceptHookArgs], Any],
) -> Callable[[threading.ExceptHookArgs], Any]:
    """aiosqlite's worker thread of a connection that failed to open answers after the command's
    event loop has closed, and its ``Event loop is closed`` would print a traceback under the
    command's one-line error. Only that is silenced; any other thread's error is reported."""

    def hook(args: threading.ExceptHookArgs) -> Any:
        name = args.thread.name if args.thread is not None else ""
        late = isinstance(args.exc_value, RuntimeError) and "Event loop is closed" in str(
            args.exc_value
        )
        if late and "_connection_worker_thread" in name:
            return None
        return previous(args)

    return hook
