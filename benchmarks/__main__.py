"""``python -m benchmarks``: the layer and the raw drivers, side by side, in one run.

Examples::

    python -m benchmarks                              # defaults: every backend and scenario
    python -m benchmarks --small --check              # tiny sizes; both sides must agree
    python -m benchmarks --backends pg --scenarios vector,hybrid --queries 500
    python -m benchmarks --backends pg --scenarios ingest --profile prof/   # cProfile the layer
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmarks.context import DEFAULT_SCENARIOS, SCENARIOS, Bench, Options
from benchmarks.report import Result, render, write_json
from benchmarks.servers import BACKENDS, TargetUnavailable, open_target

MEMORY_BACKENDS = ("pg",)
READS = ("vector", "hybrid", "get", "list")
app = typer.Typer(add_completion=False, help=__doc__)


def _names(raw: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise typer.BadParameter(f"unknown {what} {unknown}; choose from {', '.join(known)}")
    return [n for n in known if n in names]


async def run_backend(bench: Bench, backend: str, scenarios: list[str]) -> list[Result]:
    """Every selected scenario on one freshly started, migrated database."""
    from benchmarks.ingest import run_ingest, run_memory
    from benchmarks.queries import load_corpus, run_reads
    from benchmarks.transactions import run_audit_overhead, run_transactions

    results: list[Result] = []
    started = time.perf_counter()
    async with open_target(backend) as target:
        bench.say(f"{backend}: ready in {time.perf_counter() - started:.1f}s")
        if "ingest" in scenarios:
            results.append(await _guard(backend, "ingest", run_ingest(bench, target)))
        if "ingest-fast" in scenarios and backend != "chroma":
            fast = run_ingest(bench, target, fused=True)
            results.append(await _guard(backend, "ingest-fast", fast))
        if "memory" in scenarios and backend in MEMORY_BACKENDS:
            results.append(await _guard(backend, "memory", run_memory(bench, target)))
        reads = [s for s in scenarios if s in READS]
        if reads and backend != "chroma":
            loaded = await load_corpus(bench, target)
            results += await run_reads(bench, target, loaded, reads)
        if "tx" in scenarios and backend == "pg":
            results.append(await _guard(backend, "tx", run_transactions(bench, target)))
        if "tx-audit" in scenarios and backend == "pg":
            audit = run_audit_overhead(bench, target)
            results.append(await _guard(backend, "tx-audit", audit))
    return results


async def _guard(backend: str, scenario: str, work: Any) -> Result:
    """A scenario that raised becomes a result that says so, and the run goes on."""
    try:
        result: Result = await work
    except Exception as exc:
        failed = Result(backend, scenario, "-", True, None)
        failed.problems.append(f"{type(exc).__name__}: {exc}")
        failed.notes.append(traceback.format_exc(limit=-3).strip().replace("\n", " | "))
        return failed
    return result


async def run(bench: Bench, backends: list[str], scenarios: list[str]) -> list[Result]:
    results: list[Result] = []
    for backend in backends:
        try:
            results += await run_backend(bench, backend, scenarios)
        except TargetUnavailable as exc:
            if os.environ.get("REQUIRE_ALL_BACKENDS") == "1":
                raise
            failed = Result(backend, "(backend)", "-", True, None)
            failed.problems.append(f"unavailable: {exc}")
            results.append(failed)
    return results


@app.command()
def main(
    rows: Annotated[
        int | None, typer.Option(help=f"chunks to ingest and query over [{Options.rows}]")
    ] = None,
    chroma_rows: Annotated[
        int | None, typer.Option(help=f"chunks to ingest into Chroma [{Options.chroma_rows}]")
    ] = None,
    queries: Annotated[
        int | None, typer.Option(help=f"calls per latency measurement [{Options.queries}]")
    ] = None,
    repeat: Annotated[
        int | None, typer.Option(help=f"runs per side, medians reported [{Options.repeat}]")
    ] = None,
    batch: Annotated[
        int | None, typer.Option(help=f"chunks per ingest call [{Options.batch}]")
    ] = None,
    backends: Annotated[str, typer.Option(help="comma-separated")] = ",".join(BACKENDS),
    scenarios: Annotated[
        str, typer.Option(help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    ] = ",".join(DEFAULT_SCENARIOS),
    clients: Annotated[
        int | None, typer.Option(help=f"concurrent clients, tx [{Options.clients}]")
    ] = None,
    transactions: Annotated[
        int | None, typer.Option(help=f"transactions per client [{Options.transactions}]")
    ] = None,
    memory_rows: Annotated[
        int | None, typer.Option(help=f"chunks streamed, memory [{Options.memory_rows}]")
    ] = None,
    small: Annotated[bool, typer.Option(help="tiny sizes, one repeat: a quick check")] = False,
    check: Annotated[bool, typer.Option(help="compare all data; exit 1 on a mismatch")] = False,
    keep_hnsw: Annotated[bool, typer.Option(help="ingest with the HNSW index in place")] = False,
    profile: Annotated[Path | None, typer.Option(help="cProfile the layer into DIR")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write results")] = None,
) -> None:
    """Measure the layer and the raw drivers doing the same work on the same databases."""
    given = {
        "rows": rows, "chroma_rows": chroma_rows, "queries": queries, "repeat": repeat,
        "batch": batch, "clients": clients, "transactions": transactions,
        "memory_rows": memory_rows,
    }  # fmt: skip
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    overrides.update(check=check, keep_hnsw=keep_hnsw, profile=profile)
    options = Options.small(**overrides) if small else Options(**overrides)
    chosen_backends = _names(backends, BACKENDS, "backends")
    chosen_scenarios = _names(scenarios, SCENARIOS, "scenarios")
    logging.getLogger("chromadb").setLevel(logging.ERROR)
    bench = Bench(options)
    results = asyncio.run(run(bench, chosen_backends, chosen_scenarios))
    title = (
        f"Archon data layer vs raw drivers: {options.rows:,} rows, {options.queries} queries, "
        f"{options.repeat} repeat(s)"
    )
    render(results, title=title)
    for path in bench.profiler.dump():
        bench.console.print(f"profile written: {path}")
    if json_out is not None:
        write_json(results, json_out, {k: str(v) for k, v in vars(options).items()})
    if any(r.problems for r in results):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
