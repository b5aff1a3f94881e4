"""Agent work order entities: configured repositories, work orders and their step history.

The tables of Archon's agent work orders service (its ``agent_work_orders_state.sql`` and
``agent_work_orders_repositories.sql``): TEXT columns with CHECK constraints rather than enum
types, a TEXT work order id the service generates, steps cascading with their work order.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from app.domain.base import ArchonModel
from app.domain.types import (
    MYSQL_TABLE_OPTIONS,
    JSONType,
    LongText,
    TZDateTime,
    keyed_text,
    mysql_prefix,
    new_dict,
    new_uuid,
    utcnow,
)

# The values Archon's CHECK constraints allow (the layer checks them before any SQL too).
WORK_ORDER_STATUSES = ("pending", "running", "completed", "failed")
SANDBOX_TYPES = ("git_worktree", "full_clone", "tmp_dir")
DEFAULT_COMMANDS = ("create-branch", "planning", "execute", "commit", "create-pr")
# Archon's PostgreSQL CHECK on configured repository URLs (PostgreSQL regex syntax).
GITHUB_URL_PATTERN = r"^https://github\.com/[a-zA-Z0-9_-]+/[a-zA-Z0-9_.-]+/?$"


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=column)


def _default_commands() -> list[Any]:
    """A new list of the default workflow commands (a default factory)."""
    return list(DEFAULT_COMMANDS)


def _timestamp() -> Any:
    return Field(default_factory=utcnow, sa_type=TZDateTime)


class ConfiguredRepository(ArchonModel, table=True):
    """A GitHub repository set up for agent work orders (``archon_configured_repositories``)."""

    __tablename__ = "archon_configured_repositories"
    __table_args__ = (
        sa.UniqueConstraint("repository_url"),
        _one_of("default_sandbox_type", SANDBOX_TYPES),
        sa.Index("idx_configured_repositories_verified", "is_verified"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = Field(default_factory=new_uuid, sa_column=sa.Column(sa.Uuid, primary_key=True))
    repository_url: str = Field(sa_column=sa.Column(keyed_text(700), nullable=False))
    display_name: str | None = Field(default=None, sa_type=LongText)
    owner: str | None = Field(default=None, sa_type=LongText)
    default_branch: str | None = Field(default=None, sa_type=LongText)
    is_verified: bool | None = Field(default=False)
    last_verified_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    default_sandbox_type: str | None = Field(default="git_worktree", sa_type=LongText)
    default_commands: list[Any] | None = Field(default_factory=_default_commands, sa_type=JSONType)
    created_at: datetime | None = _timestamp()
    updated_at: datetime | None = _timestamp()


class AgentWorkOrder(ArchonModel, table=True):
    """One work order's state (``archon_agent_work_orders``); rarely queried fields in metadata."""

    __tablename__ = "archon_agent_work_orders"
    __table_args__ = (
        _one_of("status", WORK_ORDER_STATUSES),
        sa.Index("idx_agent_work_orders_status", "status"),
        sa.Index(
            "idx_agent_work_orders_repository", "repository_url", **mysql_prefix("repository_url")
        ),
        MYSQL_TABLE_OPTIONS,
    )

    # TEXT, not a UUID: the work order service generates ids such as "wo-1a2b3c4d".
    agent_work_order_id: str = Field(
        sa_column=sa.Column(keyed_text(255), primary_key=True, autoincrement=False)
    )
    repository_url: str = Field(sa_column=sa.Column(LongText, nullable=False))
    sandbox_identifier: str = Field(sa_column=sa.Column(LongText, nullable=False))
    git_branch_name: str | None = Field(default=None, sa_type=LongText)
    agent_session_id: str | None = Field(default=None, sa_type=LongText)
    status: str = Field(sa_column=sa.Column(keyed_text(32), nullable=False))
    metadata_: dict[str, Any] | None = Field(
        default_factory=new_dict, sa_column=sa.Column("metadata", JSONType)
    )
    created_at: datetime | None = _timestamp()
    updated_at: datetime | None = _timestamp()


class AgentWorkOrderStep(ArchonModel, table=True):
    """One executed workflow step of a work order (``archon_agent_work_order_steps``)."""

    __tablename__ = "archon_agent_work_order_steps"
    __table_args__ = (
        sa.Index("idx_agent_work_order_steps_work_order_id", "agent_work_order_id"),
        sa.Index("idx_agent_work_order_steps_executed_at", "executed_at"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = Field(default_factory=new_uuid, sa_column=sa.Column(sa.Uuid, primary_key=True))
    agent_work_order_id: str = Field(
        sa_column=sa.Column(
            keyed_text(255),
            sa.ForeignKey("archon_agent_work_orders.agent_work_order_id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    step: str = Field(sa_column=sa.Column(LongText, nullable=False))
    agent_name: str = Field(sa_column=sa.Column(LongText, nullable=False))
    success: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    output: str | None = Field(default=None, sa_type=LongText)
    error_message: str | None = Field(default=None, sa_type=LongText)
    duration_seconds: float = Field(sa_column=sa.Column(sa.Double, nullable=False))
    session_id: str | None = Field(default=None, sa_type=LongText)
    executed_at: datetime = Field(sa_column=sa.Column(TZDateTime, nullable=False))
    step_order: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))


# Archon's indexes run newest first; declared here because they need the mapped columns.
for _model, _name in (
    (ConfiguredRepository, "idx_configured_repositories_created_at"),
    (AgentWorkOrder, "idx_agent_work_orders_created_at"),
):
    sa.Index(_name, sa.inspect(_model).local_table.c.created_at.desc())
