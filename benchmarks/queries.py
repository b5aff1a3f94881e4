"""Reads: vector and hybrid search (PostgreSQL), get by primary key and a filtered list.

The corpus (``--rows`` chunks, ids = corpus index + 1) is loaded once by the raw driver, then
indexed (HNSW on PostgreSQL). Every latency is one call as a service makes it: the layer opens a
read-only Unit of Work per call (``layer.search`` does too); the raw side takes a connection from
its driver's pool (asyncpg, aiomysql; SQLite: one open connection) and sends one statement.
Each repeat runs both sides over the same inputs, order alternating; the figure is the median
over repeats of each repeat's p50.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.context import Bench, layer_for, raw_side
from benchmarks.data import Corpus, exact_top_k, recall
from benchmarks.measure import latencies, p50, peak_rss, reset_peak
from benchmarks.report import Result
from benchmarks.servers import Target

Call = Callable[[int], Awaitable[Any]]


@dataclass
class Loaded:
    """The query corpus as loaded: its size, and (PostgreSQL) the unit vectors for recall."""

    corpus: Corpus
    matrix: np.ndarray | None


async def load_corpus(bench: Bench, target: Target) -> Loaded:
    """Empty the tables and load ``--rows`` chunks with the raw driver; index them."""
    corpus = Corpus(bench.options.rows)
    raw = await raw_side(target).open()
    keep_vectors = target.backend == "pg"
    rows = []
    try:
        await raw.reset()
        definitions = await raw.hnsw_definitions() if keep_vectors else []
        await raw.drop_indexes(definitions) if definitions else None
        for batch in corpus.batches(bench.options.batch):
            await raw.load(batch)
            if keep_vectors:
                rows.append(batch.vectors)
        if definitions:
            bench.say(f"{target.backend}: building the HNSW index over {corpus.size:,} vectors")
            await raw.create_indexes(definitions)
        await raw.after_load()
    finally:
        await raw.close()
    return Loaded(corpus, np.concatenate(rows) if rows else None)


async def measure(
    bench: Bench, result: Result, layer_call: Call, raw_call: Call, count: int
) -> tuple[list[Any], list[Any]]:
    """Both sides over ``count`` inputs, ``--repeat`` times; what the last repeat returned."""
    warm = min(count, 10)
    await latencies(layer_call, warm)
    await latencies(raw_call, warm)
    out: dict[str, list[Any]] = {}
    for repeat in range(bench.options.repeat):
        sides = (("layer", layer_call), ("raw", raw_call))
        for side, call in sides if repeat % 2 == 0 else tuple(reversed(sides)):
            reset_peak()
            times, out[side] = await latencies(call, count)
            peak = peak_rss()
            if side == "layer":
                result.layer.append(1000 * p50(times))
                result.layer_peak = max(result.layer_peak, peak)
            else:
                result.raw.append(1000 * p50(times))
                result.raw_peak = max(result.raw_peak, peak)
    # One more layer pass under cProfile when asked: after, never during, the timed ones.
    async with bench.profiler.profile(f"{result.backend}-{result.scenario.split()[0]}"):
        if bench.options.profile is not None:
            await latencies(layer_call, count)
    return out["layer"], out["raw"]


async def run_reads(bench: Bench, target: Target, loaded: Loaded, scenarios: list[str]) -> list:
    """The read scenarios among ``scenarios`` that ``target`` supports."""
    results = []
    raw = await raw_side(target).open()
    try:
        async with layer_for(target) as layer:
            for name in scenarios:
                scenario = READS.get(name)
                if scenario is None or target.backend not in scenario[1]:
                    continue
                bench.say(f"{target.backend} {name}")
                result = await scenario[0](bench, target, loaded, layer, raw)
                results.append(result)
    finally:
        await raw.close()
    return results


# -- scenarios ---------------------------------------------------------------------------------


def _queries(loaded: Loaded, count: int) -> tuple[np.ndarray, list[str]]:
    return loaded.corpus.queries(count)


async def vector_query(
    bench: Bench, target: Target, loaded: Loaded, layer: Any, raw: Any
) -> Result:
    k, count = bench.options.k, bench.options.queries
    result = Result(target.backend, f"top-{k} vector (HNSW, {loaded.corpus.size:,})", "ms p50",
                    False, 1.10)  # fmt: skip
    vectors, _ = _queries(loaded, count)

    async def by_layer(i: int) -> list[int]:
        hits = await layer.search("crawled_pages", vector=vectors[i], k=k, mode="vector")
        return [hit.entity.id for hit in hits]

    async def by_raw(i: int) -> list[int]:
        return [row["id"] for row in await raw.vector(vectors[i], k)]

    layer_ids, raw_ids = await measure(bench, result, by_layer, by_raw, count)
    _same_ids(result, layer_ids, raw_ids)
    result.notes.append(f"plan: {await raw.plan(vectors[0], k)}")
    assert loaded.matrix is not None
    exact = [[p + 1 for p in row] for row in exact_top_k(loaded.matrix, vectors, k)]
    result.notes.append(
        f"recall@{k} vs exact numpy: layer {recall(layer_ids, exact):.3f}, "
        f"raw {recall(raw_ids, exact):.3f} (goal >= 0.95)"
    )
    if recall(layer_ids, exact) < 0.95:
        result.notes.append(f"recall@{k} below 0.95")
    return result


async def hybrid_query(
    bench: Bench, target: Target, loaded: Loaded, layer: Any, raw: Any
) -> Result:
    k, count = bench.options.k, bench.options.queries
    result = Result(target.backend, f"hybrid top-{k}", "ms p50", False, 1.20)
    vectors, texts = _queries(loaded, count)

    async def by_layer(i: int) -> list[int]:
        hits = await layer.search(
            "crawled_pages", vector=vectors[i], text=texts[i], k=k, mode="hybrid"
        )
        return [hit.entity.id for hit in hits]

    async def by_raw(i: int) -> list[int]:
        return [row["id"] for row in await raw.hybrid(vectors[i], texts[i], k)]

    layer_ids, raw_ids = await measure(bench, result, by_layer, by_raw, count)
    _same_ids(result, layer_ids, raw_ids)
    result.notes.append("raw: the layer's plan (nearest, keyword, RRF, rows) as one statement")
    return result


def _sample_ids(loaded: Loaded, count: int) -> list[int]:
    rng = np.random.default_rng(7)
    return [int(i) + 1 for i in rng.integers(0, loaded.corpus.size, count)]


async def get_by_id(bench: Bench, target: Target, loaded: Loaded, layer: Any, raw: Any) -> Result:
    result = Result(target.backend, "get by primary key", "ms p50", False, 2.0)
    ids = _sample_ids(loaded, bench.options.queries)

    async def by_layer(i: int) -> Any:
        # Read inside the block: leaving a Unit of Work rolls back, which expires what it loaded.
        async with layer.uow(read_only=True) as uow:
            page = await uow.pages.get(ids[i])
            return (page.id, page.url, page.content, page.metadata_)

    async def by_raw(i: int) -> Any:
        row = await raw.get(ids[i])
        return (row[0], row[1], row[3], row[4])

    layer_rows, raw_rows = await measure(bench, result, by_layer, by_raw, len(ids))
    if layer_rows != raw_rows:
        result.problems.append("the two sides read different rows")
    if target.backend != "sqlite":
        floor, _ = await latencies(lambda i: raw.get(ids[i], held=True), len(ids))
        result.notes.append(
            f"raw: a pooled connection per call; on one held connection: {1000 * p50(floor):.3f}"
            f" ms (layer/held {result.layer_value / (1000 * p50(floor)):.1f})"
        )
    return result


async def list_filtered(
    bench: Bench, target: Target, loaded: Loaded, layer: Any, raw: Any
) -> Result:
    limit = 100
    result = Result(target.backend, f"list {limit} (source_id =)", "ms p50", False, 2.0)
    sources = loaded.corpus.sources()
    count = bench.options.queries

    async def by_layer(i: int) -> list[int]:
        async with layer.uow(read_only=True) as uow:
            rows = await uow.pages.list({"source_id": sources[i % len(sources)]}, limit=limit)
            return [row.id for row in rows]

    async def by_raw(i: int) -> list[int]:
        return [row[0] for row in await raw.list_rows(sources[i % len(sources)], limit)]

    layer_ids, raw_ids = await measure(bench, result, by_layer, by_raw, count)
    _same_ids(result, layer_ids, raw_ids)
    if any(len(ids) != min(limit, loaded.corpus.size) for ids in raw_ids[:1]):
        result.problems.append(f"expected {limit} rows per call")
    return result


def _same_ids(result: Result, layer: list[list[int]], raw: list[list[int]]) -> None:
    differing = sum(1 for a, b in zip(layer, raw, strict=True) if a != b)
    if differing:
        result.problems.append(f"{differing} of {len(raw)} calls returned different ids")


READS: dict[str, tuple[Callable[..., Awaitable[Result]], tuple[str, ...]]] = {
    "vector": (vector_query, ("pg",)),
    "hybrid": (hybrid_query, ("pg",)),
    "get": (get_by_id, ("pg", "mariadb", "sqlite")),
    "list": (list_filtered, ("pg", "mariadb", "sqlite")),
}
