"""Running a Unit of Work's transactions as a ``Principal`` (see ``app.security``).

When the session begins a transaction on a connection, before its first statement, one
statement sets the role and the claims for that transaction only::

    SELECT set_config('role', :role, true),
           set_config('request.jwt.claims', :claims, true),
           set_config('request.jwt.claim.role', :role, true)

``set_config(name, value, true)`` is PostgreSQL's ``SET LOCAL`` as a function: ``role`` is the
setting ``SET LOCAL ROLE`` changes (the server checks the login role may become it), and the
values are bound parameters, so a role name never becomes SQL text. This is what Supabase's
PostgREST sends; ``request.jwt.claim.role`` is what older Supabase policies read. At COMMIT or
ROLLBACK the server restores all three, so the connection goes back to the pool, or the server
connection back to a transaction pooler, as the login role with no claims: nothing reaches the
next transaction, whoever runs it. A Unit of Work that goes on after ``commit()`` or
``rollback()`` begins its next transaction the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import UnsupportedFeatureError

if TYPE_CHECKING:
    from app.security import Principal

_RUN_AS = sa.text(
    "SELECT set_config('role', :role, true), set_config('request.jwt.claims', :claims, true), "
    "set_config('request.jwt.claim.role', :role, true)"
)


def run_as(session: AsyncSession, principal: Principal) -> None:
    """Make every transaction ``session`` begins run as ``principal``."""
    params = {"role": principal.role, "claims": principal.claims_json}

    def begun(_session: Any, _transaction: Any, connection: Any) -> None:
        connection.execute(_RUN_AS, params)

    event.listen(session.sync_session, "after_begin", begun)


_NAMES = {"mysql": "MySQL/MariaDB", "sqlite": "SQLite"}


def check_row_level_security(backend: str, dialect: str) -> None:
    """UnsupportedFeatureError unless ``dialect`` has roles and row-level security."""
    if dialect != "postgresql":
        raise UnsupportedFeatureError(
            f"layer.uow(principal=...) needs PostgreSQL's roles and row-level security; the "
            f"{backend} backend ({_NAMES.get(dialect, dialect)}) has no row-level security: "
            "enforce access in the service, or open the Unit of Work without a principal"
        )
