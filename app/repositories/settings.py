"""Configuration repositories: settings (with encrypted credentials), prompts, applied upgrades."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.crypto import CredentialCipher
from app.domain import MigrationRecord, Prompt, Setting
from app.domain.types import utcnow
from app.errors import InvalidInputError, translate_errors
from app.repositories.base import SqlAlchemyRepository

_ALWAYS_WRITTEN = ["value", "encrypted_value", "is_encrypted", "updated_at"]


class SqlAlchemySettingRepository(SqlAlchemyRepository[Setting]):
    """``SettingRepository`` over SQLAlchemy; ``cipher`` opens and seals credentials."""

    model = Setting

    def __init__(self, session: AsyncSession, cipher: CredentialCipher) -> None:
        super().__init__(session)
        self.cipher = cipher

    async def get_value(self, key: str) -> str | None:
        """The value of ``key``, decrypted when the row is encrypted; None when absent."""
        setting = await self._by_key(key)
        return None if setting is None else self._plain(setting)

    async def set_value(
        self,
        key: str,
        value: str,
        *,
        encrypt: bool = False,
        category: str | None = None,
        description: str | None = None,
    ) -> Setting:
        """Insert or replace ``key`` (one native upsert); returns the stored row."""
        if not isinstance(value, str):
            raise InvalidInputError(f"setting {key!r} takes a string value")
        if not isinstance(encrypt, bool):
            raise InvalidInputError("encrypt must be true or false")
        now = utcnow()
        row = Setting(
            key=key,
            value=None if encrypt else value,
            encrypted_value=self.cipher.encrypt(value) if encrypt else None,
            is_encrypted=encrypt,
            category=category,
            description=description,
            created_at=now,
            updated_at=now,
        )
        # A category or description not given keeps the one the row has.
        given = [
            n for n, v in (("category", category), ("description", description)) if v is not None
        ]
        await self.upsert_many([row], on=["key"], update=_ALWAYS_WRITTEN + given)
        stored = await self._by_key(key)
        assert stored is not None  # just written in this transaction
        return stored

    async def get_by_category(self, category: str) -> dict[str, str | None]:
        """Every setting of ``category`` as key -> value, decrypted."""
        rows = await self._fresh({"category": category})
        return {setting.key: self._plain(setting) for setting in rows}

    async def _by_key(self, key: str) -> Setting | None:
        rows = await self._fresh({"key": key})
        return rows[0] if rows else None

    async def _fresh(self, filters: dict[str, Any]) -> builtins.list[Setting]:
        # populate_existing: an upsert may have changed rows this session loaded earlier.
        stmt = self._select(filters).order_by(*self._order(["key"]))
        with translate_errors("loading settings"):
            found = await self.session.scalars(stmt.execution_options(populate_existing=True))
            return list(found)

    def _plain(self, setting: Setting) -> str | None:
        if not setting.is_encrypted:
            return setting.value
        if setting.encrypted_value is None:
            return None
        return self.cipher.decrypt(setting.encrypted_value, name=f"setting {setting.key!r}")


class SqlAlchemyPromptRepository(SqlAlchemyRepository[Prompt]):
    """``PromptRepository`` over SQLAlchemy."""

    model = Prompt

    async def get_by_name(self, name: str) -> Prompt | None:
        """The prompt called ``name``, or None."""
        found = await self.list({"prompt_name": name}, limit=1)
        return found[0] if found else None


class SqlAlchemyMigrationRecordRepository(SqlAlchemyRepository[MigrationRecord]):
    """``MigrationRecordRepository`` over SQLAlchemy."""

    model = MigrationRecord

    async def applied(self) -> builtins.list[MigrationRecord]:
        """Every recorded upgrade, most recently applied first (as Archon lists them)."""
        return await self.list(order_by=["-applied_at"])

    async def pending(self, available: Iterable[tuple[str, str]]) -> builtins.list[tuple[str, str]]:
        """Which ``(version, migration_name)`` of ``available`` have no row, in the order given.

        Archon's rule for its migration page: a script is pending unless a row names its version
        and file name; checksums are not compared.
        """
        wanted = [_migration_key(item) for item in available]
        if not wanted:
            return []
        versions = sorted({version for version, _ in wanted})
        rows = await self.list({"version": {"in": versions}})
        recorded = {(row.version, row.migration_name) for row in rows}
        return [key for key in wanted if key not in recorded]

    async def record(self, version: str, migration_name: str, checksum: str | None = None) -> bool:
        """Record an upgrade as applied unless it is already; whether a row was added."""
        key = _migration_key((version, migration_name))
        row = MigrationRecord(version=key[0], migration_name=key[1], checksum=checksum)
        # An empty update list: a row already there is kept as it is. Ids are made here, so the
        # stored row's id says whose row it is, even when another writer raced this one.
        await self.upsert_many([row], on=["version", "migration_name"], update=[])
        c = self.table.c
        stmt = sa.select(c.id).where(c.version == key[0], c.migration_name == key[1])
        with translate_errors("reading the migration record"):
            stored = (await self.session.execute(stmt)).scalar_one()
        return bool(stored == row.id)


def _migration_key(item: Any) -> tuple[str, str]:
    if (
        not isinstance(item, tuple)
        or len(item) != 2
        or not all(isinstance(part, str) and part for part in item)
    ):
        raise InvalidInputError(
            f"a migration is a (version, migration_name) pair of non-empty strings, got {item!r}"
        )
    return item
