"""Data layers for tests: each database migrated once per session, emptied after every test."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from app.config import Settings
from tests.support.reset import TableReset

if TYPE_CHECKING:
    from app.bootstrap import DataLayer


def _settings(database_url: str, **overrides: Any) -> Settings:
    # _env_file=None: a developer's .env must not leak into the tests' configuration.
    values = {"database_url": database_url, "vector_database": "exact", **overrides}
    return Settings(_env_file=None, **values)


class Databases:
    """Migrates each database once per session and remembers how to reset it."""

    def __init__(self) -> None:
        self._resets: dict[str, TableReset] = {}

    async def prepare(self, url: str) -> TableReset:
        """Migrate the database at ``url`` to head, unless done already this session."""
        if url not in self._resets:
            from app.bootstrap import bootstrap

            layer = bootstrap(_settings(url))
            try:
                await layer.migrate()
            finally:
                await layer.aclose()
            self._resets[url] = await TableReset.capture(url)
        return self._resets[url]


class LayerFactory:
    """``await make_layer(**settings)`` -> a DataLayer on a migrated database.

    ``database_url`` is the database migrated and emptied; ``connect_url`` (default: the same)
    is what the layers connect to, e.g. a pooler in front of it. After the test, ``aclose``
    closes every layer made, then empties the database.
    """

    def __init__(
        self,
        databases: Databases,
        database_url: str,
        connect_url: str | None = None,
        database_type: str | None = None,
    ) -> None:
        self._databases = databases
        self._database_type = database_type
        self._database_url = database_url
        self._connect_url = connect_url or database_url
        self._opened: list[DataLayer] = []
        self._reset: TableReset | None = None

    async def __call__(self, **overrides: Any) -> DataLayer:
        from app.bootstrap import bootstrap

        self._reset = await self._databases.prepare(self._database_url)
        if self._database_type is not None:
            overrides.setdefault("database_type", self._database_type)
        layer = bootstrap(_settings(self._connect_url, **overrides))
        self._opened.append(layer)
        return layer

    async def aclose(self) -> None:
        """Close every layer made (all of them, even when one fails), then empty the database."""
        async with AsyncExitStack() as stack:
            if self._reset is not None:
                stack.push_async_callback(self._reset.run)  # callbacks run last-in first-out
            for layer in self._opened:
                stack.push_async_callback(layer.aclose)
