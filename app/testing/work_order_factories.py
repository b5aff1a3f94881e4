"""factory-boy factories for Archon's upgrade records and the agent work order entities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import factory

from app.domain import AgentWorkOrder, AgentWorkOrderStep, ConfiguredRepository, MigrationRecord
from app.domain.work_orders import DEFAULT_COMMANDS, WORK_ORDER_STATUSES

_STARTED = datetime(2025, 1, 1, tzinfo=UTC)


def _work_order_id(parent: Any) -> Any:
    return parent.agent_work_order_id if parent is not None else None


class MigrationRecordFactory(factory.Factory):
    class Meta:
        model = MigrationRecord

    version = "0.2.0"
    migration_name = factory.Sequence(lambda n: f"{n + 1:03d}_upgrade")


class ConfiguredRepositoryFactory(factory.Factory):
    class Meta:
        model = ConfiguredRepository

    owner = factory.Sequence(lambda n: f"owner{n}")
    display_name = factory.LazyAttribute(lambda o: f"{o.owner}/service")
    repository_url = factory.LazyAttribute(lambda o: f"https://github.com/{o.display_name}")
    default_branch = "main"
    is_verified = False
    default_sandbox_type = "git_worktree"
    default_commands = factory.LazyFunction(lambda: list(DEFAULT_COMMANDS))


class AgentWorkOrderFactory(factory.Factory):
    class Meta:
        model = AgentWorkOrder

    agent_work_order_id = factory.Sequence(lambda n: f"wo-{n:08x}")
    repository_url = factory.Sequence(lambda n: f"https://github.com/owner{n}/service")
    sandbox_identifier = factory.LazyAttribute(lambda o: f"sandbox-{o.agent_work_order_id}")
    status = factory.Iterator(WORK_ORDER_STATUSES)
    metadata_ = factory.LazyFunction(
        lambda: {"sandbox_type": "git_worktree", "user_request": "Add a health check endpoint"}
    )


class AgentWorkOrderStepFactory(factory.Factory):
    """Needs a work order (``work_order=`` or ``agent_work_order_id=``)."""

    class Meta:
        model = AgentWorkOrderStep

    class Params:
        work_order = None

    agent_work_order_id = factory.LazyAttribute(lambda o: _work_order_id(o.work_order))
    step = factory.Iterator(DEFAULT_COMMANDS)
    agent_name = "claude"
    success = True
    output = factory.Faker("sentence")
    duration_seconds = factory.Faker("pyfloat", min_value=0.1, max_value=120)
    session_id = factory.Faker("uuid4")
    step_order = factory.Sequence(lambda n: n)
    executed_at = factory.Sequence(lambda n: _STARTED + timedelta(seconds=n))
