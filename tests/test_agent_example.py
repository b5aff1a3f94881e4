"""The agent example: a whole plan commits in one Unit of Work, or nothing does."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.domain import Task, TaskStatus
from app.errors import InvalidInputError
from examples.agent import next_task, plan_project


async def _count(layer, table: str) -> int:
    async with layer.engine.connect() as conn:
        return (await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one()


async def test_plan_and_claim(layer) -> None:
    project_id = await plan_project(layer, "Ship", ["one", "two", "three"])
    assert await _count(layer, "archon_tasks") == 3
    claimed = await next_task(layer, project_id)
    assert isinstance(claimed, Task) and claimed.title == "one"
    async with layer.uow(read_only=True) as uow:
        again = await uow.tasks.get_or_raise(claimed.id)
    assert again.status == TaskStatus.DOING


async def test_failed_plan_leaves_nothing(layer) -> None:
    with pytest.raises(InvalidInputError):
        await plan_project(layer, "Broken", ["fine", "bad\x00step"])
    assert await _count(layer, "archon_projects") == 0
    assert await _count(layer, "archon_tasks") == 0
