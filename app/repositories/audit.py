"""The audit log's writer: what each write of a Unit of Work did, stored with its commit.

With ``ENABLE_AUDIT_LOG`` the Unit of Work puts an ``AuditRecorder`` in its session's ``info``;
every write path (the repositories, ingest, the SQL vector index bound to the Unit of Work) calls
``record`` once per call after the write succeeded. Entries are kept in memory and inserted by
``write_entries`` just before COMMIT, in the same transaction: a rolled-back Unit of Work (or
savepoint) leaves none, and a Unit of Work that wrote nothing sends no audit statement.

One entry per write call, not per row: a bulk write of 500 chunks is one row of the log naming
their 500 ids (``entity_ids``; a call of more than ``IDS_PER_ENTRY`` rows takes several entries,
so that no statement outgrows MySQL's packet), and the commit sends one INSERT per 20 entries.
Only column names are stored, never a value (a secret or an encrypted field is
therefore never copied into the log); ids are primary keys, or, for an upsert that matches on
another unique key, the values of that key (``key=OPENAI_API_KEY``): row identities, no content.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.audit import AuditEntry
from app.domain.types import utcnow
from app.errors import InvalidInputError
from app.repositories import driver

AUDIT = "archon_audit"  # the key of a session's AuditRecorder in ``session.info``
DEFAULT_ACTOR = "system"
IDS_PER_ENTRY = 1000
_ROWS_PER_STATEMENT = 20
_TABLE: sa.Table = AuditEntry.__table__  # type: ignore[assignment]
_COLUMNS = tuple(c.name for c in _TABLE.columns if c.name != "id")


def check_actor(actor: str | None) -> str:
    """The actor to record (``system`` when none is given); InvalidInputError naming ``actor``."""
    if actor is None:
        return DEFAULT_ACTOR
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 255 or "\x00" in actor:
        raise InvalidInputError(
            f"actor must be a non-empty string of at most 255 characters without NUL, "
            f"got {actor!r:.80}"
        )
    return actor


@dataclass
class AuditRecorder:
    """The entries of one Unit of Work not yet written (``unit_id`` is given at each commit)."""

    actor: str
    entries: list[dict[str, Any]] = field(default_factory=list)


def recorder_of(session: Any) -> AuditRecorder | None:
    """The session's recorder, ``None`` when its writes are not audited."""
    found: AuditRecorder | None = session.info.get(AUDIT)
    return found


def record(
    session: Any,
    entity: str,
    operation: str,
    ids: Iterable[Any] | None = None,
    *,
    count: int | None = None,
    fields: Iterable[str] = (),
) -> None:
    """Note one write of ``entity`` (a table) by this session, if its writes are audited.

    ``ids``: the keys of the rows written, when known; ``count``: how many rows (default: as
    many as ``ids``); ``fields``: the names of the columns written (names only, never values).
    """
    recorder: AuditRecorder | None = session.info.get(AUDIT)
    if recorder is None:
        return
    names, now = sorted(set(fields)), utcnow()
    keys = None if ids is None else [str(key) for key in ids]
    parts = [keys] if keys is None or len(keys) <= IDS_PER_ENTRY else [
        keys[start : start + IDS_PER_ENTRY] for start in range(0, len(keys), IDS_PER_ENTRY)
    ]  # fmt: skip
    for part in parts:
        recorder.entries.append(
            {
                "occurred_at": now,
                "actor": recorder.actor,
                "entity": entity,
                "operation": operation,
                "entity_id": part[0] if part is not None and len(part) == 1 else None,
                "entity_ids": part,
                "row_count": len(part or ()) if count is None or len(parts) > 1 else count,
                "fields": names,
            }
        )


def given_fields(attr_of: dict[str, str] | Any, entities: Sequence[Any]) -> set[str]:
    """The columns that ``entities`` give a value (not None): what their inserts write."""
    names: set[str] = set()
    for entity in entities:
        state = entity.__dict__
        names.update(name for name, attr in attr_of.items() if state.get(attr) is not None)
    return names


def natural_key(on: Sequence[str], values: Sequence[Any]) -> str:
    """An upserted row's identity by the unique key it matched on: ``url=..., chunk_number=3``."""
    return ", ".join(f"{name}={value}" for name, value in zip(on, values, strict=True))


def mark(session: Any) -> int | None:
    """Where the entries stand now (for ``forget_since`` when a savepoint rolls back)."""
    recorder = recorder_of(session)
    return None if recorder is None else len(recorder.entries)


def forget_since(session: Any, at: int | None) -> None:
    """Drop the entries recorded since ``mark`` gave ``at``: their writes were rolled back."""
    recorder = recorder_of(session)
    if recorder is not None and at is not None:
        del recorder.entries[at:]


def forget(session: Any) -> None:
    """Drop every entry not yet written (the transaction rolled back)."""
    recorder = recorder_of(session)
    if recorder is not None:
        recorder.entries.clear()


async def write_entries(session: AsyncSession) -> None:
    """Insert the entries recorded so far, in the session's transaction (call before COMMIT);
    one ``unit_id`` groups the entries of this commit."""
    recorder = recorder_of(session)
    if recorder is None or not recorder.entries:
        return
    entries, recorder.entries = recorder.entries, []
    unit_id = str(uuid.uuid4())
    for entry in entries:
        entry["unit_id"] = unit_id
    run = driver.runner(session)
    for start in range(0, len(entries), _ROWS_PER_STATEMENT):
        chunk = entries[start : start + _ROWS_PER_STATEMENT]
        if run is not None:
            params = {f"{name}_{i}": row[name] for i, row in enumerate(chunk) for name in _COLUMNS}
            if await run.execute(_insert(len(chunk)), params, fixed=True) is not None:
                continue
        await session.execute(sa.insert(_TABLE), chunk)


@cache
def _insert(rows: int) -> Any:
    """INSERT of ``rows`` entries, every value a bound parameter ``<column>_<row>`` (built once)."""
    return sa.insert(_TABLE).values(
        [
            {name: sa.bindparam(f"{name}_{i}", type_=_TABLE.c[name].type) for name in _COLUMNS}
            for i in range(rows)
        ]
    )
