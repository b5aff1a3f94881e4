"""Sustained load: ``--clients`` clients for ``--seconds`` on each SQL backend, mixing what Archon
does all day (searches, ingests, task moves), then the verdict: 0 errors, every pool back to 0
checked-out connections, resident memory within ``--memory-margin`` of its level after warm-up.

    python -m benchmarks.load                      # pg, mariadb, sqlite: 8 clients x 5 min
    python -m benchmarks.load --backends sqlite --seconds 20    # a quick look

Each client repeats, at random (seeded per client): a vector, keyword or hybrid search over the
seeded corpus; an ingest of a few chunks replacing its own URLs; a task added to one of its
projects then moved to the top of its column. Memory is sampled every second; the level after
warm-up is the median of the warm-up's last samples. Exit 1 when a verdict fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.context import layer_for
from benchmarks.data import EMBEDDING_MODEL, Corpus
from benchmarks.ingest import entities
from benchmarks.measure import current_rss
from benchmarks.servers import open_target

KINDS = ("vector search", "keyword search", "hybrid search", "ingest", "task add + move")
SEED_CHUNKS = 2_000
INGEST_CHUNKS = 8  # one page of the corpus: clients never replace each other's pages


@dataclass
class LoadResult:
    """What one backend did under load, and the verdicts."""

    backend: str
    clients: int
    seconds: float
    operations: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    rss_after_warmup: int = 0
    rss_end: int = 0
    rss_peak: int = 0
    checked_out_end: int = 0
    memory_margin: float = 0.10

    @property
    def memory_growth(self) -> float:
        return self.rss_end / self.rss_after_warmup - 1 if self.rss_after_warmup else 0.0

    @property
    def verdicts(self) -> dict[str, bool]:
        return {
            "0 errors": not self.errors,
            "pools back to 0 checked out": self.checked_out_end == 0,
            f"memory within {self.memory_margin:.0%} of warm-up": self.memory_growth
            <= self.memory_margin,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "clients": self.clients,
            "seconds": self.seconds,
            "operations": dict(self.operations),
            "p50_ms": {k: _ms(v, 50) for k, v in self.latencies.items()},
            "p95_ms": {k: _ms(v, 95) for k, v in self.latencies.items()},
            "errors": dict(self.errors),
            "first_errors": self.first_errors,
            "rss_after_warmup": self.rss_after_warmup,
            "rss_end": self.rss_end,
            "rss_peak": self.rss_peak,
            "checked_out_end": self.checked_out_end,
            "verdicts": self.verdicts,
        }


def _ms(values: list[float], percent: int) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, len(ordered) * percent // 100)]


class Client:
    """One client's loop: a random operation at a time until the deadline."""

    def __init__(
        self, layer: Any, corpus: Corpus, number: int, projects: list[uuid.UUID], seeded: int
    ) -> None:
        self.layer, self.corpus, self.number, self.projects = layer, corpus, number, projects
        self.seeded = seeded
        self.random = random.Random(number)
        self.batches = 0

    async def run(self, until: float, result: LoadResult | None) -> None:
        while time.monotonic() < until:
            kind = self.random.choice(KINDS)
            started = time.perf_counter()
            try:
                await self.operation(kind)
            except Exception as exc:  # every failure is counted, none stops the load
                if result is None:
                    raise
                result.errors[f"{kind}: {type(exc).__name__}"] += 1
                if len(result.first_errors) < 5:
                    result.first_errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
                continue
            if result is not None:
                result.operations[kind] += 1
                result.latencies.setdefault(kind, []).append(time.perf_counter() - started)

    async def operation(self, kind: str) -> None:
        if kind.endswith("search"):
            query = self.random.randrange(self.seeded)
            vector = self.corpus.vector(query, _rng(query)).tolist()
            words = " ".join(self.corpus.topic_words(self.corpus.cluster_of(query))[:2])
            mode = kind.split()[0]
            await self.layer.search(
                "crawled_pages",
                vector=None if mode == "keyword" else vector,
                text=None if mode == "vector" else words,
                k=10,
                mode=mode,
            )
        elif kind == "ingest":
            # The client's own URLs, replaced again and again: the table stays the same size.
            start = self.seeded + (self.number * 4 + self.batches % 4) * INGEST_CHUNKS
            self.batches += 1
            source, items = entities(self.corpus.batch(start, start + INGEST_CHUNKS))
            await self.layer.ingest(source, items, embedding_model=EMBEDDING_MODEL)
        else:
            from app.domain import Task

            project = self.random.choice(self.projects)
            async with self.layer.uow() as uow:
                task = await uow.tasks.add(Task(project_id=project, title=f"load {self.number}"))
                await uow.commit()
            async with self.layer.uow() as uow:
                await uow.tasks.move(task.id, 0)
                await uow.commit()


