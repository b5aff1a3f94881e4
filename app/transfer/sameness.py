"""Whether a copy's source and target are one database, however their URLs are spelt.

Equal URLs are not enough: a SQLite file named by a relative and by an absolute path, or a
server reached as ``localhost`` and as ``127.0.0.1``, is one database under two URLs. Copying
it onto itself with ``resume`` would first empty its setup tables (the source's own settings),
so the copy compares what identifies the database itself: the SQLite file's real path, and the
identity every migrated Archon server database holds (``archon_database_identity``). A server
database made by cloning another (a dump restored) shares that identity too; copying into it is
refused as well.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import sqlite_file
from app.errors import DataLayerError
from app.vector.outbox.identity import read_identity


def _file(layer: Any) -> str | None:
    path = sqlite_file(str(layer.engine.url))
    return os.path.realpath(path) if path is not None else None


async def _identity(layer: Any) -> str | None:
    """The database's identity; None where it has none (not migrated, an older generation)."""
    path = _file(layer)
    if path is not None and not os.path.exists(path):
        return None  # reading it would create the file
    try:
        async with AsyncSession(layer.engine) as session:
            identity, _store = await read_identity(session)
    except DataLayerError:
        return None
    return identity


async def same_database(source: Any, target: Any) -> bool:
    """Whether ``source`` and ``target`` (data layers) reach one database (see module)."""
    if source.engine.url == target.engine.url:
        return True
    source_file, target_file = _file(source), _file(target)
    if source_file is not None or target_file is not None:
        return source_file == target_file
    if source.engine.dialect.name != target.engine.dialect.name:
        return False
    identity = await _identity(source)
    return identity is not None and identity == await _identity(target)
