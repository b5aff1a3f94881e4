"""``layer.stats()``: a snapshot of every engine's pool and counters, replicas, the outbox.

Engines are named ``primary``, ``reader`` (the primary's own pool of read-only connections) or
``replica-1``, ``replica-2``... (``DATABASE_READ_URLS`` with ``ENABLE_READ_REPLICAS``). Pools and
counters are read first, so the outbox count that follows is not in them. Counters are the
process's own: a fresh process (``archon-db stats``) shows its own few statements; a service
shows its own by serving ``layer.stats()`` from an endpoint.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.errors import DataLayerError, translate_errors
from app.metrics.counters import metrics_of

log = logging.getLogger(__name__)


class Layer(Protocol):
    """What the stats read of a data layer."""

    settings: Settings
    engine: AsyncEngine
    read_engines: list[AsyncEngine]
    replica_engines: list[AsyncEngine]


@dataclass(frozen=True)
class EngineStats:
    """One engine: its pool now, and what it counted since the process started."""

    engine: str
    pool_size: int  # connections the pool keeps
    checked_out: int  # in use now
    overflow: int  # opened beyond pool_size, in use or not yet closed
    waits: int  # checkouts that waited for a connection to come back
    wait_seconds: float
    timeouts: int  # checkouts that gave up after DATABASE_POOL_TIMEOUT
    statements: int
    statement_seconds: float
    slow_statements: int  # statements that took SLOW_QUERY_THRESHOLD_MS or more
    errors: dict[str, int] = field(default_factory=dict)  # by DataLayerError class


@dataclass(frozen=True)
class ReplicaStats:
    """A read replica and how far it is behind the primary (``None``: not measured)."""

    engine: str
    lag_seconds: float | None = None


@dataclass(frozen=True)
class LayerStats:
    """What ``layer.stats()`` returns."""

    backend: str
    slow_statement_ms: float
    engines: list[EngineStats]
    replicas: list[ReplicaStats]
    # Vector operations an external store has still to be told; None: the database could not be
    # asked (the pools and counters are reported all the same, when they matter most).
    outbox_backlog: int | None

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON as it is)."""
        return asdict(self)


async def collect(layer: Layer) -> LayerStats:
    """The layer's stats now."""
    named = engines_of(layer)
    engines = [engine_stats(name, engine) for name, engine in named]
    replicas = [ReplicaStats(name) for name, _ in named if name.startswith("replica-")]
    return LayerStats(
        backend=str(layer.settings.database_type),
        slow_statement_ms=layer.settings.slow_query_threshold_ms,
        engines=engines,
        replicas=await _with_lag(layer, replicas),
        # The primary's own reader where there is one: on SQLite the primary's transactions
        # take the write lock, which a Unit of Work of this process may hold.
        outbox_backlog=await _backlog_if_reachable(dict(named).get("reader", layer.engine)),
    )


def engines_of(layer: Layer) -> list[tuple[str, AsyncEngine]]:
    """The layer's engines by name: primary, the primary's reader, then the replicas (in
    ``DATABASE_READ_URLS``' order)."""
    replicas = layer.replica_engines
    named = [("primary", layer.engine)]
    named += [("reader", e) for e in layer.read_engines if not any(e is r for r in replicas)]
    named += [(f"replica-{n}", engine) for n, engine in enumerate(replicas, start=1)]
    return named


def engine_stats(name: str, engine: AsyncEngine) -> EngineStats:
    """One engine's pool and counters."""
    pool: Any = engine.pool
    metrics = metrics_of(engine)
    size = pool.size() if hasattr(pool, "size") else 0
    return EngineStats(
        engine=name,
        pool_size=size,
        checked_out=pool.checkedout() if hasattr(pool, "checkedout") else 0,
        overflow=max(0, pool.overflow()) if hasattr(pool, "overflow") else 0,
        waits=metrics.waits if metrics else 0,
        wait_seconds=metrics.wait_seconds if metrics else 0.0,
        timeouts=metrics.timeouts if metrics else 0,
        statements=metrics.statements if metrics else 0,
        statement_seconds=metrics.statement_seconds if metrics else 0.0,
        slow_statements=metrics.slow_statements if metrics else 0,
        errors=dict(sorted(metrics.errors.items())) if metrics else {},
    )


async def _with_lag(layer: Layer, replicas: list[ReplicaStats]) -> list[ReplicaStats]:
    """The replicas with their lag, where the layer measures it (``replica_status()``)."""
    status = getattr(layer, "replica_status", None)
    if status is None or not replicas:
        return replicas
    measured = list(await status())
    return [
        ReplicaStats(replica.engine, _lag(measured[n]) if n < len(measured) else None)
        for n, replica in enumerate(replicas)
    ]


def _lag(status: Any) -> float | None:
    value = status.get("lag_seconds") if isinstance(status, dict) else None
    if value is None:
        value = getattr(status, "lag_seconds", None)
    return float(value) if isinstance(value, int | float) else None


async def _backlog_if_reachable(engine: AsyncEngine) -> int | None:
    try:
        return await outbox_backlog(engine)
    except DataLayerError as exc:
        log.warning("stats: could not count the vector outbox: %s", exc)
        return None


async def outbox_backlog(engine: AsyncEngine) -> int:
    """Rows of the vector outbox: operations an external store has not taken yet (0 when the
    database feeds no store, or is not migrated that far)."""
    from app.vector.outbox.table import has_outbox, outbox

    with translate_errors("counting the vector outbox"):
        if not await has_outbox(engine):
            return 0
        async with engine.connect() as connection:
            count = await connection.scalar(sa.select(sa.func.count()).select_from(outbox))
    return int(count or 0)


__all__ = ["EngineStats", "LayerStats", "ReplicaStats", "collect", "engine_stats", "engines_of"]
