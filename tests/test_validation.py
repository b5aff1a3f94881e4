"""Bad input is refused with InvalidInputError naming the field, before any SQL is sent."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from app.bootstrap import DataLayer
from app.domain import CrawledPage, Source, Task, TaskPriority, TaskStatus
from app.errors import InvalidInputError
from app.repositories.base import SqlAlchemyRepository
from app.repositories.validation import validator_for
from app.testing import CrawledPageFactory, SourceFactory, TaskFactory


def check(entity: Any) -> Any:
    validator_for(type(entity)).entity(entity)
    return entity


class TestEntityValidation:
    def test_nul_bytes_in_text_name_the_field(self) -> None:
        with pytest.raises(InvalidInputError, match=r"archon_sources\.title.*NUL"):
            check(SourceFactory.build(title="a\x00b"))

    @pytest.mark.parametrize(
        "metadata",
        [{"a": ["ok", {"deep": "x\x00"}]}, {"k\x00": 1}, {"a": [[["\x00"]]]}],
    )
    def test_nul_bytes_anywhere_in_json(self, metadata: Any) -> None:
        with pytest.raises(InvalidInputError, match=r"archon_sources\.metadata"):
            check(SourceFactory.build(metadata_=metadata))

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_nan_and_infinity_in_json(self, bad: float) -> None:
        with pytest.raises(InvalidInputError, match=r"metadata.*NaN or infinity"):
            check(SourceFactory.build(metadata_={"scores": [1.0, {"x": bad}]}))

    @pytest.mark.parametrize("bad", [{1, 2}, object(), b"bytes", {1: "int key"}])
    def test_json_must_be_serializable(self, bad: Any) -> None:
        with pytest.raises(InvalidInputError, match=r"metadata"):
            check(SourceFactory.build(metadata_={"x": bad}))

    def test_json_integers_beyond_64_bits(self) -> None:
        with pytest.raises(InvalidInputError, match="64-bit"):
            check(SourceFactory.build(metadata_={"big": 2**64}))
        check(SourceFactory.build(metadata_={"big": 2**63 - 1, "small": -(2**63)}))

    def test_enums_accept_members_or_values_and_normalize(self) -> None:
        task = check(TaskFactory.build(status="review", priority="high"))
        assert task.status is TaskStatus.REVIEW and task.priority is TaskPriority.HIGH
        with pytest.raises(InvalidInputError, match=r"archon_tasks\.status.*todo, doing"):
            check(TaskFactory.build(status="sleeping"))
        with pytest.raises(InvalidInputError, match=r"priority.*low, medium, high, critical"):
            check(TaskFactory.build(priority="HIGH"))

    @pytest.mark.parametrize(
        ("field", "value"),
        [("chunk_number", 2**31), ("chunk_number", -(2**31) - 1), ("id", 2**63)],
    )
    def test_integers_out_of_the_column_range(self, field: str, value: int) -> None:
        with pytest.raises(InvalidInputError, match=f"{field}.*range"):
            check(CrawledPageFactory.build(**{field: value}))

    def test_integer_edges_are_accepted(self) -> None:
        check(CrawledPageFactory.build(chunk_number=2**31 - 1, id=-(2**63)))

    def test_wrong_types(self) -> None:
        with pytest.raises(InvalidInputError, match="chunk_number must be an integer"):
            check(CrawledPageFactory.build(chunk_number="3"))
        with pytest.raises(InvalidInputError, match="chunk_number must be an integer"):
            check(CrawledPageFactory.build(chunk_number=True))
        with pytest.raises(InvalidInputError, match="pinned must be true or false"):
            from app.testing import ProjectFactory

            check(ProjectFactory.build(pinned="yes"))

    def test_required_columns(self) -> None:
        page = CrawledPage(url="https://x", chunk_number=0, source_id="a" * 16)
        with pytest.raises(InvalidInputError, match=r"archon_crawled_pages\.content is required"):
            check(page)
        with pytest.raises(InvalidInputError, match=r"source_id is required"):
            check(Source(title="no id"))

    def test_uuid_strings_are_normalized(self) -> None:
        project_id = uuid.uuid4()
        task = check(TaskFactory.build(project_id=str(project_id)))
        assert task.project_id == project_id
        with pytest.raises(InvalidInputError, match="project_id must be a UUID"):
            check(TaskFactory.build(project_id="nope"))

    def test_bounded_varchar(self) -> None:
        from app.testing import SettingFactory

        with pytest.raises(InvalidInputError, match=r"archon_settings\.key.*255"):
            check(SettingFactory.build(key="k" * 256))


@contextmanager
def no_sql_sent(layer: DataLayer) -> Iterator[list[str]]:
    """Fails if any statement reaches the database inside the block."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    engines = [layer.engine, *layer.read_engines]
    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert sent == [], f"SQL was sent before the input was refused: {sent}"


