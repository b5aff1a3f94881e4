"""The stored entities of an upsert (``upsert_many(..., returning=True)``).

Where the upsert itself can return its rows (PostgreSQL and SQLite: ``INSERT ... ON CONFLICT ...
RETURNING``) they come from it; the rows it does not return (an empty ``update`` leaves existing
rows untouched, and ``DO NOTHING`` returns nothing for them) and, on MySQL/MariaDB (no RETURNING
with ``ON DUPLICATE KEY UPDATE``), all rows are read back by their ``on`` values in the same
transaction, whose locks keep the rows it wrote as written. Each input entity is matched to its
row by its ``on`` values (an existing row keeps its own id), or, where one of those is NULL (NULLs
never conflict, so the row was inserted), by its primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from app.errors import DataLayerError
from app.repositories.bulk import UpsertPlan, row_of
from app.repositories.rows import entity_rows


def _rows_of(plan: UpsertPlan) -> Any:
    model: Any = plan.columns.model
    return entity_rows(model)


IN_CHUNK = 500  # keys per IN list, far below every driver's parameter limit


def lookups(plan: UpsertPlan, items: Sequence[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """How each entity's stored row is found: ("on", its on values) or ("pk", (its id,))."""
    columns = plan.columns
    found = []
    for item in items:
        row = row_of(columns, item)
        key = tuple(row.get(c.name) for c in plan.on)
        # A NULL in the key never conflicts: the row was inserted, with its own id (the tables
        # whose unique keys take NULLs have ids made by the client).
        found.append(("on", key) if None not in key else ("pk", (row.get(columns.pk.name),)))
    return found


async def stored(
    session: AsyncSession,
    plan: UpsertPlan,
    wanted: list[tuple[str, tuple[Any, ...]]],
    returned: list[Any],
) -> list[Any]:
    """The session's entities of the rows ``wanted`` names, in its order (see module docs)."""
    rows = _Index(plan)
    rows.add(returned)
    for kind in ("on", "pk"):
        keys = (k for how, k in wanted if how == kind and not rows.has(how, k))
        missing = list(dict.fromkeys(keys))
        columns = plan.on if kind == "on" else (plan.columns.pk,)
        for start in range(0, len(missing), IN_CHUNK):
            rows.add(await _select(session, plan, columns, missing[start : start + IN_CHUNK]))
    out = []
    for how, key in wanted:
        row = rows.get(how, key)
        if row is None:
            raise DataLayerError(
                f"the {plan.columns.model.__name__} upserted with {key!r} could not be read "
                "back: another transaction deleted it, or the database took it for another key"
            )
        out.append(row)
    return _attach_stored(session, plan, out)


class _Index:
    """Rows by their on values and by their primary key."""

    def __init__(self, plan: UpsertPlan) -> None:
        names = [c.key for c in _rows_of(plan).columns]
        self._on = [names.index(c.key) for c in plan.on]
        self._pk = names.index(plan.columns.pk.key)
        self._by: dict[str, dict[tuple[Any, ...], Any]] = {"on": {}, "pk": {}}

    def add(self, rows: Sequence[Any]) -> None:
        for row in rows:
            self._by["on"][tuple(row[i] for i in self._on)] = row
            self._by["pk"][(row[self._pk],)] = row

    def has(self, how: str, key: tuple[Any, ...]) -> bool:
        return key in self._by[how]

    def get(self, how: str, key: tuple[Any, ...]) -> Any:
        return self._by[how].get(key)


async def _select(
    session: AsyncSession, plan: UpsertPlan, columns: Sequence[Any], keys: list[tuple[Any, ...]]
) -> list[Any]:
    where = (
        columns[0].in_([k[0] for k in keys]) if len(columns) == 1 else sa.tuple_(*columns).in_(keys)
    )
    stmt = sa.select(*_rows_of(plan).columns).where(where)
    return list((await session.execute(stmt)).all())


def _attach_stored(session: AsyncSession, plan: UpsertPlan, rows: list[Any]) -> list[Any]:
    """Entities of ``rows`` joined to the session; one it holds already is returned, given
    the stored values (the row is what the database holds now)."""
    maker = _rows_of(plan)
    sync = session.sync_session
    identity_map = sync.identity_map
    attrs = list(plan.columns.attr_of.values())
    by_key: dict[Any, Any] = {}
    keys = []
    for row in rows:
        entity = maker.build(row)
        state = instance_state(entity)
        assert state.key is not None, "built by EntityRows, with its identity key"
        keys.append(state.key)
        if state.key in by_key:
            continue
        held = identity_map.get(state.key)
        if held is not None:
            for attr in attrs:
                set_committed_value(held, attr, entity.__dict__[attr])
            by_key[state.key] = held
            continue
        state.session_id = sync.hash_key
        identity_map._add_unpresent(state, state.key)
        by_key[state.key] = entity
    return [by_key[key] for key in keys]