def _rng(index: int) -> Any:
    import numpy as np

    return np.random.default_rng(index)


async def run_backend(
    backend: str,
    clients: int,
    seconds: float,
    warmup: float,
    margin: float,
    console: Console,
    seed_chunks: int = SEED_CHUNKS,
) -> LoadResult:
    from app.domain import Project

    if seed_chunks % 1000 or clients * 4 * INGEST_CHUNKS > 1000:
        raise ValueError("whole sources of 1,000 seeded chunks, at most 31 clients")
    result = LoadResult(backend, clients, seconds, memory_margin=margin)
    async with open_target(backend) as target, layer_for(target) as layer:
        corpus = Corpus(seed_chunks + clients * 4 * INGEST_CHUNKS)
        for start in range(0, seed_chunks, 500):
            source, items = entities(corpus.batch(start, start + 500))
            await layer.ingest(source, items, embedding_model=EMBEDDING_MODEL)
        projects = []
        async with layer.uow() as uow:
            for n in range(2):
                projects.append((await uow.projects.add(Project(title=f"load {n}"))).id)
            await uow.commit()
        workers = [Client(layer, corpus, n, projects, seed_chunks) for n in range(clients)]
        console.log(f"{backend}: warm-up {warmup:.0f} s, {clients} clients")
        samples: list[int] = []
        sampling = asyncio.create_task(_sample(samples))
        try:
            until = time.monotonic() + warmup
            await asyncio.gather(*(w.run(until, None) for w in workers))
            result.rss_after_warmup = int(statistics.median(samples[-5:] or [current_rss()]))
            samples.clear()
            console.log(f"{backend}: load {seconds:.0f} s")
            until = time.monotonic() + seconds
            await asyncio.gather(*(w.run(until, result) for w in workers))
        finally:
            sampling.cancel()
        result.rss_end = current_rss()
        result.rss_peak = max(samples or [result.rss_end])
        engines = [layer.engine, *getattr(layer, "read_engines", [])]
        result.checked_out_end = sum(engine.pool.checkedout() for engine in engines)
    return result


async def _sample(samples: list[int]) -> None:
    while True:
        samples.append(current_rss())
        await asyncio.sleep(1)


def render(results: list[LoadResult], console: Console) -> None:
    table = Table(title="Load: operations, latency, errors, memory, pools")
    for column in ("backend", "operation", "count", "per s", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column in ("backend", "operation") else "right")
    for r in results:
        for kind in KINDS:
            count = r.operations[kind]
            values = r.latencies.get(kind, [])
            table.add_row(
                r.backend, kind, f"{count:,}", f"{count / r.seconds:,.1f}",
                f"{_ms(values, 50):.1f}", f"{_ms(values, 95):.1f}",
            )  # fmt: skip
    console.print(table)
    for r in results:
        mib = 1024 * 1024
        console.print(
            f"{r.backend}: {sum(r.operations.values()):,} operations, "
            f"{sum(r.errors.values())} errors {dict(r.errors) or ''}; RSS after warm-up "
            f"{r.rss_after_warmup / mib:,.0f} MiB, at the end {r.rss_end / mib:,.0f} MiB "
            f"({r.memory_growth:+.1%}), peak {r.rss_peak / mib:,.0f} MiB; "
            f"checked out at the end: {r.checked_out_end}"
        )
        for error in r.first_errors:
            console.print(f"  {error}")
        for verdict, ok in r.verdicts.items():
            console.print(f"  {'PASS' if ok else 'FAIL'} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--backends", default="pg,mariadb,sqlite")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--memory-margin", type=float, default=0.10)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"pg", "mariadb", "sqlite"}
    if unknown or args.clients < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error(f"backends from pg, mariadb, sqlite (got {sorted(unknown)}); positive sizes")
    results = []
    for backend in backends:
        results.append(
            asyncio.run(
                run_backend(
                    backend, args.clients, args.seconds, args.warmup, args.memory_margin, console
                )
            )
        )
    render(results, Console())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([r.as_json() for r in results], out, indent=2)
    return 0 if all(all(r.verdicts.values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
