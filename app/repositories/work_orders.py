"""Agent work order repositories: configured repositories, work orders and their step history.

Archon constrains some TEXT columns with CHECKs (a work order's status, a repository's sandbox
type) and, on PostgreSQL, repository URLs with a regex. The repositories check the same rules
before any SQL, on every backend, so bad input is an ``InvalidInputError`` naming the field.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa

from app.domain import AgentWorkOrder, AgentWorkOrderStep, ConfiguredRepository
from app.domain.work_orders import GITHUB_URL_PATTERN, SANDBOX_TYPES, WORK_ORDER_STATUSES
from app.errors import InvalidInputError, NotFoundError, translate_errors
from app.repositories.base import SqlAlchemyRepository, T
from app.repositories.validation import check_json, entity_list

Rule = Callable[[str, Any], None]
_GITHUB_URL = re.compile(GITHUB_URL_PATTERN)


def one_of(allowed: Sequence[str]) -> Rule:
    """A rule: the value is one of ``allowed``."""

    def rule(label: str, value: Any) -> None:
        if value not in allowed:
            raise InvalidInputError(f"{label} must be one of {list(allowed)}, got {value!r}")

    return rule


def github_url(label: str, value: Any) -> None:
    """A rule: the value is a GitHub repository URL, https://github.com/<owner>/<name>."""
    if not isinstance(value, str) or not _GITHUB_URL.match(value):
        raise InvalidInputError(
            f"{label} must be a GitHub repository URL (https://github.com/<owner>/<name>), "
            f"got {value!r}"
        )


class _RuledRepository(SqlAlchemyRepository[T]):
    """A repository whose ``rules`` (by column name) hold for every value written."""

    rules: ClassVar[dict[str, Rule]] = {}

    def _check(self, values: Mapping[str, Any]) -> None:
        for name, rule in self.rules.items():
            attr = self.columns.attr_of[name]
            value = values.get(name, values.get(attr))
            if value is not None:
                rule(f"{self.table.name}.{name}", value)

    def _check_entities(self, entities: Iterable[T]) -> builtins.list[T]:
        items = entity_list(entities, self.model)
        for item in items:
            if isinstance(item, self.model):
                self._check(item.__dict__)
        return items

    async def add_many(self, entities: Iterable[T]) -> builtins.list[T]:
        """Insert all of ``entities`` or none, once every rule holds."""
        return await super().add_many(self._check_entities(entities))

    def _checked_update(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``update``, ``update_where`` and ``update_all`` values, once every rule holds."""
        if isinstance(values, Mapping):
            self._check(values)
        return super()._checked_update(values)

    async def _before_upsert(self, items: builtins.list[T]) -> None:
        """Every upserted entity, once every rule holds."""
        self._check_entities(items)


class SqlAlchemyConfiguredRepositoryRepository(_RuledRepository[ConfiguredRepository]):
    """``ConfiguredRepositoryRepository`` over SQLAlchemy."""

    model = ConfiguredRepository
    rules: ClassVar[dict[str, Rule]] = {
        "repository_url": github_url,
        "default_sandbox_type": one_of(SANDBOX_TYPES),
    }

    async def get_by_url(self, repository_url: str) -> ConfiguredRepository | None:
        """The repository configured for ``repository_url``, or None."""
        found = await self.list({"repository_url": repository_url}, limit=1)
        return found[0] if found else None


class SqlAlchemyAgentWorkOrderRepository(_RuledRepository[AgentWorkOrder]):
    """``AgentWorkOrderRepository`` over SQLAlchemy."""

    model = AgentWorkOrder
    rules: ClassVar[dict[str, Rule]] = {"status": one_of(WORK_ORDER_STATUSES)}

    async def list_by_status(self, status: str | None = None) -> builtins.list[AgentWorkOrder]:
        """Work orders (of one ``status``, if given), newest first, as Archon lists them."""
        if status is not None:
            self._check({"status": status})
        filters = None if status is None else {"status": status}
        return await self.list(filters, order_by=["-created_at"])

    async def set_status(self, work_order_id: str, status: str, **metadata: Any) -> AgentWorkOrder:
        """Set the status and merge ``metadata`` into the stored metadata; the row is locked
        while it is read, so concurrent merges do not lose each other's keys."""
        self._check({"status": status})
        changes = check_json("metadata", metadata)
        values: dict[str, Any] = {"status": status}
        if changes:
            stmt = (
                sa.select(self.table.c["metadata"])
                .where(self.columns.pk == self._pk_value(work_order_id))
                .with_for_update()
            )
            with translate_errors("locking the work order"):
                row = (await self.session.execute(stmt)).first()
            if row is None:
                raise NotFoundError(f"AgentWorkOrder {work_order_id!r} does not exist")
            values["metadata"] = {**(row[0] or {}), **changes}
        return await self.update(work_order_id, values)


class SqlAlchemyAgentWorkOrderStepRepository(SqlAlchemyRepository[AgentWorkOrderStep]):
    """``AgentWorkOrderStepRepository`` over SQLAlchemy."""

    model = AgentWorkOrderStep

    async def history(self, work_order_id: str) -> builtins.list[AgentWorkOrderStep]:
        """The steps of a work order in execution order."""
        return await self.list({"agent_work_order_id": work_order_id}, order_by=["step_order"])

    async def replace_history(
        self, work_order_id: str, steps: Iterable[AgentWorkOrderStep]
    ) -> builtins.list[AgentWorkOrderStep]:
        """Replace the work order's steps with ``steps``, numbered 0, 1, ... in the order
        given (``step_order``), all or nothing; returns them as stored."""
        items = list(steps)
        for order, step in enumerate(items):
            if isinstance(step, AgentWorkOrderStep):
                step.agent_work_order_id = work_order_id
                step.step_order = order
        self._validator.many(items)
        async with self._atomic("replacing the history of"):
            await self.delete_where({"agent_work_order_id": work_order_id})
            if items:
                await self.add_many(items)
        return items
