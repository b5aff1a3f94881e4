"""``layer.stats()`` and ``archon-db stats``: counters move as statements run, on every backend.

Statements are counted on both of the layer's paths (SQLAlchemy's and the driver's); errors by the
``DataLayerError`` class they become; pool checkouts that had to wait, and for how long.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app.cli import _register
from app.cli import app as cli
from app.domain import Project
from app.errors import BackendUnavailableError, ConflictError, DataLayerError
from app.metrics.prometheus import render
from app.metrics.report import EngineStats, LayerStats, ReplicaStats, engine_stats, engines_of
from app.repositories.driver import runner

pytestmark = pytest.mark.pooler
SERVERS = ("pgvector", "postgres", "mariadb")
# A statement that takes a while, on each dialect (SQLite has no sleep: a long recursion).
SLOW = {
    "postgresql": "SELECT pg_sleep(0.3)",
    "mysql": "SELECT SLEEP(0.3)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
    "SELECT count(*) FROM c",
}


async def _engine(layer, name: str = "primary") -> EngineStats:
    """One engine's counters now (``layer.stats()`` then counts the outbox: its own statements
    would be in the next snapshot)."""
    return engine_stats(name, dict(engines_of(layer))[name])


async def _warm(layer) -> None:
    """Connect both pools once: a first connection sends the dialect's own set-up queries."""
    async with layer.uow() as uow:
        await uow.projects.count()
    async with layer.uow(read_only=True) as uow:
        await uow.projects.count()


async def test_statements_are_counted_on_both_paths(layer) -> None:
    await _warm(layer)
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="counted"))
        await uow.commit()
    reader = "reader" if layer.read_engines else "primary"  # behind the pooler: no reader
    before = await _engine(layer, reader)
    async with layer.uow(read_only=True) as uow:
        await uow.projects.get(project.id)  # the driver path where the engine has it
        driver_path = runner(uow.session) is not None
        await uow.session.execute(sa.text("SELECT 1"))  # SQLAlchemy's path
    after = await _engine(layer, reader)
    assert after.statements - before.statements == 2, driver_path
    assert after.statement_seconds > before.statement_seconds
    assert after.slow_statements == before.slow_statements
    expected_driver_path = layer.settings.database_type != "supabase"
    assert driver_path is expected_driver_path


async def test_errors_are_counted_by_class(layer) -> None:
    await _warm(layer)
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="once"))
        await uow.commit()
    before = await _engine(layer)
    async with layer.uow() as uow:
        with pytest.raises(ConflictError):
            async with uow.savepoint():
                await uow.projects.add(Project(id=project.id, title="twice"))
        with pytest.raises(sa.exc.DBAPIError):
            await uow.session.execute(sa.text("SELECT * FROM no_such_table"))
    after = await _engine(layer)
    assert after.errors.get("ConflictError", 0) == before.errors.get("ConflictError", 0) + 1
    assert after.errors.get("DataLayerError", 0) == before.errors.get("DataLayerError", 0) + 1


async def test_checked_out_connections_return_to_the_pool(layer) -> None:
    async with layer.uow() as uow:
        await uow.projects.count()
        assert (await _engine(layer)).checked_out == 1
    assert (await _engine(layer)).checked_out == 0
    stats = await layer.stats()
    assert all(e.checked_out == 0 for e in stats.engines)
    assert stats.engines[0].pool_size >= 1


async def test_slow_statements_are_counted(make_layer) -> None:
    layer = await make_layer(slow_query_threshold_ms=150)
    await _warm(layer)
    before = await _engine(layer)
    async with layer.uow() as uow:
        await uow.projects.count()
        await uow.session.execute(sa.text(SLOW[layer.dialect_name]))
    after = await _engine(layer)
    assert after.slow_statements == before.slow_statements + 1
    assert after.statement_seconds - before.statement_seconds >= 0.15
    assert (await layer.stats()).slow_statement_ms == 150


@pytest.mark.backends(*SERVERS)
async def test_checkouts_that_wait_for_a_connection(make_layer) -> None:
    """Pool of 1 (+1 overflow): a third Unit of Work waits until one of two gives its
    connection back; with every connection held past the pool timeout, it gives up."""
    layer = await make_layer(database_pool_size=1, database_pool_timeout=2)
    release = asyncio.Event()

    async def holder() -> None:
        async with layer.uow() as uow:
            await uow.session.execute(sa.text("SELECT 1"))
            await release.wait()

    holders = [asyncio.create_task(holder()) for _ in range(2)]
    while (await _engine(layer)).checked_out < 2:
        await asyncio.sleep(0.01)
    before = await _engine(layer)
    assert before.overflow == 1

    async def waiter() -> None:
        async with layer.uow() as uow:
            await uow.session.execute(sa.text("SELECT 1"))

    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    release.set()
    await asyncio.gather(waiting, *holders)
    after = await _engine(layer)
    assert after.waits == before.waits + 1
    assert after.wait_seconds - before.wait_seconds >= 0.25
    assert after.checked_out == 0


@pytest.mark.backends(*SERVERS)
async def test_a_checkout_that_times_out_is_counted(make_layer) -> None:
    layer = await make_layer(database_pool_size=1, database_pool_timeout=0.2)
    async with layer.uow() as first, layer.uow() as second:
        await first.session.execute(sa.text("SELECT 1"))
        await second.session.execute(sa.text("SELECT 1"))
        with pytest.raises(DataLayerError, match="DATABASE_POOL_TIMEOUT"):
            async with layer.uow() as third:
                await third.projects.count()
    stats = await _engine(layer)
    assert stats.timeouts == 1 and stats.waits == 1


