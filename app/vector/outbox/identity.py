"""The database's identity, made with its schema: what an external store's collections are named by.

Migration ``0004`` stores a UUID in ``archon_database_identity``. A store's collections carry the
first 16 hex digits of it (``namespace``), so a store left by another database, or by an earlier
life of this one (the file deleted, ``downgrade base``), is never read as this one's. The same row
says whether an external store is fed from this database (``external_store``): while it is, the
database's triggers queue a ``delete`` in the outbox for every chunk row deleted.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from app.errors import DataLayerError, translate_errors

IDENTITY_TABLE = "archon_database_identity"
identity_table = sa.Table(
    IDENTITY_TABLE,
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("identity", sa.String(36), nullable=False),
    sa.Column("external_store", sa.String(32)),
)


def namespace_of(identity: str) -> str:
    """What a store's collection names carry of the identity: ``d`` and 15 hex digits (never
    all digits, so a name cannot be mistaken for an older version's ``..._<dimension>``)."""
    return "d" + uuid.UUID(identity).hex[:15]


async def read_identity(executor: Any) -> tuple[str, str | None]:
    """(identity, external store fed) of this database; a clear error when not migrated."""
    query = sa.select(identity_table.c.identity, identity_table.c.external_store).where(
        identity_table.c.id == 1
    )
    try:
        with translate_errors("reading the database identity"):
            row = (await executor.execute(query)).first()
    except DataLayerError as exc:
        raise DataLayerError(
            f"this database has no identity table ({IDENTITY_TABLE}): run `archon-db migrate "
            "upgrade` (the vector stores are named by it)"
        ) from exc
    if row is None:
        raise DataLayerError(
            f"{IDENTITY_TABLE} is empty: run `archon-db migrate downgrade 0003_vector_outbox` "
            "then `archon-db migrate upgrade` to give this database an identity"
        )
    return str(row[0]), row[1]


async def set_external_store(executor: Any, name: str | None) -> bool:
    """Record which external store is fed from this database; whether that changed anything."""
    column = identity_table.c.external_store
    changed: Any
    if name is None:
        changed = column.is_not(None)
    else:
        changed = sa.or_(column.is_(None), column != name)
    statement = identity_table.update().where(identity_table.c.id == 1, changed)
    with translate_errors("recording the external vector store"):
        result = await executor.execute(statement.values(external_store=name))
    return bool(getattr(result, "rowcount", 0))


async def renew_identity(executor: Any) -> str:
    """Give this database a new identity (a copy of another database shares the original's);
    its store's collections are then new ones, to be rebuilt."""
    identity = str(uuid.uuid4())
    statement = identity_table.update().where(identity_table.c.id == 1)
    with translate_errors("renewing the database identity"):
        await executor.execute(statement.values(identity=identity, external_store=None))
    return identity
