"""``archon-db stats``: the data layer's pools, statements, errors, replicas and outbox.

The counters belong to the process that counts them: this command's own process starts at zero
(its pools empty, its statements the few it sends), so what it shows of a database is the outbox
backlog, the replicas and the pool settings. A service shows its own counters by serving
``layer.stats()`` (or ``app.metrics.prometheus.render``) from an endpoint.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from app.cli.session import Url, fail, out, with_layer

if TYPE_CHECKING:
    from app.bootstrap import DataLayer
    from app.metrics.report import LayerStats


def stats(
    url: Url = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stats as JSON.")] = False,
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="Print Prometheus' text exposition format.")
    ] = False,
) -> None:
    """Print pool, statement and error counters per engine, replica lag and outbox backlog."""
    if as_json and prometheus:
        fail("--json and --prometheus are two formats: choose one")
    found = with_layer(url, _stats, must_exist=True)
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2))
    elif prometheus:
        from app.metrics.prometheus import render

        typer.echo(render(found), nl=False)
    else:
        _print(found)


async def _stats(layer: DataLayer) -> LayerStats:
    return await layer.stats()


def _print(found: LayerStats) -> None:
    table = Table(title=f"Engines ({found.backend})", title_justify="left")
    table.add_column("")
    for engine in found.engines:
        table.add_column(engine.engine, justify="right")
    rows = (
        ("pool size", lambda e: str(e.pool_size)),
        ("checked out", lambda e: str(e.checked_out)),
        ("overflow", lambda e: str(e.overflow)),
        ("waits", lambda e: str(e.waits)),
        ("wait time (s)", lambda e: f"{e.wait_seconds:.3f}"),
        ("pool timeouts", lambda e: str(e.timeouts)),
        ("statements", lambda e: str(e.statements)),
        ("statement time (s)", lambda e: f"{e.statement_seconds:.3f}"),
        (f"slow (>= {found.slow_statement_ms:g} ms)", lambda e: str(e.slow_statements)),
    )
    for label, value in rows:
        table.add_row(label, *(value(e) for e in found.engines))
    kinds = sorted({kind for e in found.engines for kind in e.errors})
    for kind in kinds:
        table.add_row(f"errors: {kind}", *(str(e.errors.get(kind, 0)) for e in found.engines))
    out.print(table)
    for replica in found.replicas:
        lag = "not measured" if replica.lag_seconds is None else f"{replica.lag_seconds:.3f} s"
        out.print(f"[bold]{replica.engine}[/] lag: {lag}")
    backlog = "unknown (the database did not answer)" if found.outbox_backlog is None else None
    out.print(f"[bold]vector outbox backlog:[/] {backlog or found.outbox_backlog}")
    out.print("[dim]counters are this process's own; a service serves its own layer.stats()[/]")
