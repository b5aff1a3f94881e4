"""Principal: who a Unit of Work runs as, for PostgreSQL's row-level security.

``layer.uow(principal=Principal(role="authenticated", claims={"sub": user_id}))`` runs every
transaction of that Unit of Work as ``role`` with ``request.jwt.claims`` set to the claims, as
Supabase's PostgREST does, so policies written for Supabase (``auth.uid()``, ``auth.role()``,
``current_setting('request.jwt.claims', true)``) apply to the layer's own statements. Both are
set for the transaction only (``set_config(..., true)``, PostgreSQL's ``SET LOCAL``): a pooled
connection, or a server connection behind a transaction pooler, goes back as it came.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.errors import InvalidInputError

# A plain identifier: what Supabase's roles look like, and nothing a SET would read as a keyword
# or a list. Roles with other characters exist in PostgreSQL but have no business in a JWT.
_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash's "u0000"
_MAX_ROLE_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL would silently truncate a longer name
# Words SET ROLE gives a meaning of its own ("none" is the login role: running as it would
# bypass every policy), and PostgreSQL's predefined roles (pg_read_all_data...).
_RESERVED = frozenset({"none", "default", "public", "current_user", "session_user", "current_role"})


@dataclass(frozen=True)
class Principal:
    """A PostgreSQL role and the JWT claims its policies read.

    ``claims`` must be JSON (no NaN, keys strings); a ``role`` claim, when given, must be the
    role. The claims the database sees always carry the role, as Supabase's JWTs do.
    """

    role: str
    claims: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_role(self.role)
        text = _claims_json(self.role, self.claims)
        # A frozen copy: what the database is told cannot change after the check.
        object.__setattr__(self, "claims", MappingProxyType(json.loads(text)))
        object.__setattr__(self, "_json", text)

    @property
    def claims_json(self) -> str:
        """The claims as the database reads them from ``request.jwt.claims``."""
        text: str = self.__dict__["_json"]
        return text

    def __hash__(self) -> int:
        return hash((self.role, self.claims_json))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Principal):
            return NotImplemented
        return (self.role, self.claims_json) == (other.role, other.claims_json)


def _check_role(role: object) -> None:
    if not isinstance(role, str):
        raise InvalidInputError(f"Principal.role must be a string, not {type(role).__name__}")
    if (
        not _ROLE.fullmatch(role)
        or len(role.encode()) > _MAX_ROLE_BYTES
        or role.lower() in _RESERVED
        or role.lower().startswith("pg_")
    ):
        raise InvalidInputError(
            f"Principal.role {role[:80]!r} is not a role a Unit of Work can run as: use a plain "
            f"PostgreSQL role name (letters, digits, underscores, at most {_MAX_ROLE_BYTES} "
            "bytes, not a pg_ role nor none/default/public)"
        )


def _claims_json(role: str, claims: object) -> str:
    if not isinstance(claims, Mapping):
        raise InvalidInputError(
            f"Principal.claims must be a mapping of JSON values, not {type(claims).__name__}"
        )
    if "role" in claims and claims["role"] != role:
        raise InvalidInputError(
            f"Principal.claims['role'] is {claims['role']!r} but the role is {role!r}: "
            "leave the claim out or make it the role"
        )
    try:
        text = json.dumps(
            {"role": role, **claims}, allow_nan=False, ensure_ascii=False, sort_keys=True
        )
        # PostgreSQL's text holds no NUL and its JSON no lone surrogate: refused here, not by
        # the policy that would read them.
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"Principal.claims must be JSON-serializable: {exc}") from None
    if _NUL.search(text):
        raise InvalidInputError("Principal.claims must not contain NUL characters (\\u0000)")
    return text


__all__ = ["Principal"]
