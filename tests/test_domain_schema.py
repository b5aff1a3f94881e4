"""The models alone (without migrations) build and drop their schema on every backend."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain import metadata
from tests.test_migrations import fresh, table_names  # noqa: F401  (fresh is a fixture)


async def test_metadata_create_all_and_drop_all(fresh: AsyncEngine) -> None:  # noqa: F811
    async with fresh.begin() as conn:
        await conn.run_sync(metadata.create_all)
    assert {t.name for t in metadata.sorted_tables} <= await table_names(fresh)
    async with fresh.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    assert not {t.name for t in metadata.sorted_tables} & await table_names(fresh)
