"""Schema migrations, programmatically: Alembic driven through the caller's ``AsyncEngine``.

Every function opens one connection with ``engine.begin()`` and hands its synchronous face to
Alembic (``connection.run_sync``, the connection passed in ``Config.attributes``), so a migration
runs in the caller's event loop and, where the dialect allows transactional DDL, in one
transaction. Alembic's and the drivers' errors come out as ``app.errors`` exceptions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import alembic.command as command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain import metadata
from app.errors import (
    DataLayerError,
    InvalidInputError,
    UnsupportedFeatureError,
    translate_errors,
)
from app.migrations.adopt import inspect_archon_schema
from app.migrations.autogen import include_name, include_object
from app.migrations.describe import describe_diffs
from app.migrations.legacy_embedding import move_legacy_embeddings
from app.migrations.report import AdoptReport, Finding, Severity

BASELINE_REVISION = "0001_archon_baseline"
T = TypeVar("T")

__all__ = [
    "BASELINE_REVISION",
    "AdoptReport",
    "Finding",
    "Severity",
    "adopt",
    "alembic_config",
    "check",
    "current",
    "downgrade",
    "head",
    "script_location",
    "stamp",
    "upgrade",
]


def script_location() -> Path:
    """The ``alembic/`` directory at the repository root (the parent of the ``app`` package)."""
    location = Path(__file__).resolve().parents[2] / "alembic"
    if not (location / "env.py").is_file():
        raise DataLayerError(
            f"the migration scripts are missing: expected {location.name}/env.py next to the "
            "app package; install from a source checkout or copy the alembic directory there"
        )
    return location


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` built in code: no ini file, no dependence on the working directory."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision of the history."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return ",".join(sorted(heads))


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply every revision up to ``revision`` (``alembic upgrade``)."""
    await _run(engine, f"upgrade to {revision}", lambda c: command.upgrade(_config(c), revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Revert revisions down to ``revision``; ``"base"`` removes everything the history made."""
    await _run(
        engine, f"downgrade to {revision}", lambda c: command.downgrade(_config(c), revision)
    )


async def stamp(engine: AsyncEngine, revision: str) -> None:
    """Record ``revision`` as applied without running anything (``alembic stamp``)."""
    await _run(engine, f"stamp {revision}", lambda c: command.stamp(_config(c), revision))


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision, ``None`` when it has none (comma-joined if several heads)."""
    return await _run(engine, "reading the revision", _current_revision)


async def check(engine: AsyncEngine) -> list[str]:
    """The differences autogenerate finds between the models and the database; empty when none."""
    return await _run(engine, "comparing the schema", _compare)


async def adopt(engine: AsyncEngine, *, apply: bool) -> AdoptReport:
    """Compare an existing Archon database with the schema the layer needs; stamp it if it fits.

    Required (blockers): every table, column (with a type of the same kind), primary key, unique
    constraint, foreign key (columns and target) and enum label the models declare. Tolerated
    (warnings): ON DELETE rules (beta databases lack CASCADE), nullability, widths within a kind
    of type, missing ``embedding_<dim>`` / ``content_search_vector`` columns, the beta
    ``embedding`` column, check constraints, extra enum labels. Notes: constraint names, indexes,
    extra columns, Archon's SQL functions. Details in ``app.migrations.adopt``.

    With ``apply=True``, when there is no blocker and the database has no Alembic revision yet,
    Archon's upgrade 004 is performed where it is pending (the beta ``embedding`` column's vectors
    move to ``embedding_1536``, ``app.migrations.legacy_embedding``) and the baseline revision is
    stamped; nothing else is ever changed. PostgreSQL only.
    """
    if engine.dialect.name != "postgresql":
        raise UnsupportedFeatureError(
            "adopt inspects PostgreSQL / Supabase databases set up by Archon's SQL scripts; "
            f"a {engine.dialect.name} database is built with `archon-db migrate upgrade`"
        )

    def _adopt(connection: Connection) -> AdoptReport:
        report = inspect_archon_schema(connection)
        report.revision = _current_revision(connection)
        if report.revision is not None:
            report.findings.append(
                Finding(
                    Severity.NOTE,
                    "alembic_version",
                    f"already managed by Alembic at {report.revision}; nothing to stamp",
                )
            )
        elif apply and report.adoptable:
            report.findings += move_legacy_embeddings(connection)
            command.stamp(_config(connection), BASELINE_REVISION)
            report.stamped = True
        return report

    return await _run(engine, "adopting the database", _adopt)


# -- internals ---------------------------------------------------------------------------------


def _config(connection: Connection) -> Config:
    return alembic_config(connection)


def _current_revision(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) if heads else None


def _compare(connection: Connection) -> list[str]:
    context = MigrationContext.configure(
        connection,
        opts={
            "target_metadata": metadata,
            "include_object": include_object,
            "include_name": include_name,
            "compare_type": True,
        },
    )
    with warnings.catch_warnings():
        # Reflection warns about types it cannot map (vector, tsvector) before the filter runs.
        warnings.filterwarnings("ignore", "Did not recognize type", sa_exc.SAWarning)
        return describe_diffs(compare_metadata(context, metadata))


async def _run(engine: AsyncEngine, action: str, work: Callable[[Connection], T]) -> T:
    with _translated(action):
        async with engine.begin() as connection:
            return await connection.run_sync(work)


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        with translate_errors(action):
            yield
    except (CommandError, RevisionError) as exc:
        raise InvalidInputError(f"{action} failed: {exc}") from exc
    except sa_exc.ArgumentError as exc:
        raise InvalidInputError(f"{action} failed: {exc}") from exc
