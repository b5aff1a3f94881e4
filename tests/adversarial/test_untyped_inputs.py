"""Inputs that used to escape as untyped exceptions (UnicodeEncodeError, OverflowError,
RecursionError, a server's syntax error): now ``InvalidInputError`` before any SQL, on every
backend, and what one backend stores, every backend stores."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from app.domain import Project, Source, Task
from app.errors import InvalidInputError
from app.repositories.validation import MAX_JSON_DEPTH
from tests.support import LayerFactory

LONE = "text with a lone \ud800 surrogate"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


async def test_lone_surrogates_are_refused_everywhere(make_layer: LayerFactory) -> None:
    layer = await make_layer()
    async with layer.uow() as uow:
        with pytest.raises(InvalidInputError, match="surrogate"):
            await uow.projects.add(Project(title=LONE))
        with pytest.raises(InvalidInputError, match="surrogate"):
            await uow.sources.add(Source(source_id="s", metadata_={"k": LONE}))
        with pytest.raises(InvalidInputError, match="surrogate"):
            await uow.sources.add(Source(source_id="s", metadata_={LONE: 1}))
        with pytest.raises(InvalidInputError, match="surrogate"):
            await uow.projects.list({"title": LONE})
    with pytest.raises(InvalidInputError, match="surrogate"):
        await layer.search("crawled_pages", text=LONE, mode="keyword")


@pytest.mark.parametrize(
    "moment",
    [datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
     datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))],
)  # fmt: skip
async def test_a_time_with_no_utc_equivalent_is_refused(
    make_layer: LayerFactory, moment: datetime
) -> None:
    layer = await make_layer()
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="p"))
        with pytest.raises(InvalidInputError, match="no UTC time"):
            await uow.tasks.add(Task(project_id=project.id, title="t", created_at=moment))


@pytest.mark.parametrize("bad", [2**63, 10**30, -1])
async def test_limits_and_offsets_beyond_a_bigint_are_refused(
    make_layer: LayerFactory, bad: int
) -> None:
    layer = await make_layer()
    async with layer.uow(read_only=True) as uow:
        with pytest.raises(InvalidInputError, match="limit"):
            await uow.projects.list(limit=bad)
        with pytest.raises(InvalidInputError, match="offset"):
            await uow.projects.list(offset=bad)
        with pytest.raises(InvalidInputError, match="limit"):
            await uow.sources.list_with_counts(limit=bad)
    async with layer.uow(read_only=True) as uow:
        assert await uow.projects.list(limit=2**63 - 1, offset=2**63 - 1) == []


async def test_json_nesting_one_backend_stores_every_backend_stores(
    make_layer: LayerFactory,
) -> None:
    layer = await make_layer()
    async with layer.uow() as uow:
        await uow.sources.add(Source(source_id="deep", metadata_=nested(MAX_JSON_DEPTH)))
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        stored = await uow.sources.get("deep")
        assert stored is not None and stored.metadata_ == nested(MAX_JSON_DEPTH)
    async with layer.uow() as uow:
        for depth in (MAX_JSON_DEPTH + 1, 5000):  # 5,000 used to be a RecursionError
            with pytest.raises(InvalidInputError, match="nested more than"):
                await uow.sources.add(Source(source_id=f"d{depth}", metadata_=nested(depth)))


async def test_shapes_and_sizes_no_backend_takes_are_refused_alike(
    make_layer: LayerFactory,
) -> None:
    from app.text import MAX_VALUE_BYTES

    layer = await make_layer()
    deep: dict[str, Any] = {"title": "x"}
    for _ in range(3000):  # used to be a RecursionError
        deep = {"and": [deep]}
    big = "x" * (MAX_VALUE_BYTES + 1)
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title="p"))
        with pytest.raises(InvalidInputError, match="nest"):
            await uow.projects.list(deep)
        with pytest.raises(InvalidInputError, match="mapping"):
            await uow.projects.update(project.id, [("title", "x")])  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="order_by"):
            await uow.projects.list(order_by={"title": 1})  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="MiB"):
            await uow.projects.update(project.id, {"description": big})
        with pytest.raises(InvalidInputError, match="MiB"):
            await uow.projects.update(project.id, {"data": [{"blob": big}]})
        with pytest.raises(InvalidInputError, match="MiB"):
            await uow.settings.set_value("huge", big)
        await uow.projects.update(project.id, {"description": "x" * (MAX_VALUE_BYTES // 2)})
        await uow.commit()


@pytest.mark.parametrize("text", [5, b"alpha", ["alpha"], 1.5])
async def test_search_text_that_is_not_a_string_is_refused(
    make_layer: LayerFactory, text: Any
) -> None:
    layer = await make_layer()
    for mode in ("auto", "keyword"):
        with pytest.raises(InvalidInputError, match="search text must be a string"):
            await layer.search("crawled_pages", text=text, mode=mode)
