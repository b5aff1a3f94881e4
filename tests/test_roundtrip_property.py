"""Any valid entity, written and read back in a new Unit of Work, equals what was written.

Generated values reach for the edges: any Unicode text (emoji, astral planes), large nested
JSON, 32- and 64-bit integer limits, timezone-aware datetimes in many zones with microseconds
(compared as instants: every backend returns them in UTC).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bootstrap import DataLayer
from app.domain import CrawledPage, DocumentVersion, Project, Source, Task, TaskPriority, TaskStatus
from app.repositories.base import SqlAlchemyRepository
from app.repositories.validation import columns_of
from tests.support import Sql

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

_chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
text = st.one_of(
    st.text(_chars, max_size=40),
    st.sampled_from(["😀👩‍👩‍👧", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010ffff", "trailing  ", "Ünïcödé", "\t\n\r"]),
)
short_text = st.text(_chars, max_size=20)
int32 = st.one_of(st.integers(*INT32), st.sampled_from([*INT32, 0, -1, 1]))
int64 = st.one_of(st.integers(*INT64), st.sampled_from([*INT64, -1, 1]))
# Not in the range PostgreSQL's sequence hands out, where an explicit id would collide with
# a generated one (a sequence does not skip ids inserted explicitly), and not near the top,
# where MySQL's and SQLite's counters would follow and leave no id to generate (see
# test_bigint_primary_key_edges for 2**63 - 1).
explicit_ids = st.one_of(st.integers(2**40, 2**62), st.integers(INT64[0], -1), st.just(INT64[0]))
# PostgreSQL keeps JSON numbers as NUMERIC: a float of 1e16 or more comes back as an integer.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    int64,
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False),
    text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(short_text, inner, max_size=6)
    ),
    max_leaves=60,
)
json_objects = st.dictionaries(short_text, json_values, max_size=8)
_zones = [
    UTC,
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("America/St_Johns"),
    ZoneInfo("Pacific/Kiritimati"),
    ZoneInfo("Europe/Berlin"),
    timezone(timedelta(hours=-12)),
    timezone(timedelta(hours=5, minutes=45)),
]
instants = st.datetimes(
    min_value=datetime(1901, 1, 1),
    max_value=datetime(2200, 12, 31),
    timezones=st.sampled_from(_zones),
)


def _unique(prefix: str) -> st.SearchStrategy[str]:
    """Generated text made unique per example (rows of earlier examples stay in the table)."""
    return short_text.map(lambda s: f"{s}{prefix}{uuid.uuid4().hex[:8]}")


@st.composite
def sources(draw: st.DrawFn) -> Source:
    return Source(
        source_id=draw(_unique("s")),
        source_url=draw(st.none() | text),
        source_display_name=draw(st.none() | text),
        summary=draw(st.none() | text),
        total_word_count=draw(st.none() | int32),
        title=draw(st.none() | text),
        metadata_=draw(st.none() | json_objects),
        created_at=draw(instants),
        updated_at=draw(instants),
    )


@st.composite
def pages(draw: st.DrawFn, source_id: str) -> CrawledPage:
    return CrawledPage(
        id=draw(st.none() | explicit_ids),
        url=draw(_unique("u")),
        chunk_number=draw(int32),
        content=draw(text),
        metadata_=draw(json_objects),
        source_id=source_id,
        llm_chat_model=draw(st.none() | text),
        embedding_model=draw(st.none() | text),
        embedding_dimension=draw(st.none() | int32),
        created_at=draw(instants),
    )


@st.composite
def tasks(draw: st.DrawFn, project_id: uuid.UUID) -> Task:
    return Task(
        # RFC 4122 ids: MariaDB's UUID type refuses some others (NCS variant, version > 5).
        id=draw(st.uuids(version=4)),
        project_id=draw(st.none() | st.just(project_id)),
        title=draw(text),
        description=draw(st.none() | text),
        status=draw(st.sampled_from([*TaskStatus, *(s.value for s in TaskStatus)])),
        assignee=draw(text.filter(bool)),
        task_order=draw(int32),
        priority=draw(st.sampled_from(list(TaskPriority))),
        feature=draw(st.none() | text),
        sources=draw(st.lists(json_values, max_size=4)),
        code_examples=draw(st.none() | st.lists(json_objects, max_size=3)),
        archived=draw(st.none() | st.booleans()),
        archived_at=draw(st.none() | instants),
        archived_by=draw(st.none() | text),
        created_at=draw(instants),
        updated_at=draw(instants),
    )


def _repo(uow: Any, model: type[Any]) -> SqlAlchemyRepository[Any]:
    cls = type(f"Generic{model.__name__}Repository", (SqlAlchemyRepository,), {"model": model})
    return cls(uow.session)


def _instant(value: Any) -> Any:
    # In UTC, because Python never finds a time in a repeated hour (a DST fold) equal to the
    # same instant in another zone (PEP 495).
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _values(entity: Any) -> dict[str, Any]:
    attrs = columns_of(type(entity)).attr_of.values()
    return {attr: _instant(getattr(entity, attr)) for attr in attrs}


async def _read_back(layer: DataLayer, model: type[Any], ids: list[Any]) -> list[dict[str, Any]]:
    async with layer.uow(read_only=True) as uow:
        return [_values(e) for e in await _repo(uow, model).get_many(ids)]


async def _empty(layer: DataLayer, *models: type[Any]) -> None:
    async with layer.uow() as uow:
        for model in models:
            await _repo(uow, model).delete_all()
        await uow.commit()


class TestRoundTrip:
    @PROPERTY_SETTINGS
    @given(data=st.data(), source=sources())
    async def test_sources_and_pages(
        self, layer: DataLayer, data: st.DataObject, source: Source
    ) -> None:
        await _empty(layer, CrawledPage, Source)
        chunks = data.draw(
            st.lists(pages(source.source_id), max_size=4, unique_by=lambda p: p.id or p.url)
        )
        written = [_values(source)] + [_values(p) for p in chunks]
        async with layer.uow() as uow:
            await _repo(uow, Source).add(source)
            await _repo(uow, CrawledPage).add_many(chunks)
            await uow.commit()
        for row in written[1:]:
            row["id"] = row["id"] or next(p.id for p in chunks if p.url == row["url"])
        read = await _read_back(layer, Source, [source.source_id])
        read += await _read_back(layer, CrawledPage, [p.id for p in chunks])
        assert read == written

    @PROPERTY_SETTINGS
    @given(data=st.data())
    async def test_tasks_and_document_versions(self, layer: DataLayer, data: st.DataObject) -> None:
        await _empty(layer, DocumentVersion, Task, Project)
        project = Project(title=data.draw(text), docs=data.draw(st.lists(json_objects)))
        items = data.draw(st.lists(tasks(project.id), max_size=4, unique_by=lambda t: t.id))
        version = DocumentVersion(
            project_id=project.id,
            field_name="docs",
            version_number=data.draw(int32),
            content=data.draw(json_values.filter(lambda v: v is not None)),
            created_at=data.draw(instants),
        )
        async with layer.uow() as uow:
            await _repo(uow, Project).add(project)
            await _repo(uow, Task).add_many(items)
            await _repo(uow, DocumentVersion).add(version)
            await uow.commit()
        assert await _read_back(layer, Project, [project.id]) == [_values(project)]
        assert await _read_back(layer, Task, [t.id for t in items]) == [_values(t) for t in items]
        assert await _read_back(layer, DocumentVersion, [version.id]) == [_values(version)]


async def test_bigint_primary_key_edges(layer: DataLayer, sql: Sql) -> None:
    source = Source(source_id="edge", title="edges")
    edges = [
        CrawledPage(id=i, url=f"u{i}", chunk_number=n, content="c", source_id="edge")
        for i, n in ((INT64[1], INT32[1]), (INT64[0], INT32[0]))
    ]
    written = [_values(p) for p in edges]
    async with layer.uow() as uow:
        await _repo(uow, Source).add(source)
        await _repo(uow, CrawledPage).add_many(edges)
        await uow.commit()
    try:
        assert await _read_back(layer, CrawledPage, [p.id for p in edges]) == written
    finally:
        await _empty(layer, CrawledPage, Source)
        # An id of 2**63 - 1 moved MySQL's AUTO_INCREMENT and SQLite's sequence to the end.
        if layer.dialect_name == "mysql":
            await sql.execute("ALTER TABLE archon_crawled_pages AUTO_INCREMENT = 1")
        elif layer.dialect_name == "sqlite":
            has_sequences = await sql.scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_sequence'"
            )
            if has_sequences:
                await sql.execute("DELETE FROM sqlite_sequence WHERE name = 'archon_crawled_pages'")