def _repo(uow: Any, model: type[Any]) -> SqlAlchemyRepository[Any]:
    cls = type(f"Generic{model.__name__}Repository", (SqlAlchemyRepository,), {"model": model})
    return cls(uow.session)


Call = Callable[[Any], Awaitable[Any]]
BAD_CALLS: list[tuple[str, Call, str]] = [
    ("add", lambda u: _repo(u, Source).add(SourceFactory.build(title="\x00")), "title"),
    (
        "add_many, last row bad",
        lambda u: _repo(u, CrawledPage).add_many(
            [*CrawledPageFactory.build_batch(3), CrawledPageFactory.build(content="x\x00")]
        ),
        "content",
    ),
    (
        "upsert_many",
        lambda u: _repo(u, Task).upsert_many([TaskFactory.build(status="nope")], on=["id"]),
        "status",
    ),
    (
        "upsert_many on a non-unique column",
        lambda u: _repo(u, Task).upsert_many([TaskFactory.build()], on=["title"]),
        "unique key",
    ),
    ("update", lambda u: _repo(u, Task).update(uuid.uuid4(), {"status": "x"}), "status"),
    ("get", lambda u: _repo(u, Task).get("not-a-uuid"), "id"),
    ("list, unknown field", lambda u: _repo(u, Task).list({"colour": "red"}), "colour"),
    ("list, unknown operator", lambda u: _repo(u, Task).list({"title": {"~": "x"}}), "~"),
    ("list, bad enum", lambda u: _repo(u, Task).list({"status": "sleeping"}), "status"),
    ("list, order_by", lambda u: _repo(u, Task).list(order_by=["colour"]), "colour"),
    ("count", lambda u: _repo(u, Source).count({"metadata.a": {"gt": [1]}}), "metadata.a"),
    ("page, bad cursor", lambda u: _repo(u, Source).page(after="!!"), "cursor"),
    ("delete_where, no filter", lambda u: _repo(u, Source).delete_where({}), "delete_all"),
    (
        "upsert_many, None for the entities",
        lambda u: u.sources.upsert_many(None, on=["source_id"], returning=True),
        "entities",
    ),
    ("add_many, a number", lambda u: u.sources.add_many(5), "entities"),
    ("add_many, one entity", lambda u: u.sources.add_many(SourceFactory.build()), "add()"),
    ("tasks' add_many, None", lambda u: u.tasks.add_many(None), "entities"),
]


class TestNothingReachesTheDatabase:
    @pytest.mark.parametrize(("what", "call", "named"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
    async def test_bad_input_is_refused_before_any_sql(
        self, layer: DataLayer, what: str, call: Call, named: str
    ) -> None:
        async with layer.uow() as uow:
            with no_sql_sent(layer), pytest.raises(InvalidInputError, match=_escape(named)):
                await call(uow)

    async def test_the_counter_does_see_sql(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            with pytest.raises(AssertionError, match="SQL was sent"), no_sql_sent(layer):
                await _repo(uow, Source).count()


def _escape(text: str) -> str:
    return "".join("\\" + c if c in ".~*+?[](){}|^$" else c for c in text)
