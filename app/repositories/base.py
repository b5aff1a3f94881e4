"""The generic repository: its port (``Repository[T]``) and its SQLAlchemy adapter."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import cache
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement

from app.domain.base import UPDATED_AT_BY_TRIGGER
from app.domain.types import utcnow
from app.errors import (
    BackendUnavailableError,
    DataLayerError,
    InvalidInputError,
    NotFoundError,
    RetryableError,
    translate_errors,
)
from app.filter_eval import evaluate
from app.filters import parse_filters
from app.repositories import bulk, driver, single, upsert_read
from app.repositories.audit import given_fields, natural_key, record, recorder_of
from app.repositories.grouping import group_column, grouped
from app.repositories.paging import (
    Page,
    after_clause,
    decode_cursor,
    encode_cursor,
    order_clauses,
    order_keys,
)
from app.repositories.projection import Projection, build, of_entity, projection_class, selected
from app.repositories.rows import attach, attach_written, entity_rows
from app.repositories.sql_filters import compile_filters, compile_node
from app.repositories.state import FAILED, check_usable, mark_failed, note_changed
from app.repositories.validation import ModelColumns, columns_of, validator_for

T = TypeVar("T")
Filters = Mapping[str, Any]
# Rows per INSERT statement; SQLAlchemy pages multi-row VALUES within it as well.
BATCH_SIZE = 500


class Repository(Protocol[T]):
    """Storage of one entity type. Methods flush, never commit: the Unit of Work commits.

    Entities are SQLModel table models. Every method validates its input before any SQL is sent
    (``InvalidInputError`` naming the field); a write that fails leaves the Unit of Work usable
    and nothing of that call behind. Database errors arrive as ``app.errors`` types:
    ``ConflictError`` for unique and foreign-key violations, ``BackendUnavailableError`` when
    the database cannot be reached.

    ``filters`` use the filter language of ``app.filters``: ``{"field": value}``,
    ``{"field": {"op": value}}`` (eq, ne, gt, gte, lt, lte, in, not_in, like, ilike, is_null,
    contains), JSON paths such as ``"metadata.knowledge_type"``, and ``and``/``or``/``not``.
    Field names are column names (``metadata``) or attribute names (``metadata_``). Comparisons
    follow SQL's three-valued logic: ``ne`` and ``not_in`` never match NULL or a missing key.
    ``order_by`` is a list of column names, ``"-name"`` for descending; NULLs sort last, and
    the primary key is always the final tie-breaker, so orders are stable.

    ``fields=[...]`` (``get``, ``list``) selects only those columns (column or attribute names,
    no repeats, at least one) and returns ``Projection`` values (``app.repositories.projection``)
    in place of entities: typed fields, frozen, not tracked by the Unit of Work, and reading a
    field that was not selected raises ``AttributeError``. The large columns (``content``,
    ``full_content``, JSON documents) are read only when named; embeddings, which are no entity
    fields, never (the vector index reads them).
    """

    async def add(self, entity: T) -> T:
        """Insert ``entity``; returns it with its generated id set. ConflictError on a
        duplicate key or a missing referenced row."""
        ...

    async def add_many(self, entities: Iterable[T]) -> list[T]:
        """Insert all of ``entities`` or none of them (all are validated first); returns them,
        in input order, with generated ids set."""
        ...

    @overload
    async def get(self, id: Any, *, fields: None = None) -> T | None: ...
    @overload
    async def get(self, id: Any, *, fields: Sequence[str]) -> Projection | None: ...
    async def get(self, id: Any, *, fields: Sequence[str] | None = None) -> Any:
        """The entity with primary key ``id`` (with ``fields``, a ``Projection`` of those
        columns), or ``None``."""
        ...

    async def get_or_raise(self, id: Any) -> T:
        """The entity with primary key ``id``; NotFoundError naming entity and id otherwise."""
        ...

    async def get_many(self, ids: Iterable[Any]) -> list[T]:
        """The entities with these primary keys, in the order of ``ids``; missing ones skipped."""
        ...

    @overload
    async def list(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        fields: None = None,
    ) -> builtins.list[T]: ...
    @overload
    async def list(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        fields: Sequence[str],
    ) -> builtins.list[Projection]: ...
    async def list(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        fields: Sequence[str] | None = None,
    ) -> Any:
        """Entities matching ``filters`` in ``order_by`` order (primary key order by default);
        with ``fields``, ``Projection`` values holding only those columns (one SELECT of them)."""
        ...

    async def page(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[T]:
        """Up to ``limit`` entities following the cursor ``after`` (keyset pagination).

        Pass ``next_cursor`` back as ``after`` with the same filters and ordering for the next
        page; it is ``None`` on the last page. Rows inserted or deleted meanwhile never make
        the pages repeat or skip a row that existed throughout. InvalidInputError for a cursor
        of another table or ordering.
        """
        ...

    async def count(self, filters: Filters | None = None) -> int:
        """How many entities match ``filters``."""
        ...

    async def count_by(self, field: str, filters: Filters | None = None) -> dict[Any, int]:
        """How many entities matching ``filters`` hold each value of ``field``, in one grouped
        statement: ``{value: count}`` for the values present (no zero counts, no set order).

        Keys are typed as the entity's field (enum members, UUIDs, ...); rows where the field is
        NULL are counted under ``None``. Text groups by its exact characters on every backend.
        InvalidInputError for an unknown field or a JSON column.
        """
        ...

    async def update(self, id: Any, values: Mapping[str, Any]) -> T:
        """Set ``values`` (by attribute or column name) on the entity ``id``; returns it.

        ``updated_at`` is set to now unless given; giving it is InvalidInputError on the tables
        whose PostgreSQL trigger would overwrite it (tasks, projects, settings, prompts). The
        primary key cannot change.
        NotFoundError when there is no such entity.
        """
        ...

    @overload
    async def upsert_many(
        self,
        entities: Iterable[T],
        *,
        on: Sequence[str],
        update: Sequence[str] | None = None,
        returning: Literal[False] = False,
    ) -> int: ...
    @overload
    async def upsert_many(
        self,
        entities: Iterable[T],
        *,
        on: Sequence[str],
        update: Sequence[str] | None = None,
        returning: Literal[True],
    ) -> builtins.list[T]: ...
    async def upsert_many(
        self,
        entities: Iterable[T],
        *,
        on: Sequence[str],
        update: Sequence[str] | None = None,
        returning: bool = False,
    ) -> Any:
        """Insert ``entities``, or update the rows that already have their ``on`` values.

        ``on`` must be the primary key or the columns of a unique constraint (InvalidInputError
        otherwise). ``update`` lists the columns to overwrite on a match (default: all but
        ``on``, the primary key and ``created_at``; empty: keep existing rows as they are).
        One native statement per batch, never a read before the write. When several entities
        share ``on`` values the last one wins. Returns the number of distinct rows written.
        Entities this Unit of Work holds for those rows get the ``update`` values written.

        ``returning=True`` returns the stored entities instead, one per input entity in input
        order (entities sharing ``on`` values get the same one): an existing row's own id, the
        values it kept, and what the database set (generated ids, trigger-stamped
        ``updated_at``). They are this Unit of Work's entities, as ``list`` returns them; the
        entities given are left as they were. PostgreSQL and SQLite return the rows from the
        upsert itself; MySQL/MariaDB (and rows an empty ``update`` left alone) read them back by
        their ``on`` values in the same transaction. All or nothing.
        """
        ...

    async def update_where(self, filters: Filters, values: Mapping[str, Any]) -> int:
        """Set ``values`` on every entity matching ``filters`` in ONE UPDATE statement; how many
        rows matched (rows already holding the values count too, on every backend).

        ``values`` are checked as ``update`` checks them (InvalidInputError naming the field,
        before any SQL): the primary key cannot change, ``updated_at`` is stamped with now
        unless given, and giving it is refused on the tables whose trigger sets it. ``{}``
        only stamps ``updated_at`` (refused on tables without it). Empty ``filters`` are refused:
        ``update_all`` changes every row. Entities this Unit of Work holds that match (judged
        as ``delete_where`` judges them) get the values written (``updated_at`` as stamped here;
        on the tables whose trigger stamps it, the row holds the trigger's time).
        """
        ...

    async def update_all(self, values: Mapping[str, Any]) -> int:
        """``update_where`` for every entity of this type; how many."""
        ...

    async def delete(self, id: Any) -> bool:
        """Delete the entity ``id``; whether it existed."""
        ...

    async def delete_where(self, filters: Filters) -> int:
        """Delete the entities matching ``filters``; how many. Empty filters are refused
        (InvalidInputError): use ``delete_all`` to delete everything."""
        ...

    async def delete_all(self) -> int:
        """Delete every entity of this type; how many."""
        ...


class SqlAlchemyRepository(Generic[T]):
    """``Repository[T]`` over an ``AsyncSession``; subclasses set ``model``."""

    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.columns: ModelColumns = columns_of(self.model)
        self.table: sa.Table = self.columns.table
        self._validator = validator_for(self.model)
        self._name = self.model.__name__
        self._entity: Any = self.model  # (a plain value for the caches keyed by it)

    # -- helpers for subclasses ---------------------------------------------------------------

    def _where(self, filters: Filters | None) -> ColumnElement[bool] | None:
        """The WHERE clause for ``filters`` (``None`` when empty); InvalidInputError if bad."""
        return compile_filters(filters, self.model)

    def _order(self, order_by: Sequence[str] | None) -> list[ColumnElement[Any]]:
        """ORDER BY terms for ``order_by``, NULLs last, primary key as the last tie-breaker."""
        return order_clauses(order_keys(self.columns, order_by))

    def _validate(self, entity: T) -> T:
        """Check (and normalize in place) ``entity`` before it goes near the database."""
        self._validator.many([entity])
        return entity

    def _select(self, filters: Filters | None) -> sa.Select[Any]:
        stmt = sa.select(self.model)
        where = self._where(filters)
        return stmt if where is None else stmt.where(where)

    def _pk_value(self, id: Any) -> Any:
        return self._validator.values({self.columns.pk.name: id})[
            self.columns.attr_of[self.columns.pk.name]
        ]

    @asynccontextmanager
    async def _atomic(self, action: str) -> AsyncIterator[None]:
        """A savepoint around a write of several statements: a failure undoes only this call."""
        check_usable(self.session)
        try:
            with translate_errors(f"{action} {self._name}"):
                async with self.session.begin_nested():
                    yield
        except (RetryableError, BackendUnavailableError):
            self.session.info[FAILED] = f"{action} {self._name}"  # the transaction is gone
            raise

    @asynccontextmanager
    async def _single(self, action: str) -> AsyncIterator[None]:
        """One statement, atomic on its own: no savepoint (it would cost two round trips).

        A database error leaves the Unit of Work needing a rollback (see ``app.repositories.state``)
        unless the caller wrapped the call in ``uow.savepoint()``.
        """
        check_usable(self.session)
        try:
            with translate_errors(f"{action} {self._name}"):
                yield
        except DataLayerError as exc:
            if exc.__cause__ is not None:
                mark_failed(self.session, f"{action} {self._name}")
            raise

    def _write(self, action: str, statements: int) -> AbstractAsyncContextManager[None]:
        return self._single(action) if statements <= 1 else self._atomic(action)

    async def _dialect(self) -> Dialect:
        dialect = self.session.get_bind().dialect
        if dialect.server_version_info is not None:  # initialized by a first connection
            return dialect
        with translate_errors(f"connecting for {self._name}"):
            connection = await self.session.connection()
        return connection.dialect

    # -- reads --------------------------------------------------------------------------------

    @overload
    async def get(self, id: Any, *, fields: None = None) -> T | None: ...
    @overload
    async def get(self, id: Any, *, fields: Sequence[str]) -> Projection | None: ...
    async def get(self, id: Any, *, fields: Sequence[str] | None = None) -> Any:
        """The entity with primary key ``id`` (a ``Projection`` with ``fields``), or ``None``."""
        shape = None if fields is None else self._projection(fields)
        key = self._pk_value(id)
        check_usable(self.session)
        session = self.session
        found = session.identity_map.get((self.model, (key,), None))
        if found is not None and not sa.inspect(found).expired_attributes:
            # as session.get: no SQL for an entity the session holds
            if shape is None:
                return found
            held = of_entity(shape, found)
            if held is not None:
                return held
        if shape is not None:
            stmt = self._projected(shape).where(self.columns.pk == key)
            found = await self._fetch_projected(stmt)
            return build(shape, found)[0] if found else None
        run = driver.runner(session)
        with translate_errors(f"loading {self._name}"):
            if run is not None:
                rows = await run.fetch(_by_key(self._entity), {"key": key}, fixed=True)
                if rows is not None:
                    return self._attach(rows)[0] if rows else None
            return await session.get(self.model, key)

    def _attach(self, rows: Sequence[Sequence[Any]]) -> builtins.list[T]:
        """Entities of rows fetched on the driver path, joined to the session as loaded ones."""
        return attach(self.session, map(entity_rows(self._entity).build, rows))

    async def get_or_raise(self, id: Any) -> T:
        """The entity with primary key ``id``; NotFoundError otherwise."""
        found = await self.get(id)
        if found is None:
            raise NotFoundError(f"{self._name} {id!r} does not exist")
        return found

    async def get_many(self, ids: Iterable[Any]) -> list[T]:
        """The entities with these ids, in the order of ``ids``; missing ones skipped."""
        keys = [self._pk_value(i) for i in ids]
        pk, found = self.columns.pk, {}
        attr = self.columns.attr_of[pk.name]
        with translate_errors(f"loading {self._name}"):
            for start in range(0, len(keys), BATCH_SIZE):
                chunk = keys[start : start + BATCH_SIZE]
                rows = await self.session.scalars(sa.select(self.model).where(pk.in_(chunk)))
                found.update({getattr(row, attr): row for row in rows})
        return [found[key] for key in keys if key in found]

    @overload
    async def list(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        fields: None = None,
    ) -> builtins.list[T]: ...
    @overload
    async def list(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        fields: Sequence[str],
    ) -> builtins.list[Projection]: ...
    async def list(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        fields: Sequence[str] | None = None,
    ) -> Any:
        """Entities (``Projection`` values with ``fields``) matching ``filters``, ordered,
        optionally sliced."""
        shape = None if fields is None else self._projection(fields)
        where, order = self._where(filters), self._order(order_by)
        limit = None if limit is None else _count_arg("limit", limit)
        offset = _count_arg("offset", offset) if offset else None
        if shape is not None:
            stmt = _sliced(self._projected(shape), where, order, limit, offset)
            return build(shape, await self._fetch_projected(stmt))
        run = driver.runner(self.session)
        with translate_errors(f"listing {self._name}"):
            if run is not None:
                columns = entity_rows(self._entity).columns
                rows = await run.fetch(_sliced(sa.select(*columns), where, order, limit, offset))
                if rows is not None:
                    return self._attach(rows)
            stmt = _sliced(sa.select(self.model), where, order, limit, offset)
            return list(await self.session.scalars(stmt))

    def _projection(self, fields: Sequence[str]) -> type[Projection]:
        return projection_class(self._entity, selected(self.columns, fields))

    def _projected(self, shape: type[Projection]) -> sa.Select[Any]:
        """SELECT of exactly the columns of ``shape``: nothing else is read."""
        return sa.select(*(self.columns.by_name[attr] for attr in shape.fields))

    async def _fetch_projected(self, stmt: sa.Select[Any]) -> Sequence[Sequence[Any]]:
        check_usable(self.session)
        run = driver.runner(self.session)
        with translate_errors(f"listing fields of {self._name}"):
            if run is not None:
                rows = await run.fetch(stmt)
                if rows is not None:
                    return rows
            return (await self.session.execute(stmt)).all()

    async def page(
        self,
        filters: Filters | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[T]:
        """A keyset-paginated slice; pass ``next_cursor`` back as ``after``."""
        if _count_arg("limit", limit) < 1:
            raise InvalidInputError("limit must be at least 1")
        keys = order_keys(self.columns, order_by)
        stmt = self._select(filters)
        if after is not None:
            stmt = stmt.where(after_clause(keys, decode_cursor(keys, after)))
        stmt = stmt.order_by(*order_clauses(keys)).limit(limit + 1)
        with translate_errors(f"paging {self._name}"):
            rows = list(await self.session.scalars(stmt))
        more = len(rows) > limit
        items = rows[:limit]
        return Page(items, encode_cursor(keys, items[-1]) if more else None)

    async def count(self, filters: Filters | None = None) -> int:
        """How many entities match ``filters``."""
        stmt = sa.select(sa.func.count()).select_from(self.table)
        where = self._where(filters)
        if where is not None:
            stmt = stmt.where(where)
        with translate_errors(f"counting {self._name}"):
            return int((await self.session.execute(stmt)).scalar_one())

    async def count_by(self, field: str, filters: Filters | None = None) -> dict[Any, int]:
        """Entities matching ``filters`` per value of ``field``, in one GROUP BY statement."""
        column = group_column(self.columns, field)
        where = self._where(filters)
        value, key = grouped(column, await self._dialect())
        stmt = sa.select(value, sa.func.count()).select_from(self.table).group_by(*key)
        if where is not None:
            stmt = stmt.where(where)
        check_usable(self.session)
        with translate_errors(f"counting {self._name} by {field}"):
            rows = (await self.session.execute(stmt)).all()
        return {group: int(n) for group, n in rows}

    # -- writes -------------------------------------------------------------------------------

    async def add(self, entity: T) -> T:
        """Insert ``entity`` and flush; returns it with its generated id."""
        (added,) = await self.add_many([entity])
        return added

    async def add_many(self, entities: Iterable[T]) -> builtins.list[T]:
        """Insert all of ``entities`` or none; returns them with generated ids."""
        items = self._validator.many(entities)
        if not items:
            return items
        if not all(sa.inspect(e).transient for e in items):
            raise InvalidInputError(f"a {self._name} given to add_many is already stored")
        dialect = await self._dialect()
        run = driver.runner(self.session) if len(items) == 1 else None
        async with self._write("adding", len(items)):
            if run is None or not await single.insert_one(run, dialect, self.columns, items[0]):
                await bulk.insert_all(self.session, dialect, self.columns, items)
        attach_written(self.session, items)  # they are rows now: the session's stored entities
        if recorder_of(self.session) is not None:
            pk_attr = self.columns.attr_of[self.columns.pk.name]
            ids = [e.__dict__[pk_attr] for e in items]
            fields = given_fields(self.columns.attr_of, items)
            record(self.session, self.table.name, "insert", ids, fields=fields)
        return items

    async def update(self, id: Any, values: Mapping[str, Any]) -> T:
        """Set ``values`` on the entity ``id`` and flush; returns it."""
        checked = self._checked_update(values)
        key = self._pk_value(id)
        loaded = self.session.identity_map.get((self.model, (key,), None))
        if loaded is not None or not checked:
            updated = await self._update_loaded(id, checked)
            self._audit_update(key, checked)
            return updated
        dialect = await self._dialect()
        run = driver.runner(self.session) if dialect.update_returning else None
        async with self._single("updating"):
            row = single.NOT_DONE
            if run is not None:  # one round trip: the row comes back as the entity
                row = await single.update_one(run, self._entity, self.columns, key, checked)
            if row is not single.NOT_DONE:
                entity = None if row is None else self._attach([row])[0]
            elif dialect.update_returning:
                stmt = self._update_statement(key, checked).returning(self.model)
                entity = (await self.session.scalars(stmt)).one_or_none()
            else:  # MySQL/MariaDB: no UPDATE ... RETURNING (rowcount counts matched rows)
                result = await self.session.execute(self._update_statement(key, checked))
                matched = int(result.rowcount)  # type: ignore[attr-defined]
                entity = await self.session.get(self.model, key) if matched else None
        if entity is None:
            raise NotFoundError(f"{self._name} {id!r} does not exist")
        note_changed(self.session, self.table.name)
        self._audit_update(key, checked)
        return entity

    def _checked_update(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` checked for an update, ``updated_at`` stamped where the table has it."""
        checked = self._validator.values(values)
        pk_attr = self.columns.attr_of[self.columns.pk.name]
        if pk_attr in checked:
            raise InvalidInputError(f"the primary key of {self._name} cannot be updated")
        if "updated_at" in self.columns.by_name:
            self._stamp(checked)
        return checked

    async def update_where(self, filters: Filters, values: Mapping[str, Any]) -> int:
        """Set ``values`` on the entities matching (non-empty) ``filters``, in one UPDATE;
        how many rows matched."""
        checked = self._checked_update(values)
        node = parse_filters(filters, fields=self.columns.by_name, json_fields=self.columns.json)
        if node is None:
            raise InvalidInputError(
                f"update_where on {self._name} needs filters; use update_all() to update all"
            )
        where = compile_node(node, self.columns)
        return await self._update_where(where, checked, lambda row: evaluate(node, row))

    async def update_all(self, values: Mapping[str, Any]) -> int:
        """Set ``values`` on every entity of this type, in one UPDATE; how many."""
        return await self._update_where(sa.true(), self._checked_update(values), lambda row: True)

    async def _update_where(
        self,
        where: ColumnElement[bool],
        checked: dict[str, Any],
        matches: Callable[[dict[str, Any]], bool],
    ) -> int:
        if not checked:
            raise InvalidInputError(f"update_where on {self._name} needs values to set")
        stmt = sa.update(self.model).where(where).values(checked)
        async with self._single("updating"):
            result = await self.session.execute(stmt.execution_options(synchronize_session=False))
        note_changed(self.session, self.table.name)
        for entity in self._held(matches):
            for attr, value in checked.items():
                set_committed_value(entity, attr, value)
        count = int(result.rowcount)  # type: ignore[attr-defined]
        if recorder_of(self.session) is not None and count:
            # Set-wise: the rows are known by their count (reading their ids costs a query).
            fields = self._column_names(checked)
            record(self.session, self.table.name, "update", count=count, fields=fields)
        return count

    def _audit_update(self, key: Any, checked: Mapping[str, Any]) -> None:
        if recorder_of(self.session) is not None:
            fields = self._column_names(checked)
            record(self.session, self.table.name, "update", [key], fields=fields)

    def _column_names(self, checked: Mapping[str, Any]) -> builtins.list[str]:
        """The column names of the attributes an update sets (what the audit log records)."""
        name_of = {attr: name for name, attr in self.columns.attr_of.items()}
        return [name_of[attr] for attr in checked]

    def _stamp(self, checked: dict[str, Any]) -> None:
        """Set updated_at to now, or keep the one given where no trigger would overwrite it."""
        attr = self.columns.attr_of["updated_at"]
        if attr in checked and self.table.name in UPDATED_AT_BY_TRIGGER:
            raise InvalidInputError(
                f"updated_at of {self._name} is set by the database on every update; "
                "leave it out of update()"
            )
        checked.setdefault(attr, utcnow())

    def _update_statement(self, key: Any, checked: dict[str, Any]) -> Any:
        stmt = sa.update(self.model).where(self.columns.pk == key).values(checked)
        return stmt.execution_options(synchronize_session=False)

    async def _update_loaded(self, id: Any, checked: dict[str, Any]) -> T:
        """Update through the entity this session holds, so it and the row stay the same."""
        entity = await self.get_or_raise(id)
        session = self.session
        # Only this entity's UPDATE to flush: one statement, no savepoint needed.
        alone = not (session.new or session.deleted) and all(e is entity for e in session.dirty)
        async with self._write("updating", 1 if alone else 2):
            for attr, value in checked.items():
                setattr(entity, attr, value)
            await session.flush()
        note_changed(session, self.table.name)
        return entity

    @overload
    async def upsert_many(
        self,
        entities: Iterable[T],
        *,
        on: Sequence[str],
        update: Sequence[str] | None = None,
        returning: Literal[False] = False,
    ) -> int: ...
    @overload
    async def upsert_many(
        self,
        entities: Iterable[T],
        *,
        on: Sequence[str],
        update: Sequence[str] | None = None,
        returning: Literal[True],
    ) -> builtins.list[T]: ...
    async def upsert_many(
        self,
        entities: Iterable[T],
        *,
        on: Sequence[str],
        update: Sequence[str] | None = None,
        returning: bool = False,
    ) -> Any:
        """Insert or update on ``on``, natively per dialect; the number of rows written, or
        with ``returning`` the stored entities in input order."""
        items = self._validator.many(entities)
        plan = bulk.plan(self.columns, on, update)
        if not isinstance(returning, bool):
            raise InvalidInputError(f"returning must be True or False, got {returning!r}")
        wanted = upsert_read.lookups(plan, items) if returning else None
        if not items:
            return [] if returning else 0
        await self._before_upsert(items)
        dialect = await self._dialect()
        rows: builtins.list[Any] = []
        # returning: the read back is a second statement (the savepoint keeps them one).
        async with self._write("upserting", len(items) + int(returning)):
            written = await bulk.upsert_all(
                self.session, dialect, plan, items, rows if returning else None
            )
            if wanted is not None:
                stored = await upsert_read.stored(self.session, plan, wanted, rows)
        note_changed(self.session, self.table.name)
        if recorder_of(self.session) is not None:
            audit_upsert(self.session, plan, items)
        return stored if wanted is not None else written

    async def _before_upsert(self, items: builtins.list[T]) -> None:
        """What an entity's repository must do before its upsert (nothing by default)."""

    async def delete(self, id: Any) -> bool:
        """Delete the entity ``id``; whether it existed."""
        key = self._pk_value(id)
        pk_attr = self.columns.attr_of[self.columns.pk.name]
        deleted = await self._delete(
            self.columns.pk == key, lambda row: row[pk_attr] == key, ids=[key]
        )
        return deleted > 0

    async def delete_where(self, filters: Filters) -> int:
        """Delete the entities matching (non-empty) ``filters``; how many."""
        node = parse_filters(filters, fields=self.columns.by_name, json_fields=self.columns.json)
        if node is None:
            raise InvalidInputError(
                f"delete_where on {self._name} needs filters; use delete_all() to delete all"
            )
        where = compile_node(node, self.columns)
        return await self._delete(where, lambda row: evaluate(node, row))

    async def delete_all(self) -> int:
        """Delete every entity of this type; how many."""
        return await self._delete(sa.true(), lambda row: True)

    async def _delete(
        self,
        where: ColumnElement[bool],
        matches: Callable[[dict[str, Any]], bool],
        ids: builtins.list[Any] | None = None,
    ) -> int:
        async with self._single("deleting"):
            result = await self.session.execute(sa.delete(self.table).where(where))
        note_changed(self.session, self.table.name)
        self._forget(matches)
        count = int(result.rowcount)  # type: ignore[attr-defined]
        if count:
            record(self.session, self.table.name, "delete", ids, count=count)
        return count

    def _forget(self, matches: Callable[[dict[str, Any]], bool]) -> None:
        """Take entities of deleted rows out of the session."""
        for entity in self._held(matches):
            self.session.expunge(entity)

    def _held(self, matches: Callable[[dict[str, Any]], bool]) -> builtins.list[Any]:
        """The session's entities whose rows a statement's filter matched, judged by the
        reference semantics of the filter (no SELECT, no RETURNING); an entity not fully
        loaded is left out."""
        names = self.columns.attr_of
        found = []
        for entity in list(self.session.identity_map.values()):
            if not isinstance(entity, self.model):
                continue
            state = entity.__dict__
            if not all(attr in state for attr in names.values()):
                continue
            row = {name: state[attr] for name, attr in names.items()}
            row |= {attr: state[attr] for attr in names.values()}
            if matches(row):
                found.append(entity)
        return found


def audit_upsert(session: Any, plan: bulk.UpsertPlan, items: Sequence[Any]) -> None:
    """Record an upsert: the rows' primary keys when it matched on them, else the values of
    the unique key it matched on (a primary key given with them may not be the stored row's)."""
    columns = plan.columns
    attrs = [columns.attr_of[c.name] for c in plan.on]
    if plan.on == (columns.pk,):
        ids = [item.__dict__.get(attrs[0]) for item in items]
    else:
        on = [c.name for c in plan.on]
        ids = [natural_key(on, [item.__dict__.get(a) for a in attrs]) for item in items]
    fields = given_fields(columns.attr_of, items)
    record(session, columns.table.name, "upsert", dict.fromkeys(ids), fields=fields)


@cache
def _by_key(model: Any) -> sa.Select[Any]:
    """The row of ``model`` whose primary key is the bound parameter ``key`` (built once)."""
    rows = entity_rows(model)
    (pk,) = sa.inspect(model).primary_key
    return sa.select(*rows.columns).where(pk == sa.bindparam("key"))


def _sliced(
    stmt: sa.Select[Any],
    where: ColumnElement[bool] | None,
    order: Sequence[ColumnElement[Any]],
    limit: int | None,
    offset: int | None,
) -> sa.Select[Any]:
    if where is not None:
        stmt = stmt.where(where)
    stmt = stmt.order_by(*order)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt if offset is None else stmt.offset(offset)


MAX_COUNT = 2**63 - 1  # SQLite's and every server's LIMIT / OFFSET fit a signed bigint


def _count_arg(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise InvalidInputError(
            f"{name} must be an integer in 0..{MAX_COUNT} (a signed 64-bit count), got {value!r}"
        )
    return value