async def test_outbox_backlog_counts_pending_vector_operations(layer, sql) -> None:
    assert (await layer.stats()).outbox_backlog == 0
    for n in range(3):
        await sql.execute(
            "INSERT INTO archon_vector_outbox (batch, collection, record_id, op, attempts, "
            "created_at, updated_at) VALUES ('b', 'crawled_pages', :id, 'upsert', 0, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=str(n),
        )
    assert (await layer.stats()).outbox_backlog == 3


@pytest.mark.backends("sqlite", "mariadb")
async def test_replicas_are_listed_with_their_lag(make_layer, backend) -> None:
    layer = await make_layer(enable_read_replicas=True, database_read_urls=[backend.url] * 2)
    stats = await layer.stats()
    assert [e.engine for e in stats.engines] == ["primary", "reader", "replica-1", "replica-2"]
    assert stats.replicas == [ReplicaStats("replica-1"), ReplicaStats("replica-2")]

    async def replica_status() -> list[dict[str, float]]:  # what a layer that measures lag offers
        return [{"lag_seconds": 0.25}, {"lag_seconds": 3}]

    layer.replica_status = replica_status
    lags = [r.lag_seconds for r in (await layer.stats()).replicas]
    assert lags == [0.25, 3.0]


@pytest.mark.parametrize("url", ["postgresql+asyncpg://archon@127.0.0.1:1/archon",
                                 "mysql+aiomysql://archon@127.0.0.1:1/archon"])  # fmt: skip
async def test_a_server_that_cannot_be_reached_is_counted_and_stats_still_answer(url) -> None:
    from app.bootstrap import bootstrap
    from app.config import Settings

    layer = bootstrap(Settings(_env_file=None, database_url=url, vector_database="exact"))
    try:
        with pytest.raises(BackendUnavailableError):
            async with layer.uow() as uow:
                await uow.projects.count()
        stats = await layer.stats()  # the outbox cannot be counted: the rest is reported
        assert stats.outbox_backlog is None
        assert stats.engines[0].errors == {"BackendUnavailableError": 1}
        assert stats.engines[0].checked_out == 0
        exposition = parse_exposition(render(stats))
        assert "archon_db_outbox_backlog" not in exposition
        assert exposition["archon_db_errors_total"] == [
            ('archon_db_errors_total{engine="primary",class="BackendUnavailableError"} 1', 1)
        ]
    finally:
        await layer.aclose()


# -- Prometheus' text format ------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABELS = r'\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\}'
_SAMPLE = re.compile(rf"({_NAME})(?:{_LABELS})? (-?[0-9.e+-]+|NaN|[+-]Inf)")


def parse_exposition(text: str) -> dict[str, list[tuple[str, float]]]:
    """Check ``text`` line by line against the exposition format's rules; samples by metric."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert re.fullmatch(_NAME, name) and name not in types, line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge") and name not in types, line
            assert name.endswith("_total") == (kind == "counter"), line
            types[name] = kind
        else:
            match = _SAMPLE.fullmatch(line)
            assert match is not None, line
            assert match.group(1) in types, f"sample before its TYPE: {line}"
            samples.setdefault(match.group(1), []).append((line, float(match.group(2))))
    return samples


def test_prometheus_text_follows_the_format() -> None:
    engine = EngineStats("primary", 5, 2, 1, 3, 0.5, 1, 40, 1.25, 2, {"ConflictError": 4})
    reader = EngineStats("reader", 5, 0, 0, 0, 0.0, 0, 7, 0.01, 0, {})
    stats = LayerStats(
        "postgresql", 500.0, [engine, reader], [ReplicaStats('re"p\\1', 1.5), ReplicaStats("r2")], 9
    )
    samples = parse_exposition(render(stats))
    assert samples["archon_db_pool_checked_out"] == [
        ('archon_db_pool_checked_out{engine="primary"} 2', 2),
        ('archon_db_pool_checked_out{engine="reader"} 0', 0),
    ]
    assert samples["archon_db_errors_total"] == [
        ('archon_db_errors_total{engine="primary",class="ConflictError"} 4', 4)
    ]
    assert samples["archon_db_replica_lag_seconds"] == [
        ('archon_db_replica_lag_seconds{replica="re\\"p\\\\1"} 1.5', 1.5)
    ]
    assert samples["archon_db_outbox_backlog"] == [("archon_db_outbox_backlog 9", 9)]
    assert samples["archon_db_pool_wait_seconds_total"][0][1] == 0.5


# -- archon-db stats ----------------------------------------------------------------------------


def _invoke(args: list[str], url: str):
    _register()
    return CliRunner().invoke(cli, ["stats", "--url", url, *args], catch_exceptions=False)


@pytest.mark.backends("sqlite", "postgres", "mariadb")
def test_the_command_prints_json_prometheus_and_a_table(backend) -> None:
    shown = _invoke(["--json"], backend.url)
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.output)
    assert [e["engine"] for e in found["engines"]] == ["primary", "reader"]
    assert found["outbox_backlog"] == 0 and found["replicas"] == []
    assert {"pool_size", "checked_out", "overflow", "waits", "statements", "errors"} <= set(
        found["engines"][0]
    )
    exposition = _invoke(["--prometheus"], backend.url)
    assert exposition.exit_code == 0
    samples = parse_exposition(exposition.output)
    assert [value for _, value in samples["archon_db_pool_checked_out"]] == [0, 0]
    table = _invoke([], backend.url)
    assert table.exit_code == 0
    assert "checked out" in table.output and "vector outbox backlog: 0" in table.output
    both = _invoke(["--json", "--prometheus"], backend.url)
    assert both.exit_code == 2


def test_the_command_never_creates_a_sqlite_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    shown = _invoke(["--json"], f"sqlite+aiosqlite:///{missing}")
    assert shown.exit_code == 2 and not missing.exists()
