"""Ingest: the layer's ``ingest`` (one Unit of Work per batch: source upsert, chunks replaced,
vectors written) against the raw driver doing the same per batch in one transaction.

Both sides start each run from empty tables and write the same chunks; the order of the sides
alternates between repeats. On PostgreSQL the HNSW index is dropped for the ingest runs (both
sides) unless ``--keep-hnsw``: with it, building the graph dominates both and hides the layer's
own cost; the query scenarios build it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.context import Bench, layer_for, raw_side, sql_side
from benchmarks.data import DIMENSION, EMBEDDING_MODEL, Batch, Corpus
from benchmarks.measure import Run, timed
from benchmarks.raw.common import Digest, source_values, utcnow
from benchmarks.report import Result
from benchmarks.servers import Target

GOALS = {"pg": 0.90, "mariadb": 0.90, "sqlite": 0.90, "chroma": 0.90}
RAW_NAMES = {
    "pg": "asyncpg binary COPY",
    "mariadb": "aiomysql executemany",
    "sqlite": "aiosqlite executemany",
    "chroma": "chromadb collection.add",
}


def entities(batch: Batch) -> tuple[Any, list[tuple[Any, Any]]]:
    """The batch as the layer takes it: a ``Source`` and (``CrawledPage``, vector) pairs."""
    from app.domain import CrawledPage, Source

    values = source_values(batch, utcnow())
    values["metadata_"] = values.pop("metadata")
    items = [
        (
            CrawledPage(
                url=c.url,
                chunk_number=c.chunk_number,
                content=c.content,
                metadata_=dict(c.metadata),
                source_id=c.source_id,
            ),
            batch.vectors[i],
        )
        for i, c in enumerate(batch.chunks)
    ]
    return Source(**values), items


async def layer_ingest(layer: Any, batches: Iterable[Batch]) -> int:
    written = 0
    for batch in batches:
        source, items = entities(batch)
        report = await layer.ingest(source, items, embedding_model=EMBEDDING_MODEL)
        written += report.written
    return written


async def fused_ingest(layer: Any, batches: Iterable[Batch]) -> int:
    """What ``ingest`` does, with each chunk's vector in its INSERT/COPY (``bulk_insert``).

    A prototype of the recommended fast path, through the same Unit of Work and repositories.
    """
    from sqlalchemy.orm import make_transient_to_detached

    from app.repositories.bulk_insert import insert_with_columns
    from app.vector.sql.common import register_pgvector
    from app.vector.sql.exact import encode_blob

    written = 0
    for batch in batches:
        source, items = entities(batch)
        chunks = [chunk for chunk, _ in items]
        for chunk in chunks:
            chunk.embedding_model, chunk.embedding_dimension = EMBEDDING_MODEL, DIMENSION
        async with layer.uow() as uow:
            session = uow.session
            await uow.sources.upsert_many([source], on=["source_id"])
            await uow.pages.delete_by_urls(sorted({c.url for c in chunks}))
            uow.pages._validator.many(chunks)
            if layer.dialect_name == "postgresql":
                await register_pgvector(session, "public")
                vectors: Any = list(batch.vectors)
            else:
                vectors = [encode_blob(v) for v in batch.vectors]
            async with session.begin_nested():
                await insert_with_columns(
                    session, uow.pages.columns, chunks, {f"embedding_{DIMENSION}": vectors}
                )
            for chunk in chunks:
                make_transient_to_detached(chunk)
                session.add(chunk)
            if layer.dialect_name != "postgresql":  # the exact index's cache version
                await uow.vectors._written(session, "crawled_pages")
            await uow.commit()
        written += len(chunks)
    return written


async def raw_ingest(raw: Any, batches: Iterable[Batch]) -> int:
    written = 0
    for batch in batches:
        await raw.ingest(batch)
        written += len(batch)
    return written


class IngestRunner:
    """Runs both sides on one target, each from empty tables, and keeps their digests."""

    def __init__(self, bench: Bench, target: Target) -> None:
        self.bench = bench
        self.target = target
        self.digests: dict[str, Digest] = {}

    async def run_side(
        self,
        side: str,
        batches: Callable[[], Iterable[Batch]],
        profile: str | None = None,
        ingest: Callable[[Any, Iterable[Batch]], Awaitable[int]] = layer_ingest,
    ) -> Run:
        async with AsyncExitStack() as stack:
            sql = await sql_side(self.target).open()
            stack.push_async_callback(sql.close)
            await sql.reset()
            raw = await stack.enter_async_context(_raw(self.target, sql))
            if side == "raw":
                if hasattr(raw, "prepare"):
                    raw.prepare()
                run = await timed(lambda: raw_ingest(raw, batches()))
            else:
                layer = await stack.enter_async_context(layer_for(self.target))
                await _prepare_layer(layer, self.target)
                work: Callable[[], Awaitable[int]] = lambda: ingest(layer, batches())  # noqa: E731
                run = await timed(work)
                if profile:
                    await raw.reset()
                    async with self.bench.profiler.profile(profile):
                        await work()
            self.digests[side] = await raw.digest(self.bench.options.check)
        return run


async def _prepare_layer(layer: Any, target: Target) -> None:
    if target.backend == "chroma":  # the raw side creates its collection before the clock too
        feed = await layer.vector_feed()
        await feed.store.ensure_collection("crawled_pages", DIMENSION)


class _raw:
    """The side that reads the results back (Chroma's for chroma, else the SQL connection)."""

    def __init__(self, target: Target, sql: Any) -> None:
        self.target, self.sql, self.other = target, sql, None

    async def __aenter__(self) -> Any:
        if self.target.backend != "chroma":
            return self.sql
        self.other = await raw_side(self.target).open()
        await self.other.reset()
        return self.other

    async def __aexit__(self, *exc: object) -> None:
        if self.other is not None:
            await self.other.close()


async def run_ingest(bench: Bench, target: Target, *, fused: bool = False) -> Result:
    """``--rows`` chunks (generated before the clock), ``--repeat`` times per side.

    ``fused``: the layer side is ``fused_ingest`` (the fast-path prototype), not ``ingest``.
    """
    options = bench.options
    rows = options.chroma_rows if target.backend == "chroma" else options.rows
    corpus = Corpus(rows, source_size=max(options.batch, 1000))
    batches = list(corpus.batches(options.batch))
    name = f"ingest {rows:,} x {corpus.dimension}-d"
    result = Result(
        target.backend, name + (" (fast-path prototype)" if fused else ""), "rows/s", True,
        GOALS[target.backend],
    )  # fmt: skip
    result.notes.append(f"raw: {RAW_NAMES[target.backend]}; {len(batches)} batches")
    if fused:
        result.notes.append("layer: UoW + repositories + bulk_insert (vector in the row write)")
    if target.backend == "chroma":
        result.notes.append("the layer also writes each row and an outbox entry to SQLite")
    runner = IngestRunner(bench, target)
    async with _without_hnsw(bench, target):
        for repeat in range(options.repeat):
            order = ("layer", "raw") if repeat % 2 == 0 else ("raw", "layer")
            for side in order:
                last = repeat == options.repeat - 1 and side == "layer"
                profile = f"{target.backend}-ingest{'-fast' if fused else ''}" if last else None
                ingest = fused_ingest if fused else layer_ingest
                run = await runner.run_side(side, lambda: batches, profile, ingest)
                _record(result, side, rows / run.seconds, run.peak)
                bench.say(f"{target.backend} ingest {side}: {rows / run.seconds:,.0f} rows/s")
    _compare(result, runner.digests, rows)
    return result


async def run_memory(bench: Bench, target: Target) -> Result:
    """``--memory-rows`` chunks generated batch by batch while ingesting: the peak memory."""
    options = bench.options
    corpus = Corpus(options.memory_rows, source_size=max(options.batch, 1000))
    result = Result(
        target.backend, f"ingest {options.memory_rows:,} streamed (memory)", "rows/s", True, None
    )
    result.peak_limit = 2**30
    result.notes.append(
        f"one ingest call per batch of {options.batch}, each generated just before it"
    )
    runner = IngestRunner(bench, target)
    # The raw side only for --check: the figure that matters here is the layer's peak.
    sides = ("layer", "raw") if options.check else ("layer",)
    async with _without_hnsw(bench, target):
        for side in sides:
            run = await runner.run_side(side, lambda: corpus.batches(options.batch))
            _record(result, side, options.memory_rows / run.seconds, run.peak)
            bench.say(f"{target.backend} memory {side}: peak {run.peak / 2**20:,.0f} MiB")
    if options.check:
        _compare(result, runner.digests, options.memory_rows)
    elif runner.digests["layer"].rows != options.memory_rows:
        result.problems.append(f"layer wrote {runner.digests['layer'].rows} rows")
    return result


def _record(result: Result, side: str, value: float, peak: int) -> None:
    if side == "layer":
        result.layer.append(value)
        result.layer_peak = max(result.layer_peak, peak)
    else:
        result.raw.append(value)
        result.raw_peak = max(result.raw_peak, peak)


def _compare(result: Result, digests: dict[str, Digest], rows: int) -> None:
    layer, raw = digests.get("layer"), digests.get("raw")
    if layer is None or raw is None:
        result.problems.append("a side did not run")
        return
    result.problems += layer.differences(raw)
    if raw.rows != rows or raw.vectors != rows:
        result.problems.append(f"expected {rows} rows and vectors, raw side has {raw}")


class _without_hnsw:
    """PostgreSQL: the HNSW index dropped for the ingest runs (unless --keep-hnsw)."""

    def __init__(self, bench: Bench, target: Target) -> None:
        self.active = target.backend == "pg" and not bench.options.keep_hnsw
        self.target = target
        self.definitions: list[tuple[str, str]] = []

    async def __aenter__(self) -> None:
        if self.active:
            raw = await raw_side(self.target).open()
            try:
                self.definitions = await raw.hnsw_definitions()
                await raw.drop_indexes(self.definitions)
            finally:
                await raw.close()

    async def __aexit__(self, *exc: object) -> None:
        if self.active and self.definitions:
            raw = await raw_side(self.target).open()
            try:
                await raw.reset()  # the query scenarios load their own corpus, then index it
                await raw.create_indexes(self.definitions)
            finally:
                await raw.close()
