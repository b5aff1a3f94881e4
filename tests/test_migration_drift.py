"""`check()` names each way a database has drifted from the models, one readable line each."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrations
from tests.test_migrations import fresh  # noqa: F401  (a fixture)

pytestmark = pytest.mark.backends("postgres", "mariadb")


async def test_check_reports_each_drift(fresh: AsyncEngine) -> None:  # noqa: F811
    await migrations.upgrade(fresh, "head")
    async with fresh.begin() as conn:
        await conn.execute(text("ALTER TABLE archon_prompts DROP COLUMN description"))
        await conn.execute(text("CREATE INDEX ix_extra ON archon_projects (pinned)"))
        await conn.execute(text("CREATE TABLE stray_notes (id INTEGER PRIMARY KEY)"))
        await conn.execute(
            text("ALTER TABLE archon_settings DROP INDEX idx_archon_settings_category")
            if fresh.dialect.name == "mysql"
            else text("DROP INDEX idx_archon_settings_category")
        )
    differences = await migrations.check(fresh)
    joined = "\n".join(differences)
    assert "missing column archon_prompts.description" in joined
    assert "index ix_extra on archon_projects (pinned) is not in the models" in joined
    assert "table stray_notes is in the database but not in the models" in joined
    assert "missing index idx_archon_settings_category on archon_settings (category)" in joined
    assert len(differences) == 4, differences
