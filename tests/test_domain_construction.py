"""Table models built by ``app.domain.construction`` are exactly what SQLModel itself builds."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from app.domain import ArchonModel, CrawledPage, Project, Task, TaskStatus
from app.domain import base as domain_base
from app.domain.base import archon_registry
from app.domain.construction import Construction

MODELS = sorted((m.class_ for m in archon_registry.mappers), key=lambda m: m.__name__)


@pytest.fixture
def by_sqlmodel(monkeypatch: pytest.MonkeyPatch) -> Callable[[type[Any]], None]:
    """Makes a model be built by SQLModel's own ``__init__`` for the rest of the test."""

    def use_sqlmodel(model: type[Any]) -> None:
        monkeypatch.setitem(domain_base._CONSTRUCTIONS, model, None)

    return use_sqlmodel


def _comparable(value: Any) -> Any:
    # Default factories make new ids and timestamps each time: compare what they are.
    if isinstance(value, uuid.UUID):
        return "a uuid"
    if isinstance(value, datetime):
        return ("a datetime", value.tzinfo)
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value


def snapshot(entity: Any) -> dict[str, Any]:
    """Everything a user, pydantic or the ORM can see of a new entity."""
    state = sa.inspect(entity)
    values = {k: v for k, v in entity.__dict__.items() if k != "_sa_instance_state"}
    return {
        "order": list(values),
        "values": {k: _comparable(v) for k, v in values.items()},
        "fields_set": entity.__pydantic_fields_set__,
        "extra": entity.__pydantic_extra__,
        "private": entity.__pydantic_private__,
        "committed": {k: _comparable(v) for k, v in state.committed_state.items()},
        "modified": state.modified,
        "transient": state.transient,
        "history": {k: _comparable(list(a.history)) for k, a in state.attrs.items()},
        "dump": _comparable(list(entity.model_dump(warnings=False).items())),
        "repr": [k for k, _ in entity.__repr_args__()],
    }


def _cases(model: type[Any]) -> Iterator[dict[str, Any]]:
    names = list(model.model_fields)
    yield {}
    yield {name: f"v-{name}" for name in names}
    yield {name: f"v-{name}" for name in names[::2]}
    yield dict.fromkeys(names[1::2]) | {"not_a_field": 1}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_model_is_built_as_sqlmodel_builds_it(
    model: type[Any], by_sqlmodel: Callable[[type[Any]], None]
) -> None:
    cases = list(_cases(model))
    fast = [model(**dict(data)) for data in cases]
    assert isinstance(domain_base._CONSTRUCTIONS.get(model), Construction)

    by_sqlmodel(model)
    reference = [model(**dict(data)) for data in cases]

    for ours, theirs in zip(fast, reference, strict=True):
        assert snapshot(ours) == snapshot(theirs)


def test_mutable_defaults_are_not_shared() -> None:
    first, second = Project(title="a"), Project(title="b")

    assert first.docs == [] and first.docs is not second.docs
    assert first.id != second.id
    assert CrawledPage().metadata_ is not CrawledPage().metadata_


def test_defaults_and_given_values(by_sqlmodel: Callable[[type[Any]], None]) -> None:
    task = Task(title="t", status=TaskStatus.DOING, task_order=3)

    assert (task.title, task.status, task.task_order) == ("t", TaskStatus.DOING, 3)
    assert (task.assignee, task.description, task.sources, task.archived) == ("User", "", [], False)
    assert task.__pydantic_fields_set__ == {"title", "status", "task_order"}
    assert task.created_at is not None and task.created_at.tzinfo is not None


def test_model_validate_still_validates_and_builds(
    by_sqlmodel: Callable[[type[Any]], None],
) -> None:
    data = {"url": "u", "chunk_number": "3", "content": "c", "source_id": "s"}
    ours = CrawledPage.model_validate(data)
    by_sqlmodel(CrawledPage)
    theirs = CrawledPage.model_validate(data)

    assert ours.chunk_number == 3
    assert snapshot(ours) == snapshot(theirs)


def test_attribute_events_fire_as_they_do_for_sqlmodel(
    by_sqlmodel: Callable[[type[Any]], None],
) -> None:
    seen: list[tuple[str, Any]] = []

    def listener(target: Any, value: Any, old: Any, initiator: Any) -> Any:
        seen.append((initiator.key, value))
        return value.upper() if isinstance(value, str) else value

    sa.event.listen(CrawledPage.url, "set", listener, retval=True)
    try:
        ours = CrawledPage(url="a", content="c")
        fast_seen = list(seen)
        seen.clear()
        by_sqlmodel(CrawledPage)
        theirs = CrawledPage(url="a", content="c")
    finally:
        sa.event.remove(CrawledPage.url, "set", listener)

    assert fast_seen == seen == [("url", "a")]
    assert snapshot(ours) == snapshot(theirs)  # pydantic's store of "a" wins over "A" in both


def test_a_second_init_is_left_to_sqlmodel(by_sqlmodel: Callable[[type[Any]], None]) -> None:
    ours = CrawledPage(url="a", chunk_number=1)
    ours.__init__(url="b")  # type: ignore[misc]
    by_sqlmodel(CrawledPage)
    theirs = CrawledPage(url="a", chunk_number=1)
    theirs.__init__(url="b")  # type: ignore[misc]

    assert ours.url == "b" and snapshot(ours) == snapshot(theirs)


def test_the_base_model_is_not_a_table() -> None:
    assert ArchonModel not in MODELS and len(MODELS) == len(archon_registry.mappers)


def test_missing_attributes_raise_as_pydantic_raises() -> None:
    bare = CrawledPage.__new__(CrawledPage)  # no SQLAlchemy state yet, as SQLAlchemy finds it
    page = CrawledPage(url="u")

    for entity, name in [(bare, "_sa_instance_state"), (bare, "nope"), (page, "nope")]:
        with pytest.raises(AttributeError) as raised:
            getattr(entity, name)
        assert str(raised.value) == f"'CrawledPage' object has no attribute '{name}'"
    assert not hasattr(bare, "_sa_instance_state") and hasattr(page, "_sa_instance_state")
