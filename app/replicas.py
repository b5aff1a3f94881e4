"""Which server a read-only Unit of Work reads from: a healthy read replica, in turn, or the
primary.

- Replicas are taken round robin. One that cannot be reached is skipped for ``PROBE_INTERVAL``
  seconds and tried again after that: a stopped replica costs one failed connection attempt,
  never an error to the caller; a replica back up is used again.
- After a commit through this layer, reads go to the primary for
  ``DATABASE_READ_YOUR_WRITES_SECONDS``, so they see what was just written (replication is
  asynchronous); while the primary is down they go to the replicas.
- Each replica's lag is measured at most once every ``PROBE_INTERVAL`` seconds, by the Unit of
  Work that finds the last measure too old (one extra query then, none otherwise); past
  ``DATABASE_REPLICA_MAX_LAG`` the replica is skipped until it catches up.
- With no replica usable, reads go to the primary.

The connection a replica's Unit of Work will use is checked out before it is chosen: a pooled
connection the server closed is replaced then (``app.failover``), and a refused connection
moves on to the next server. A replica that fails after that, during the Unit of Work, fails
that Unit of Work (``BackendUnavailableError``); the next one goes elsewhere.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.errors import DataLayerError, translate_errors
from app.urls import mask_url

log = logging.getLogger(__name__)
Sessionmaker = async_sessionmaker[AsyncSession]
PROBE_INTERVAL = 1.0  # seconds between two lag measures (or connection attempts) of a replica
# Seconds a PostgreSQL standby trails its primary: 0 when it has replayed all it received (an
# idle primary sends nothing, so the last replayed commit may be old without any lag), else the
# age of the last transaction it replayed. A server out of recovery (promoted) trails nothing.
POSTGRESQL_LAG = text(
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0) "
    "END"
)


@dataclass
class Replica:
    """One read replica, what was last learnt about it, and when."""

    url: str
    engine: AsyncEngine
    sessionmaker: Sessionmaker
    healthy: bool = True
    lag_seconds: float | None = None
    skipped_reason: str | None = None
    probed_at: float = -math.inf

    def status(self) -> dict[str, Any]:
        return {
            "url": mask_url(self.url),
            "healthy": self.healthy,
            "lag_seconds": self.lag_seconds,
            "skipped_reason": self.skipped_reason,
        }


class ReplicaRouter:
    """Chooses the sessionmaker of each read-only Unit of Work (see the module docstring)."""

    def __init__(
        self,
        replicas: list[Replica],
        primary: Sessionmaker,
        *,
        read_your_writes: float,
        max_lag: float | None,
    ) -> None:
        self.replicas = replicas
        self._primary = primary
        self._read_your_writes = read_your_writes
        self._max_lag = max_lag
        self._turn = itertools.count()
        self._last_write = -math.inf

    def wrote(self) -> None:
        """A Unit of Work of this layer committed: read from the primary for a while."""
        self._last_write = time.monotonic()

    async def choose(self) -> Sessionmaker:
        """The sessionmaker of the next read-only Unit of Work."""
        start = next(self._turn) % len(self.replicas) if self.replicas else 0
        turn = self.replicas[start:] + self.replicas[:start]
        if time.monotonic() - self._last_write < self._read_your_writes:
            if await _reachable(self._primary):
                return self._primary
        for replica in turn:
            if await self._usable(replica):
                return replica.sessionmaker
        return self._primary

    async def status(self) -> list[dict[str, Any]]:
        """Each replica's health and lag, measured now."""
        for replica in self.replicas:
            await self._probe(replica)
        return [replica.status() for replica in self.replicas]

    async def _usable(self, replica: Replica) -> bool:
        if time.monotonic() - replica.probed_at >= PROBE_INTERVAL:
            await self._probe(replica)
        elif replica.healthy and replica.skipped_reason is None:
            if not await _reachable(replica.sessionmaker):
                self._down(replica, "the connection failed")
        return replica.healthy and replica.skipped_reason is None

    async def _probe(self, replica: Replica) -> None:
        replica.probed_at = time.monotonic()
        try:
            with translate_errors("measuring the replica's lag"):
                async with replica.engine.connect() as connection:
                    lag = await _lag(connection)
        except DataLayerError as exc:
            self._down(replica, str(exc))
            return
        if not replica.healthy:
            log.info("read replica %s is back", mask_url(replica.url))
        replica.healthy, replica.lag_seconds = True, lag
        too_far = self._max_lag is not None and lag is not None and lag > self._max_lag
        replica.skipped_reason = (
            f"lag {lag:.1f} s > DATABASE_REPLICA_MAX_LAG={self._max_lag:g}" if too_far else None
        )

    @staticmethod
    def _down(replica: Replica, reason: str) -> None:
        if replica.healthy:
            log.warning("read replica %s skipped: %s", mask_url(replica.url), reason)
        replica.healthy, replica.lag_seconds = False, None
        replica.skipped_reason = f"unreachable: {reason}"
        replica.probed_at = time.monotonic()


async def _lag(connection: Any) -> float | None:
    if connection.dialect.name != "postgresql":
        return None  # only PostgreSQL's lag is measured
    return float(await connection.scalar(POSTGRESQL_LAG))


async def _reachable(sessionmaker: Sessionmaker) -> bool:
    """Whether a connection can be checked out (a pooled one costs no round trip)."""
    engine = sessionmaker.kw["bind"]
    try:
        with translate_errors("connecting"):
            async with engine.connect():
                return True
    except DataLayerError as exc:
        log.debug("cannot read from %s: %s", mask_url(str(engine.url)), exc)
        return False
