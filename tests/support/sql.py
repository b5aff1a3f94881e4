"""Plain SQL against a layer's database, to check outcomes without the code under test."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine


class HasEngine(Protocol):
    @property
    def engine(self) -> AsyncEngine: ...


def _engine(target: AsyncEngine | HasEngine) -> AsyncEngine:
    return target if isinstance(target, AsyncEngine) else target.engine


async def fetch_all(target: AsyncEngine | HasEngine, query: str, **params: Any) -> list[Row[Any]]:
    """Every row of ``query`` (``:name`` placeholders bound from ``params``), read committed."""
    async with _engine(target).connect() as conn:
        return list((await conn.execute(text(query), params)).all())


async def fetch_scalar(target: AsyncEngine | HasEngine, query: str, **params: Any) -> Any:
    """The first column of the first row of ``query``, or None when there is no row."""
    async with _engine(target).connect() as conn:
        return (await conn.execute(text(query), params)).scalar()


async def execute(target: AsyncEngine | HasEngine, query: str, **params: Any) -> int:
    """Run a writing statement in its own committed transaction; the number of rows it hit."""
    async with _engine(target).begin() as conn:
        return (await conn.execute(text(query), params)).rowcount


class Sql:
    """The ``sql`` fixture: the helpers above, bound to one layer's primary engine."""

    def __init__(self, target: AsyncEngine | HasEngine) -> None:
        self.engine = _engine(target)

    async def all(self, query: str, **params: Any) -> list[Row[Any]]:
        return await fetch_all(self.engine, query, **params)

    async def scalar(self, query: str, **params: Any) -> Any:
        return await fetch_scalar(self.engine, query, **params)

    async def execute(self, query: str, **params: Any) -> int:
        return await execute(self.engine, query, **params)

    async def drop_other_connections(self) -> None:
        """End every other server connection to this database, as a server restart would."""
        dialect = self.engine.dialect.name
        for (pid,) in await self.all(_OTHER_CONNECTIONS[dialect]):
            await self.execute(_KILL[dialect], id=pid)


_OTHER_CONNECTIONS = {
    "postgresql": "SELECT pid FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    "mysql": "SELECT id FROM information_schema.processlist "
    "WHERE db = DATABASE() AND id <> CONNECTION_ID()",
}
_KILL = {"postgresql": "SELECT pg_terminate_backend(:id)", "mysql": "KILL :id"}
