"""Lease: the pooled connection of a Unit of Work whose statements so far ran on the driver path.

A session's first statement costs ~0.1 ms before any byte reaches the server: a greenlet hop, a
``SessionTransaction``, an ``AsyncConnection`` proxy, and as much again to commit and close
through them. A Unit of Work whose reads and writes all take the driver path (see
``app.repositories.driver``) needs none of it: the lease checks a connection out of the engine's
pool and begins its transaction in one hop, and commits (or rolls back) and returns it in one.

A ``LeasingSession`` works on the leased connection from the moment it is taken, so anything
that goes through the session afterwards (a flush, a bulk write, a savepoint) joins the same
connection and transaction, and the session's commit is the connection's commit: one Unit of
Work, one transaction, whichever path each statement takes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.util import greenlet_spawn

from app.engines import AUTOCOMMIT
from app.errors import DataLayerError

LEASE = "archon_lease"  # the key of a session's Lease in ``session.info``


class Lease:
    """The pooled connection of one session's current transaction, when the driver path took
    it before the session needed one."""

    def __init__(self, session: AsyncSession) -> None:
        self._session: Session = session.sync_session
        self._engine = self._session.bind
        self.connection: Connection | None = None
        self._opening = False

    @staticmethod
    def of(session: AsyncSession) -> Lease | None:
        """The lease a session may take: its Unit of Work allows one, the session has no
        connection of its own, and no savepoint is open (a savepoint lives on the session's
        connection, which is the leased one if there is one)."""
        lease: Lease | None = session.info.get(LEASE)
        if lease is None:
            return None
        sync = session.sync_session
        if sync.in_nested_transaction() or (lease.connection is None and connected(sync)):
            return None
        return lease

    async def fairy(self) -> Any:
        """The pooled DBAPI connection, checked out and begun on first use."""
        connection = self.connection
        if connection is None:
            if not isinstance(self._engine, Engine):
                raise TypeError("a lease needs a session bound to one engine")
            if self._opening:  # a second connection would split the transaction in two
                raise DataLayerError(
                    "this Unit of Work is already connecting: calls on one Unit of Work must "
                    "not run concurrently (open one Unit of Work per task)"
                )
            self._opening = True
            try:
                # From here on the session's work joins this connection's transaction (see
                # LeasingSession); its commit commits it.
                connection = self.connection = await greenlet_spawn(_begun, self._engine)
            finally:
                self._opening = False
        elif connection.invalidated or connection.closed:
            # Reconnecting (or refusing to, inside a transaction) is SQLAlchemy's call.
            return await greenlet_spawn(lambda: connection.connection)
        return connection.connection

    async def invalidate(self, error: BaseException) -> None:
        """The server dropped the connection: the pool replaces it."""
        connection = self.connection
        if connection is not None and not connection.invalidated:
            await greenlet_spawn(connection.invalidate, error)

    @property
    def held(self) -> bool:
        return self.connection is not None

    async def commit(self) -> None:
        """Commit (through the session when it joined) and return the connection."""
        await greenlet_spawn(self._commit)

    async def rollback(self) -> None:
        """Roll back and return the connection; what the session holds is expired, as a
        session's rollback expires it."""
        await greenlet_spawn(self._rollback)

    async def close(self) -> None:
        """Close the session's transaction, if any, and return the connection (uncommitted work
        rolls back)."""
        await greenlet_spawn(self._close)

    def _commit(self) -> None:
        session, connection = self._session, self.connection
        if session.in_transaction():
            session.commit()  # commits the connection's transaction if the session joined it
        if connection is not None and connection.in_transaction():
            connection.commit()
        self._release()

    def _rollback(self) -> None:
        session = self._session
        if session.in_transaction():
            session.rollback()
        else:
            session.expire_all()
        self._release()

    def _close(self) -> None:
        self._session.close()
        self._release()

    def _release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


class LeasingSession(Session):
    """A session that works on its Unit of Work's leased connection while there is one, and
    joins its transaction (``join_transaction_mode="control_fully"``: the session's commit and
    rollback are the connection's). Its ``bind`` stays the engine."""

    def get_bind(self, mapper: Any = None, **kw: Any) -> Any:
        lease = self.info.get(LEASE)
        if lease is not None and lease.connection is not None and kw.get("bind") is None:
            return lease.connection
        return super().get_bind(mapper, **kw)


def connected(session: Session) -> bool:
    """Whether the session's transaction holds a connection (a session's transaction begins
    with its first ``add``, its connection with its first statement)."""
    transaction = session._transaction
    return transaction is not None and bool(transaction._connections)


def _begun(engine: Engine) -> Connection:
    connection = engine.connect()
    if connection.get_execution_options().get(AUTOCOMMIT):
        return connection  # each statement is its own transaction: nothing to begin
    try:
        connection.begin()
    except BaseException:
        connection.close()
        raise
    return connection


__all__ = ["LEASE", "Lease", "LeasingSession", "connected"]
