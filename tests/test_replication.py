"""Read replicas and failover on real PostgreSQL 18 streaming replication.

A primary and two standbys made with ``pg_basebackup -R`` (tests/support/replication.py). Which
server answered a read is asked of the server itself (``inet_server_port()``); what was written
is checked with plain SQL on the servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import text

from app.bootstrap import DataLayer, bootstrap
from app.cli.doctor import database_rows
from app.config import Settings
from app.domain import Project
from app.errors import (
    BackendUnavailableError,
    ConfigurationError,
    DataLayerError,
    RetryableError,
)
from app.replicas import PROBE_INTERVAL
from tests.support import selected_backends
from tests.support.replication import Cluster, Node, replication_cluster

CONNECT_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if "pgvector" not in selected_backends():
        pytest.skip("backend 'pgvector' (pgserver's PostgreSQL 18) is left out by TEST_BACKENDS")
    with replication_cluster(standbys=2) as running:
        yield running


@pytest.fixture(scope="module")
async def migrated(cluster: Cluster) -> Cluster:
    layer = bootstrap(Settings(database_url=cluster.primary.url, vector_database="exact"))
    try:
        await layer.migrate()
    finally:
        await layer.aclose()
    await caught_up(cluster)
    return cluster


@pytest.fixture
async def make_routed(migrated: Cluster) -> AsyncIterator[Any]:
    """Layers on the primary with both standbys as read replicas; closed after the test."""
    made: list[DataLayer] = []

    def make(**overrides: Any) -> DataLayer:
        values: dict[str, Any] = {
            "database_url": migrated.primary.url,
            "database_read_urls": [node.url for node in migrated.standbys],
            "enable_read_replicas": True,
            "database_connect_timeout": CONNECT_TIMEOUT,
            "vector_database": "exact",
            **overrides,
        }
        made.append(bootstrap(Settings(**values)))
        return made[-1]

    yield make
    for layer in made:
        await layer.aclose()


async def scalar(node: Node, query: str) -> Any:
    connection = await asyncpg.connect(node.url, timeout=CONNECT_TIMEOUT)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


async def caught_up(cluster: Cluster, timeout: float = 10.0) -> None:
    """Wait until every running standby has replayed all the primary has written."""
    target = await scalar(cluster.primary, "SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + timeout
    for node in cluster.standbys:
        while node.name in cluster.running:
            done = await scalar(node, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
            if done:
                break
            assert time.monotonic() < deadline, f"{node.name} did not catch up with the primary"
            await asyncio.sleep(0.05)


async def served_by(layer: DataLayer) -> int:
    """The port of the server that answers a read-only Unit of Work."""
    async with layer.uow(read_only=True) as uow:
        return int(await uow.session.scalar(text("SELECT inet_server_port()")))


async def titles(layer: DataLayer) -> set[str]:
    async with layer.uow(read_only=True) as uow:
        return {project.title for project in await uow.projects.list(limit=1000)}


async def write(layer: DataLayer, title: str) -> None:
    async with layer.uow() as uow:
        await uow.projects.add(Project(title=title))
        await uow.commit()


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://u:pw@a:5432,b:5433/db",
        "postgres://u:pw@/db?host=a,b&port=5432,5433",
        "postgresql+asyncpg://u:pw@/db?host=a:5432&host=b:5433",
    ],
)
def test_several_hosts_become_one_url_that_asks_for_the_writable_one(given: str) -> None:
    settings = Settings(database_url=given)
    assert settings.database_url == (
        "postgresql+asyncpg://u:pw@/db?host=a:5432&host=b:5433&target_session_attrs=read-write"
    )
    assert settings.database_type == "postgresql"
    assert "pw" not in settings.safe_database_url


def test_the_url_may_ask_for_other_servers_and_readers_ask_for_the_primary() -> None:
    from app.failover import primary_readers_url

    settings = Settings(database_url="postgresql://u@a,b/db?port=5432&target_session_attrs=any")
    assert settings.database_url.endswith("target_session_attrs=any&host=a:5432&host=b:5432")
    writable = Settings(database_url="postgresql://u@a:1,b:2/db").database_url
    assert primary_readers_url(writable).endswith("target_session_attrs=primary")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("mysql://u:secret@a:1,b:2/db", "only a PostgreSQL URL"),
        ("postgresql://u:secret@/db?host=a,b,c&port=1,2", "3 hosts and 2 ports"),
    ],
)
def test_hosts_that_cannot_be_used_are_refused(given: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named) as raised:
        Settings(database_url=given)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("database_read_your_writes_seconds", -1), ("database_replica_max_lag", 0)],
)
def test_replica_settings_out_of_range_are_refused(variable: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=variable.upper()):
        Settings(**{variable: value})


async def test_reads_go_round_robin_to_the_replicas(make_routed: Any, migrated: Cluster) -> None:
    layer = make_routed()
    ports = [await served_by(layer) for _ in range(4)]
    first, second = (node.port for node in migrated.standbys)
    assert sorted(ports[:2]) == sorted([first, second])
    assert ports[2:] == ports[:2]


async def test_a_read_right_after_a_write_sees_it(make_routed: Any, migrated: Cluster) -> None:
    layer = make_routed()  # the default window: reads follow this layer's writes a few seconds
    at_once = make_routed(database_read_your_writes_seconds=0)
    for node in migrated.standbys:  # the replicas stop applying what they receive
        await scalar(node, "SELECT pg_wal_replay_pause()")
    try:
        title = f"written {uuid4().hex}"
        await write(layer, title)
        assert title in await titles(layer)
        assert await served_by(layer) == migrated.primary.port
        # The same read without the window goes to a replica, which has not replayed it yet.
        assert title not in await titles(at_once)
        assert await served_by(at_once) != migrated.primary.port
    finally:
        for node in migrated.standbys:
            await scalar(node, "SELECT pg_wal_replay_resume()")
    await caught_up(migrated)
    assert title in await titles(at_once)


async def test_a_stopped_replica_is_skipped_then_used_again(
    make_routed: Any, migrated: Cluster
) -> None:
    layer = make_routed()
    stopped, other = migrated.standbys
    assert {await served_by(layer) for _ in range(2)} == {stopped.port, other.port}  # pooled
    await asyncio.to_thread(migrated.stop, stopped)
    try:
        assert [await served_by(layer) for _ in range(4)] == [other.port] * 4
        status = {s["url"]: s for s in await layer.replica_status()}
        assert status[stopped.url.replace("postgresql", "postgresql+asyncpg")]["healthy"] is False
    finally:
        await asyncio.to_thread(migrated.start, stopped)
    await asyncio.sleep(PROBE_INTERVAL + 0.1)  # the next probe finds it back
    assert stopped.port in {await served_by(layer) for _ in range(4)}
    assert all(s["healthy"] for s in await layer.replica_status())


async def test_without_the_primary_reads_go_on_and_writes_fail_fast(
    make_routed: Any, migrated: Cluster
) -> None:
    layer = make_routed()
    title = f"before the stop {uuid4().hex}"
    await write(layer, title)
    await caught_up(migrated)
    await asyncio.to_thread(migrated.stop, migrated.primary)
    try:
        # Even inside the read-your-writes window: the primary is down, the replicas answer.
        assert title in await titles(layer)
        assert await served_by(layer) in {node.port for node in migrated.standbys}
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as raised:
            await write(layer, "never written")
        assert time.monotonic() - started < CONNECT_TIMEOUT
        assert f"the primary {migrated.primary.address}" in str(raised.value)
    finally:
        await asyncio.to_thread(migrated.start, migrated.primary)
    await write(layer, f"after the restart {uuid4().hex}")


async def test_a_lagging_replica_is_visible_and_skipped(
    make_routed: Any, migrated: Cluster
) -> None:
    layer = make_routed(database_replica_max_lag=0.5)
    lagging, other = migrated.standbys
    await scalar(lagging, "SELECT pg_wal_replay_pause()")
    try:
        await scalar(migrated.primary, "CREATE TABLE IF NOT EXISTS lag_marks (n int)")
        await scalar(migrated.primary, "INSERT INTO lag_marks VALUES (1)")
        await asyncio.sleep(max(0.6, PROBE_INTERVAL))  # received but not replayed, for > 0.5 s
        status = {s["url"]: s for s in await layer.replica_status()}
        behind = status[lagging.url.replace("postgresql", "postgresql+asyncpg")]
        assert behind["lag_seconds"] > 0.5
        assert "DATABASE_REPLICA_MAX_LAG" in behind["skipped_reason"]
        # layer.stats() reports the lag of each replica, in DATABASE_READ_URLS' order.
        lags = [replica.lag_seconds for replica in (await layer.stats()).replicas]
        assert lags[0] is not None and lags[0] > 0.5, lags
        assert lags[1] is not None and lags[1] < 0.5, lags
        assert [await served_by(layer) for _ in range(4)] == [other.port] * 4
        doctor = dict(await database_rows(layer))
        assert doctor["read replicas"] == "2"
        shown = doctor[f"replica {behind['url']}"]
        assert shown.startswith("healthy, lag ") and "DATABASE_REPLICA_MAX_LAG" in shown
        # Both behind: the primary serves the reads.
        await scalar(other, "SELECT pg_wal_replay_pause()")
        await scalar(migrated.primary, "INSERT INTO lag_marks VALUES (2)")
        await asyncio.sleep(max(0.6, PROBE_INTERVAL))
        assert [await served_by(layer) for _ in range(2)] == [migrated.primary.port] * 2
    finally:
        for node in migrated.standbys:
            await scalar(node, "SELECT pg_wal_replay_resume()")
    await caught_up(migrated)
    await asyncio.sleep(PROBE_INTERVAL)
    assert lagging.port in {await served_by(layer) for _ in range(4)}
    assert all(s["skipped_reason"] is None for s in await layer.replica_status())


async def test_a_primary_turned_read_only_is_left_for_the_server_that_takes_writes(
    migrated: Cluster,
) -> None:
    """A writer's connection whose server stops taking writes (SQLSTATE 25006, as on a demoted
    primary) fails with RetryableError and is dropped; new connections go only to a server that
    accepts writes, and there is none until the primary takes writes again."""
    primary, standby = migrated.primary, migrated.standbys[0]
    url = f"postgresql://postgres@{primary.address},{standby.address}/postgres"
    settings = Settings(
        database_url=url, database_connect_timeout=CONNECT_TIMEOUT, vector_database="exact"
    )
    layer = bootstrap(settings)
    try:
        await write(layer, f"pooled {uuid4().hex}")
        await _read_only_by_default(primary, True)
        try:
            with pytest.raises(RetryableError):
                await write(layer, "refused as read-only")
            with pytest.raises(BackendUnavailableError, match="no server accepts writes"):
                await write(layer, "no server takes it")
        finally:
            await _read_only_by_default(primary, False)
        title = f"taken again {uuid4().hex}"
        await write(layer, title)
    finally:
        await layer.aclose()
    assert title in await _titles_on(primary)
    assert "refused as read-only" not in await _titles_on(primary)


async def _read_only_by_default(node: Node, on: bool) -> None:
    name = "default_transaction_read_only"
    change = f"SET {name} = on" if on else f"RESET {name}"
    await scalar(node, f"ALTER SYSTEM {change}")
    await scalar(node, "SELECT pg_reload_conf()")
    wanted = "on" if on else "off"
    while await scalar(node, "SHOW default_transaction_read_only") != wanted:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # every backend has read the configuration again


async def test_writes_survive_promoting_the_standby() -> None:
    """Switchover: the old primary stops (a clean stop sends the standby all it committed), the
    standby is promoted; writes find it through the multi-host DATABASE_URL by themselves."""
    if "pgvector" not in selected_backends():
        pytest.skip("backend 'pgvector' (pgserver's PostgreSQL 18) is left out by TEST_BACKENDS")
    with replication_cluster(standbys=1) as cluster:
        old, new = cluster.primary, cluster.standbys[0]
        url = f"postgresql://postgres@{old.address},{new.address}/postgres"
        layer = bootstrap(
            Settings(
                database_url=url, database_connect_timeout=CONNECT_TIMEOUT, vector_database="exact"
            )
        )
        try:
            await layer.migrate()
            ledger, first_after = await _write_through_failover(layer, cluster)
        finally:
            await layer.aclose()
        assert first_after < 15.0, f"writes came back after {first_after:.1f} s"
        rows = await _titles_on(new)
        assert set(ledger) <= rows, f"lost: {sorted(set(ledger) - rows)}"
        assert len(ledger) > 20
        assert not await scalar(new, "SELECT pg_is_in_recovery()")


async def _write_through_failover(layer: DataLayer, cluster: Cluster) -> tuple[list[str], float]:
    """Write without pause while the primary stops and the standby is promoted: the titles
    committed (the client's ledger), and the seconds from the stop to the next commit."""
    ledger: list[str] = []
    failures: list[str] = []
    stopped = asyncio.Event()
    stopped_at = 0.0

    async def writer() -> float:
        after_stop: list[float] = []
        while len(after_stop) < 10:
            title = f"ledger {len(ledger)} {uuid4().hex[:8]}"
            try:
                await write(layer, title)
            except DataLayerError as exc:  # unavailable or retryable while there is no primary
                failures.append(type(exc).__name__)
                await asyncio.sleep(0.05)
                continue
            ledger.append(title)
            if stopped.is_set():
                after_stop.append(time.monotonic() - stopped_at)
            await asyncio.sleep(0.01)
        return after_stop[0]

    task = asyncio.create_task(writer())
    while len(ledger) < 10:
        await asyncio.sleep(0.02)
    await asyncio.to_thread(cluster.stop, cluster.primary)
    stopped_at = time.monotonic()
    stopped.set()
    await asyncio.to_thread(cluster.promote, cluster.standbys[0])
    first_after = await asyncio.wait_for(task, 30)
    assert failures, "the stop went unnoticed: nothing was tested"
    return ledger, first_after


async def _titles_on(node: Node) -> set[str]:
    connection = await asyncpg.connect(node.url, timeout=CONNECT_TIMEOUT)
    try:
        return {row[0] for row in await connection.fetch("SELECT title FROM archon_projects")}
    finally:
        await connection.close()
