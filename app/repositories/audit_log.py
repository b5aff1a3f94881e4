"""``uow.audit``: the audit log, read with the repositories' filter language, and pruned."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.audit import AuditEntry
from app.domain.types import utcnow
from app.errors import InvalidInputError, translate_errors
from app.repositories.base import MAX_COUNT
from app.repositories.paging import order_clauses, order_keys
from app.repositories.sql_filters import compile_filters
from app.repositories.state import check_usable, mark_failed
from app.repositories.validation import columns_of


class AuditLog(Protocol):
    """The audit log of the database (``ENABLE_AUDIT_LOG``): read-only, except for pruning.

    ``filters`` and ``order_by`` as every repository takes them, over the columns of
    ``AuditEntry``: ``occurred_at``, ``actor``, ``unit_id``, ``entity`` (a table name),
    ``operation`` (insert, update, upsert, delete, vector_upsert, vector_delete),
    ``entity_id``, ``entity_ids`` and ``fields`` (JSON lists: ``{"contains": ["title"]}``),
    ``row_count``. The default order is the order of writing.
    """

    async def list(
        self,
        filters: Mapping[str, Any] | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[AuditEntry]:
        """Entries matching ``filters``."""
        ...

    async def count(self, filters: Mapping[str, Any] | None = None) -> int:
        """How many entries match ``filters``."""
        ...

    async def prune(self, *, older_than: timedelta) -> int:
        """Delete the entries written more than ``older_than`` ago; how many (commit to keep)."""
        ...


class SqlAlchemyAuditRepository:
    """``AuditLog`` over the Unit of Work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.columns = columns_of(AuditEntry)

    async def list(
        self,
        filters: Mapping[str, Any] | None = None,
        *,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[AuditEntry]:
        """Entries matching ``filters``, in ``order_by`` order (the order of writing by default)."""
        stmt = self._select(sa.select(AuditEntry), filters)
        stmt = stmt.order_by(*order_clauses(order_keys(self.columns, order_by)))
        if limit is not None:
            stmt = stmt.limit(_count_arg("limit", limit))
        if offset:
            stmt = stmt.offset(_count_arg("offset", offset))
        check_usable(self.session)
        with translate_errors("listing the audit log"):
            return list(await self.session.scalars(stmt))

    async def count(self, filters: Mapping[str, Any] | None = None) -> int:
        """How many entries match ``filters``."""
        stmt = self._select(sa.select(sa.func.count()).select_from(self.columns.table), filters)
        check_usable(self.session)
        with translate_errors("counting the audit log"):
            return int((await self.session.execute(stmt)).scalar_one())

    async def prune(self, *, older_than: timedelta) -> int:
        """Delete the entries older than ``older_than`` (a positive timedelta); how many."""
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise InvalidInputError(f"older_than must be a positive timedelta, got {older_than!r}")
        try:
            cutoff: datetime = utcnow() - older_than
        except OverflowError:
            raise InvalidInputError(f"older_than reaches before year 1: {older_than}") from None
        table = self.columns.table
        check_usable(self.session)
        try:
            with translate_errors("pruning the audit log"):
                result = await self.session.execute(
                    sa.delete(table).where(table.c.occurred_at < cutoff)
                )
        except Exception:
            mark_failed(self.session, "pruning the audit log")
            raise
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _select(self, stmt: Any, filters: Mapping[str, Any] | None) -> Any:
        where = compile_filters(filters, AuditEntry)
        return stmt if where is None else stmt.where(where)


def _count_arg(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise InvalidInputError(f"{name} must be an integer in 0..{MAX_COUNT}, got {value!r}")
    return value
