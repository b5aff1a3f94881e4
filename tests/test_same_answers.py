"""Every backend gives the same answer: what one stores all store, or all refuse before SQL.

Each case here once differed between backends (issue 10); see README "Same answers on every
backend".
"""

from __future__ import annotations

import json
import operator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.bootstrap import DataLayer
from app.domain import TaskPriority, TaskStatus
from app.errors import InvalidInputError
from app.testing import ProjectFactory, SourceFactory, TaskFactory, save
from tests.support import Sql

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def as_datetime(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_a_source_id_longer_than_255_is_refused_everywhere(
    layer: DataLayer, sql: Sql
) -> None:
    longest, too_long = "s" * 255, "s" * 256
    async with layer.uow() as uow:
        with pytest.raises(InvalidInputError, match="source_id is longer than 255"):
            await uow.sources.add(SourceFactory.build(source_id=too_long))
        with pytest.raises(InvalidInputError, match="longer than 255"):
            await uow.sources.list({"source_id": too_long})
        await uow.sources.add(SourceFactory.build(source_id=longest))
        await uow.commit()
    assert await sql.scalar("SELECT source_id FROM archon_sources") == longest


async def test_an_explicit_updated_at_is_kept_or_refused_alike(layer: DataLayer, sql: Sql) -> None:
    project = ProjectFactory.build()
    task = TaskFactory.build(project=project)
    source = SourceFactory.build()
    async with layer.uow() as uow:
        await save(uow, project, task, source)
        await uow.commit()
    async with layer.uow() as uow:
        # Archon's trigger would overwrite it on PostgreSQL: refused on every backend.
        with pytest.raises(InvalidInputError, match="updated_at of Task is set by the database"):
            await uow.tasks.update(task.id, {"updated_at": LONG_AGO})
        with pytest.raises(InvalidInputError, match="updated_at of Project"):
            await uow.projects.update(project.id, {"updated_at": LONG_AGO, "title": "x"})
        # No trigger on sources: the value given is the value stored, on every backend.
        await uow.sources.update(source.source_id, {"updated_at": LONG_AGO})
        await uow.commit()
    stored = await sql.scalar(
        "SELECT updated_at FROM archon_sources WHERE source_id = :id", id=source.source_id
    )
    assert as_datetime(stored) == LONG_AGO
    assert await sql.scalar("SELECT title FROM archon_projects") == project.title


@pytest.mark.parametrize("segment", ["key\n", "key\r", " key", "key ", "ke y", "1key", ""])
async def test_json_path_segments_are_validated_exactly(layer: DataLayer, segment: str) -> None:
    async with layer.uow(read_only=True) as uow:
        with pytest.raises(InvalidInputError, match="invalid JSON path"):
            await uow.sources.list({f"metadata.{segment}": "x"})


async def test_enums_sort_in_declaration_order_everywhere(layer: DataLayer) -> None:
    project = ProjectFactory.build()
    tasks = [
        TaskFactory.build(project=project, status=status, priority=priority)
        for status in TaskStatus
        for priority in TaskPriority
    ]
    async with layer.uow() as uow:
        await save(uow, project, *tasks)
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        by_status = await uow.tasks.list(order_by=["status", "-priority"])
        pages, after = [], None
        while True:  # the keyset cursor follows the same order
            page = await uow.tasks.page(order_by=["-status", "priority"], limit=3, after=after)
            pages.extend(page.items)
            if (after := page.next_cursor) is None:
                break
    declared = [(s, p) for s in TaskStatus for p in reversed(TaskPriority)]
    assert [(t.status, t.priority) for t in by_status] == declared
    assert [(t.status, t.priority) for t in pages] == [
        (s, p) for s in reversed(TaskStatus) for p in TaskPriority
    ]


NUMBERS = {"e16": 1e16, "e308": 1e308, "e-5": 1e-05, "neg0": -0.0, "tiny": 5e-324,
           "tenth": 0.1, "int": 10**16, "big_int": 2**63 - 1}  # fmt: skip


async def test_json_numbers_round_trip_exactly(layer: DataLayer) -> None:
    sources = [SourceFactory.build(metadata_=dict(NUMBERS)), SourceFactory.build()]
    async with layer.uow() as uow:
        await uow.sources.add(sources[0])
        await uow.sources.add_many([sources[1]])
        await uow.sources.update(sources[1].source_id, {"metadata_": dict(NUMBERS)})
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        found = await uow.sources.get_many([s.source_id for s in sources])
    for source in found:
        stored = source.metadata_
        assert stored == NUMBERS
        assert {k: type(v) for k, v in stored.items()} == {k: type(v) for k, v in NUMBERS.items()}


RAW_NUMBERS = {"tiny": "1e-05", "huge": "1e300", "three": "3", "neg": "-2.5",
               "past_2_53": "9007199254740993", "at_2_53": "9007199254740992",
               "float_2_53": "9007199254740992.0"}  # fmt: skip


@pytest.mark.parametrize(
    "condition",
    [{"gt": 0}, {"lt": 0.0001}, {"gte": 1e300}, {"lt": 1e300}, {"eq": 2**53 + 1},
     {"gt": 2**53}, {"ne": 3}, {"eq": 2.0**53}, {"lt": 2**53 + 1}, {"gte": 2**53 + 1},
     {"gt": 2.0**53}, {"lte": 2.0**53}],  # fmt: skip
)
async def test_json_numbers_written_by_others_compare_exactly(
    layer: DataLayer, sql: Sql, condition: dict[str, Any]
) -> None:
    sources = {name: SourceFactory.build(source_id=name) for name in RAW_NUMBERS}
    async with layer.uow() as uow:
        await uow.sources.add_many(list(sources.values()))
        await uow.commit()
    doc = "CAST(:doc AS jsonb)" if layer.dialect_name == "postgresql" else ":doc"
    for name, number in RAW_NUMBERS.items():  # as another program would write them
        await sql.execute(
            f"UPDATE archon_sources SET metadata = {doc} WHERE source_id = :id",
            doc=f'{{"x": {number}}}',
            id=name,
        )
    async with layer.uow(read_only=True) as uow:
        found = await uow.sources.list({"metadata.x": condition})
    (op, value), = condition.items()
    compare = {"gt": operator.gt, "lt": operator.lt, "gte": operator.ge, "lte": operator.le,
               "eq": operator.eq, "ne": operator.ne}[op]  # fmt: skip
    expected = {n for n, text in RAW_NUMBERS.items() if compare(json.loads(text), value)}
    assert {s.source_id for s in found} == expected


async def test_negative_zero_reads_back_alike_everywhere(layer: DataLayer) -> None:
    # PostgreSQL's jsonb (numeric) has no -0: every backend stores 0.0, so all read the same.
    source = SourceFactory.build(metadata_={"z": -0.0, "deep": [{"z": -0.0}]})
    async with layer.uow() as uow:
        await uow.sources.add(source)
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        stored = (await uow.sources.get_or_raise(source.source_id)).metadata_
        found = await uow.sources.list({"metadata.z": {"eq": 0}})
    assert repr(stored) == repr({"z": 0.0, "deep": [{"z": 0.0}]})
    assert [s.source_id for s in found] == [source.source_id]
