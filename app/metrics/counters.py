"""Per-engine counters: statements, their time, slow ones, errors by class, pool waits.

Counting must cost nothing a benchmark can see, so nothing here listens to SQLAlchemy's cursor
events (a listener there also turns off the driver path, see ``app.repositories.driver``):

* statements: the dialect's ``do_execute``/``do_executemany``/``do_execute_no_params``, which
  every statement SQLAlchemy sends goes through, are wrapped with two ``time.perf_counter()``
  calls; the driver path and PostgreSQL's COPY call ``observe`` themselves. A statement is what
  the layer sends: the BEGIN and COMMIT a driver sends on its own are not counted.
* errors: what the database or driver reported, by the ``DataLayerError`` class it becomes
  (``app.errors.classify``): SQLAlchemy's ``handle_error`` event, the driver path's own
  translation, and connections that could not be made (``BackendUnavailableError``).
* waits: a checkout that found every connection of the pool in use and no overflow left to open
  another, so that it waited for one to come back; ``wait_seconds`` is their time waiting, and
  ``timeouts`` those that gave up after ``DATABASE_POOL_TIMEOUT``. (SQLAlchemy's pool events fire
  after a checkout, so the engine's ``raw_connection``, which every checkout calls, is wrapped.)

Counters belong to one process and start at zero with it; the event loop's thread updates them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import BackendUnavailableError, classify

_KEY = "_archon_metrics"  # kept on the dialect, one per engine, as the driver path's cache is
_EXECUTES = ("do_execute", "do_executemany", "do_execute_no_params")
clock = time.perf_counter


class EngineMetrics:
    """The counters of one engine."""

    __slots__ = (
        "slow_seconds",
        "statements",
        "statement_seconds",
        "slow_statements",
        "errors",
        "waits",
        "wait_seconds",
        "timeouts",
    )

    def __init__(self, slow_seconds: float) -> None:
        self.slow_seconds = slow_seconds
        self.statements = 0
        self.statement_seconds = 0.0
        self.slow_statements = 0
        self.errors: dict[str, int] = {}
        self.waits = 0
        self.wait_seconds = 0.0
        self.timeouts = 0

    def observe(self, seconds: float) -> None:
        """One statement ran (or failed) in ``seconds``."""
        self.statements += 1
        self.statement_seconds += seconds
        if seconds >= self.slow_seconds:
            self.slow_statements += 1

    def failed(self, error: BaseException | None) -> None:
        """The database or the driver reported ``error``."""
        if isinstance(error, sa_exc.DBAPIError):
            kind = classify(error).__name__
        elif isinstance(error, OSError):  # TimeoutError and ConnectionError included
            kind = BackendUnavailableError.__name__
        else:  # not the database's: a bug or a bad argument, counted by whoever catches it
            return
        self.errors[kind] = self.errors.get(kind, 0) + 1


def metrics_of(target: AsyncEngine | Engine | Dialect) -> EngineMetrics | None:
    """The counters of an engine (or its dialect); ``None`` when it was made without them."""
    if isinstance(target, AsyncEngine):
        target = target.sync_engine
    dialect = target.dialect if isinstance(target, Engine) else target
    found: EngineMetrics | None = dialect.__dict__.get(_KEY)
    return found


def instrument(engine: AsyncEngine, slow_ms: float) -> EngineMetrics:
    """Count ``engine``'s statements, errors and pool waits (a statement of ``slow_ms`` or
    more is slow)."""
    sync = engine.sync_engine
    metrics = EngineMetrics(slow_ms / 1000)
    dialect = sync.dialect
    dialect.__dict__[_KEY] = metrics
    for name in _EXECUTES:
        setattr(dialect, name, _timed(getattr(dialect, name), metrics))

    @event.listens_for(sync, "handle_error")
    def _failed(context: Any) -> None:
        metrics.failed(context.sqlalchemy_exception or context.original_exception)

    sync.raw_connection = _counting_waits(sync, metrics)  # type: ignore[method-assign]
    return metrics


def _timed(execute: Callable[..., Any], metrics: EngineMetrics) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        started = clock()
        try:
            return execute(*args)
        finally:
            metrics.observe(clock() - started)

    return timed


def _counting_waits(engine: Engine, metrics: EngineMetrics) -> Callable[[], Any]:
    checkout = engine.raw_connection

    def raw_connection() -> Any:
        # engine.pool, read each time: dispose() replaces the pool.
        waiting = _exhausted(engine.pool)
        started = clock() if waiting else 0.0
        try:
            return checkout()
        except sa_exc.TimeoutError:  # the pool's own: no connection came back in time
            metrics.timeouts += 1
            raise
        except OSError as exc:  # the server could not be reached (DBAPI errors: handle_error)
            metrics.failed(exc)
            raise
        finally:
            if waiting:
                metrics.waits += 1
                metrics.wait_seconds += clock() - started

    return raw_connection


def _exhausted(pool: Any) -> bool:
    """Whether a checkout now must wait: no idle connection and no overflow left."""
    checked_in = getattr(pool, "checkedin", None)
    limit = getattr(pool, "_max_overflow", -1)
    if checked_in is None or limit < 0:  # a pool without a limit never makes anyone wait
        return False
    return bool(checked_in() == 0 and pool.overflow() >= limit)


__all__ = ["EngineMetrics", "clock", "instrument", "metrics_of"]
