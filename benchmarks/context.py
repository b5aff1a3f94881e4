"""What every scenario receives: the sizes, the modes, and helpers to open both sides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from rich.console import Console

from benchmarks.measure import Profiler
from benchmarks.servers import Target

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

SCENARIOS = (
    "ingest", "ingest-fast", "memory", "vector", "hybrid", "get", "list", "tx", "tx-audit",
)  # fmt: skip
# ingest-fast measures a prototype of the recommended fast path, tx-audit the audit log's cost
# (the layer against itself): asked for, not by default.
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if s not in ("ingest-fast", "tx-audit"))


@dataclass
class Options:
    """Sizes and modes (the command line's options)."""

    rows: int = 20_000
    chroma_rows: int = 5_000  # Chroma's own HNSW inserts run at a few hundred rows/s
    queries: int = 200
    repeat: int = 3
    batch: int = 1000
    k: int = 10
    clients: int = 8
    transactions: int = 50  # per client
    memory_rows: int = 100_000
    check: bool = False
    keep_hnsw: bool = False
    profile: Path | None = None

    @classmethod
    def small(cls, **overrides: Any) -> Options:
        """A quick correctness run: every scenario, tiny sizes, one repeat."""
        values: dict[str, Any] = {
            "rows": 600,
            "chroma_rows": 600,
            "queries": 20,
            "repeat": 1,
            "batch": 200,
            "clients": 4,
            "transactions": 5,
            "memory_rows": 1_000,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Bench:
    """One run of the benchmark: options, the console for progress, the profiler."""

    options: Options
    console: Console = field(default_factory=lambda: Console(stderr=True))
    profiler: Profiler = field(init=False)

    def __post_init__(self) -> None:
        self.profiler = Profiler(self.options.profile)

    def say(self, message: str) -> None:
        self.console.log(message)


@asynccontextmanager
async def layer_for(target: Target, **settings: Any) -> AsyncIterator[DataLayer]:
    """A fresh layer on ``target`` (``settings`` overriding the target's), connected (and its
    vector store opened) before timing."""
    from app.bootstrap import bootstrap

    layer = bootstrap(target.settings(**settings))
    try:
        async with layer.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        yield layer
    finally:
        await layer.aclose()


def raw_side(target: Target, pool_size: int = 1) -> Any:
    """The raw driver side for ``target`` (not yet opened); ``pool_size`` for its reads."""
    if target.backend == "pg":
        from benchmarks.raw.pg import RawPostgres

        return RawPostgres(target.raw, pool_size)
    if target.backend == "mariadb":
        from benchmarks.raw.mysql import RawMySQL

        return RawMySQL(target.raw, pool_size)
    if target.backend == "chroma":
        from benchmarks.raw.chroma import RawChroma

        return RawChroma(target.raw)
    from benchmarks.raw.sqlite import RawSQLite

    return RawSQLite(target.raw)


def sql_side(target: Target) -> Any:
    """The raw SQL side of ``target`` (for chroma: its SQLite file, to empty the rows)."""
    if target.backend == "chroma":
        from benchmarks.raw.sqlite import RawSQLite

        return RawSQLite(target.raw)
    return raw_side(target)
