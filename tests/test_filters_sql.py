"""Every backend's SQL filters select exactly the rows ``app.filter_eval.evaluate`` matches.

A fixed data set with awkward values (NULLs, missing and null JSON keys, a JSON key that holds
a string in one row and a number or a boolean in the next, case and trailing-space variants,
LIKE metacharacters, astral characters) is filtered by many generated filters covering every
operator, JSON paths, containment and and/or/not; each answer must equal the reference's.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.bootstrap import DataLayer
from app.domain import Project, Source, Task, TaskPriority, TaskStatus
from app.errors import InvalidInputError
from app.filter_eval import evaluate
from app.filters import parse_filters
from app.repositories.base import SqlAlchemyRepository
from app.repositories.validation import columns_of
from app.testing import ProjectFactory, SourceFactory, TaskFactory

FILTERS_PER_MODEL = 400
# More rounds (FILTER_FUZZ_ROUNDS=20) try more data sets and filters, e.g. after a change.
ROUNDS = int(os.environ.get("FILTER_FUZZ_ROUNDS", "1"))
TITLES = [
    "Docs", "docs", "DOCS", "docs ", "Docs API", "API docs", "100% done", "snake_case",
    "back\\slash", "Dökümantasyon", "📚 library", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "", "a", "b", "ab", "Z",
]  # fmt: skip
JSON_VALUES: list[Any] = [
    "technical", "Technical", "business", "", "10", "9", 10, 9, 2.5, -1, 0, 1, True, False,
    None, [1, 2], {"k": "v"}, 2**53 + 1, "💡", "technical ",
]  # fmt: skip
# No array inside an array: there `filter_eval.json_contains` (and MySQL's JSON_CONTAINS) find a
# bare scalar at any depth, PostgreSQL's @> only at the top.
TAGS: list[Any] = [["docs", "api"], ["api"], [], ["docs", 1, True], "docs", None, [{"a": 1}]]
MISSING = object()


def _metadata(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.08:
        return None
    doc: dict[str, Any] = {}
    for key in ("knowledge_type", "n"):
        value = rng.choice([*JSON_VALUES, MISSING])
        if value is not MISSING:
            doc[key] = value
    tags = rng.choice([*TAGS, MISSING])
    if tags is not MISSING:
        doc["tags"] = tags
    if rng.random() < 0.6:
        doc["nested"] = {"a": {"b": rng.choice(JSON_VALUES)}}
    if rng.random() < 0.5:
        doc["kebab-key"] = rng.choice(["x-y", 3, None])
    return doc


def sources(rng: random.Random) -> list[Source]:
    return [
        SourceFactory.build(
            title=rng.choice([*TITLES, None]),
            summary=rng.choice(["short", None, "a longer summary", "Short"]),
            total_word_count=rng.choice([None, 0, 1, -5, 42, 2**31 - 1, -(2**31)]),
            metadata_=_metadata(rng),
        )
        for _ in range(40)
    ]


def tasks(rng: random.Random, projects: list[Project]) -> list[Task]:
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    base = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    return [
        TaskFactory.build(
            project=rng.choice([*projects, None]),
            status=rng.choice(list(TaskStatus)),
            priority=rng.choice(list(TaskPriority)),
            assignee=rng.choice(["User", "Archon", "AI IDE Agent", "user"]),
            task_order=rng.choice([0, 1, 2, 10, -1, 2**31 - 1]),
            archived=rng.choice([True, False, None]),
            archived_at=rng.choice(
                [None, (base + timedelta(hours=rng.randint(-50, 50))).astimezone(rng.choice(zones))]
            ),
            feature=rng.choice([None, "search", "Search", "ui"]),
            sources=rng.choice([[], [{"url": "u1"}], [{"url": "u2"}, {"url": "u1"}], None]),
        )
        for _ in range(30)
    ]


# -- filter generation -------------------------------------------------------------------------

Gen = Callable[[random.Random], Any]


def _patterns(samples: list[str]) -> list[str]:
    out = ["%", "%docs%", "D%", "%s", "_", "__", "%\\%%", "%\\_%", "%\\\\%", "%📚%", "𝔘%", "a_"]
    for sample in samples:
        if sample:
            out += [sample, sample[:2] + "%", "%" + sample[-2:], "_" + sample[1:]]
    # Case changes only in ASCII: SQLite's lower() and PostgreSQL's C locale fold only ASCII.
    return out + [p.swapcase() for p in out if p.isascii()]


def _scalar_ops(values: list[Any], text: bool) -> list[tuple[str, Gen]]:
    def pick(r: random.Random) -> Any:
        return r.choice(values)

    ops: list[tuple[str, Gen]] = [(op, pick) for op in ("eq", "ne", "gt", "gte", "lt", "lte")]
    ops += [
        ("in", lambda r: r.sample(values, r.randint(0, min(3, len(values))))),
        ("not_in", lambda r: r.sample(values, r.randint(0, min(3, len(values))))),
        ("is_null", lambda r: r.choice([True, False])),
        ("eq", lambda r: None),
        ("ne", lambda r: None),
    ]
    if text:
        patterns = _patterns([v for v in values if isinstance(v, str)])
        ops += [("like", lambda r: r.choice(patterns)), ("ilike", lambda r: r.choice(patterns))]
    return ops


def _json_ops() -> list[tuple[str, Gen]]:
    scalars = [v for v in JSON_VALUES if not isinstance(v, list | dict) and v is not None]
    scalars += ["docs", "api", "a", 3, 2.0, 1.5]
    # ordering across types is what the reference defines it to be: comparing numbers and
    # booleans, unknown for a string against a number
    ops = _scalar_ops(scalars, text=True)
    contained = ["docs", ["docs"], ["api", "docs"], [1], [True], {"knowledge_type": "business"},
                 {"tags": ["api"]}, {"nested": {"a": {}}}, 10, "technical", {}, []]  # fmt: skip
    ops.append(("contains", lambda r: r.choice(contained)))
    return ops


SOURCE_FIELDS: dict[str, list[tuple[str, Gen]]] = {
    "source_id": _scalar_ops(["0" * 16, "f" * 16], text=True),
    "title": _scalar_ops([*TITLES, "c", "Docs A"], text=True),
    "summary": _scalar_ops(["short", "Short", "a longer summary", "s"], text=True),
    "total_word_count": _scalar_ops([0, 1, -5, 42, 2**31 - 1, -(2**31), 7], text=False),
    "metadata": [("is_null", lambda r: r.choice([True, False])), *_json_ops()[-1:]],
    "metadata_": [("eq", lambda r: None), ("ne", lambda r: None)],
    "metadata.knowledge_type": _json_ops(),
    "metadata.n": _json_ops(),
    "metadata.tags": _json_ops(),
    "metadata.nested.a.b": _json_ops(),
    "metadata.kebab-key": _json_ops(),
    "metadata.missing": _json_ops()[:6],
}
_STAMPS = [datetime(2024, 3, 1, 12, 0, tzinfo=UTC) + timedelta(hours=h) for h in (-60, -1, 0, 7)]
TASK_FIELDS: dict[str, list[tuple[str, Gen]]] = {
    "status": _scalar_ops([*TaskStatus, "doing", "todo"], text=True),
    "priority": _scalar_ops([*TaskPriority, "high"], text=False),
    "assignee": _scalar_ops(["User", "user", "Archon", "AI IDE Agent", "Z"], text=True),
    "task_order": _scalar_ops([0, 1, 2, 10, -1, 5], text=False),
    "archived": _scalar_ops([True, False], text=False),
    "archived_at": _scalar_ops(_STAMPS, text=False),
    "feature": _scalar_ops(["search", "Search", "ui", "x"], text=True),
    "sources": [("contains", lambda r: r.choice([[{"url": "u1"}], [], {"url": "u1"}]))],
}


def random_filter(rng: random.Random, fields: dict[str, list[tuple[str, Gen]]], depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        combinator = rng.choice(["and", "or", "not"])
        if combinator == "not":
            return {"not": random_filter(rng, fields, depth + 1)}
        n = rng.randint(1, 3)
        return {combinator: [random_filter(rng, fields, depth + 1) for _ in range(n)]}
    field = rng.choice(list(fields))
    op, gen = rng.choice(fields[field])
    value = gen(rng)
    if op == "eq" and rng.random() < 0.3 and not isinstance(value, dict):
        return {field: value}
    return {field: {op: value}}


def _record(entity: Any) -> dict[str, Any]:
    columns = columns_of(type(entity))
    record = {}
    for name, attr in columns.attr_of.items():
        record[name] = record[attr] = getattr(entity, attr)
    return record


def _repo(uow: Any, model: type[Any]) -> SqlAlchemyRepository[Any]:
    cls = type(f"Generic{model.__name__}Repository", (SqlAlchemyRepository,), {"model": model})
    return cls(uow.session)


async def _check(layer: DataLayer, model: type[Any], fields: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed)
    columns = columns_of(model)
    mismatches = []
    async with layer.uow(read_only=True) as uow:
        repo = _repo(uow, model)
        rows = await repo.list()
        records = {getattr(r, columns.attr_of[columns.pk.name]): _record(r) for r in rows}
        for _ in range(FILTERS_PER_MODEL):
            filters = random_filter(rng, fields)
            node = parse_filters(filters, columns.by_name, columns.json)
            expected = {key for key, rec in records.items() if evaluate(node, rec)}
            got = {getattr(r, columns.attr_of[columns.pk.name]) for r in await repo.list(filters)}
            if got != expected:
                mismatches.append((filters, len(expected), len(got)))
            elif rng.random() < 0.1:
                assert await repo.count(filters) == len(expected)
    assert not mismatches, "\n".join(map(repr, mismatches[:15]))


class TestFiltersMatchTheReference:
    async def test_sources(self, layer: DataLayer) -> None:
        for round_ in range(ROUNDS):
            async with layer.uow() as uow:
                await _repo(uow, Source).delete_all()
                await _repo(uow, Source).add_many(sources(random.Random(7 + round_)))
                await uow.commit()
            await _check(layer, Source, SOURCE_FIELDS, seed=11 + round_)

    async def test_tasks(self, layer: DataLayer) -> None:
        for round_ in range(ROUNDS):
            rng = random.Random(3 + round_)
            async with layer.uow() as uow:
                await _repo(uow, Project).delete_all()
                projects = await _repo(uow, Project).add_many(ProjectFactory.build_batch(3))
                await _repo(uow, Task).add_many(tasks(rng, projects))
                await uow.commit()
            await _check(layer, Task, TASK_FIELDS, seed=5 + round_)


class TestFilterEdges:
    """Hand-picked cases, as documentation of the semantics."""

    async def test_three_valued_logic_and_json_types(self, layer: DataLayer) -> None:
        docs = [
            {"k": "10"},
            {"k": 10},
            {"k": True},
            {"k": None},
            {},
            None,
            {"k": "a "},
            {"k": "A"},
        ]
        async with layer.uow() as uow:
            added = await _repo(uow, Source).add_many(
                [SourceFactory.build(metadata_=doc) for doc in docs]
            )
            ids = [s.source_id for s in added]
            await uow.commit()

        async def matching(filters: dict[str, Any]) -> list[int]:
            async with layer.uow(read_only=True) as uow:
                found = {s.source_id for s in await _repo(uow, Source).list(filters)}
            return [i for i, key in enumerate(ids) if key in found]

        assert await matching({"metadata.k": 10}) == [1]
        assert await matching({"metadata.k": "10"}) == [0]
        assert await matching({"metadata.k": {"ne": 10}}) == [0, 2, 6, 7]
        assert await matching({"not": {"metadata.k": {"ne": 10}}}) == [1]
        assert await matching({"metadata.k": {"gte": 1}}) == [1, 2]  # True counts as 1
        assert await matching({"metadata.k": {"gt": "1"}}) == [0, 6, 7]
        assert await matching({"metadata.k": {"is_null": True}}) == [3, 4, 5]
        assert await matching({"metadata.k": "a"}) == []  # no PAD SPACE on MySQL
        assert await matching({"metadata.k": {"like": "a%"}}) == [6]
        assert await matching({"metadata.k": {"ilike": "a%"}}) == [6, 7]
        assert await matching({"metadata.k": {"in": []}}) == []
        assert await matching({"metadata.k": {"not_in": []}}) == [0, 1, 2, 6, 7]
        assert await matching({"not": {"metadata.k": {"in": []}}}) == [0, 1, 2, 6, 7]
        assert await matching({"metadata": {"contains": {"k": True}}}) == [2]

    async def test_bad_filters_name_the_field(self, layer: DataLayer) -> None:
        async with layer.uow(read_only=True) as uow:
            repo = _repo(uow, Task)
            cases: list[tuple[dict[str, Any], str]] = [
                ({"nope": 1}, "nope"),
                ({"title": {"regex": "x"}}, "regex"),
                ({"status": "sleeping"}, "status"),
                ({"task_order": "ten"}, "task_order"),
                ({"task_order": {"like": "1%"}}, "task_order"),
                ({"title.x": 1}, "title"),
                ({"title": {"contains": "x"}}, "title"),
                ({"project_id": "not-a-uuid"}, "project_id"),
                ({"sources.x": datetime.now(UTC)}, "sources.x"),
                ({"title": {"like": "bad\\"}}, "title"),
            ]
            for filters, named in cases:
                with pytest.raises(InvalidInputError, match=named.replace(".", r"\.")):
                    await repo.list(filters)

    async def test_uuid_and_enum_values_accept_their_strings(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            (project,) = await _repo(uow, Project).add_many([ProjectFactory.build()])
            await _repo(uow, Task).add(TaskFactory.build(project=project, status="review"))
            await uow.commit()
        async with layer.uow(read_only=True) as uow:
            repo = _repo(uow, Task)
            assert await repo.count({"project_id": str(project.id)}) == 1
            assert await repo.count({"project_id": {"in": [project.id, uuid.uuid4()]}}) == 1
            assert await repo.count({"status": "review"}) == 1
            assert await repo.count({"status": TaskStatus.REVIEW}) == 1
            assert await repo.count({"status": {"like": "rev%"}}) == 1
