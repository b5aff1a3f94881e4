"""``LayerStats`` in Prometheus' text exposition format (version 0.0.4).

One ``# HELP`` and one ``# TYPE`` line per metric, then its samples; counters end in ``_total``
(seconds in ``_seconds_total``); labels ``engine`` (primary, reader, replica-N), ``class`` (the
``DataLayerError`` class of an error) and ``replica``. A replica whose lag is not measured has no
lag sample, and the outbox backlog has none when the database could not be asked.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.metrics.report import EngineStats, LayerStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PREFIX = "archon_db_"
# name, type, help, the EngineStats field it reads
_ENGINE_METRICS = (
    ("pool_size", "gauge", "Connections the pool keeps open.", "pool_size"),
    ("pool_checked_out", "gauge", "Connections in use now.", "checked_out"),
    ("pool_overflow", "gauge", "Connections opened beyond the pool size.", "overflow"),
    (
        "pool_waits_total",
        "counter",
        "Checkouts that found every connection in use and waited for one.",
        "waits",
    ),
    ("pool_wait_seconds_total", "counter", "Time checkouts spent waiting.", "wait_seconds"),
    (
        "pool_timeouts_total",
        "counter",
        "Checkouts that gave up after DATABASE_POOL_TIMEOUT.",
        "timeouts",
    ),
    ("statements_total", "counter", "Statements sent.", "statements"),
    ("statement_seconds_total", "counter", "Time statements took.", "statement_seconds"),
    (
        "slow_statements_total",
        "counter",
        "Statements that took SLOW_QUERY_THRESHOLD_MS or more.",
        "slow_statements",
    ),
)


def render(stats: LayerStats) -> str:
    """The exposition text, ending with a newline."""
    lines: list[str] = []
    for name, kind, help_text, attribute in _ENGINE_METRICS:
        samples = (({"engine": e.engine}, getattr(e, attribute)) for e in stats.engines)
        lines += _metric(name, kind, help_text, samples)
    lines += _metric(
        "errors_total",
        "counter",
        "Errors the database or driver reported, by DataLayerError class.",
        _errors(stats.engines),
    )
    lines += _metric(
        "replica_lag_seconds",
        "gauge",
        "How far a read replica is behind the primary.",
        (
            ({"replica": r.engine}, r.lag_seconds)
            for r in stats.replicas
            if r.lag_seconds is not None
        ),
    )
    lines += _metric(
        "outbox_backlog",
        "gauge",
        "Vector operations an external store has still to be told.",
        [({}, stats.outbox_backlog)] if stats.outbox_backlog is not None else [],
    )
    return "\n".join(lines) + "\n"


def _errors(engines: list[EngineStats]) -> Iterable[tuple[dict[str, str], float]]:
    for engine in engines:
        for kind, count in engine.errors.items():
            yield {"engine": engine.engine, "class": kind}, count


def _metric(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    full = _PREFIX + name
    lines = [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
    for labels, value in samples:
        inner = ",".join(f'{key}="{_escaped(text)}"' for key, text in labels.items())
        lines.append(f"{full}{{{inner}}} {_number(value)}" if inner else f"{full} {_number(value)}")
    return lines


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


__all__ = ["CONTENT_TYPE", "render"]
