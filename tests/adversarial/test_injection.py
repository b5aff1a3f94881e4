"""Injection strings at every identifier and text entry point: identifiers are refused before
any SQL exists (they only ever come from the entities' own columns), values are bound and stored
as the text they are, and every table is intact afterwards."""

from __future__ import annotations

import pytest

from app.domain import Project, Source
from app.errors import InvalidInputError
from tests.support import LayerFactory, fetch_scalar

INJECTIONS = [
    "title; DROP TABLE archon_projects; --",
    "title' OR '1'='1",
    'title") OR 1=1 --',
    "1; SELECT pg_sleep(5)",
    "metadata.x'); DROP TABLE archon_sources; --",
    "`title`",
    "title /*",
    "metadata.a' || 'b",
    "*",
    "archon_projects.title",
]


@pytest.mark.parametrize("text", INJECTIONS)
async def test_identifiers_refuse_injections(make_layer: LayerFactory, text: str) -> None:
    layer = await make_layer()
    async with layer.uow(read_only=True) as uow:
        with pytest.raises(InvalidInputError):
            await uow.projects.list({text: "x"})
        with pytest.raises(InvalidInputError):
            await uow.projects.list(order_by=[text])
        with pytest.raises(InvalidInputError):
            await uow.projects.list({"title": {text: "x"}})
    with pytest.raises(InvalidInputError):
        await layer.search(text, text="x", mode="keyword")


@pytest.mark.parametrize("text", INJECTIONS)
async def test_values_are_stored_as_the_text_they_are(make_layer: LayerFactory, text: str) -> None:
    layer = await make_layer()
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title=text, description=text))
        await uow.sources.add(Source(source_id=text[:200], title=text))
        await uow.settings.set_value(text[:200], text)
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        assert [p.id for p in await uow.projects.list({"title": text})] == [project.id]
        assert [p.id for p in await uow.projects.list({"title": {"like": text}})] in (
            [project.id], []  # % and _ are LIKE's own wildcards; a match is never wrong here
        )
        assert await uow.settings.get_value(text[:200]) == text
    hits = await layer.search("crawled_pages", text=text, mode="keyword")
    assert hits == []
    assert await fetch_scalar(layer, "SELECT count(*) FROM archon_projects") == 1
    assert await fetch_scalar(layer, "SELECT count(*) FROM archon_sources") == 1
