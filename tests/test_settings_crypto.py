"""Credential encryption: byte-compatible with Archon, key rotation, and the settings repository."""

from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from app.archon_defaults import ARCHON_SETTINGS
from app.config import Settings
from app.crypto import CredentialCipher, derive_key
from app.errors import DataLayerError
from app.repositories import SqlAlchemySettingRepository

SERVICE_KEY = "eyJhbGciOiJIUzI1NiJ9.service-role-key-for-tests"
OWN_PASSPHRASE = "operators-own-passphrase"


# The reference: Archon's credential_service, written out independently of app.crypto.
def archon_key(password: str) -> bytes:
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"static_salt_for_credentials",
        iterations=100000,
    )
    return base64.urlsafe_b64encode(kdf.derive(password.encode()))


def archon_encrypt(plaintext: str, password: str) -> str:
    token = Fernet(archon_key(password)).encrypt(plaintext.encode("utf-8"))
    return base64.urlsafe_b64encode(token).decode("utf-8")


def archon_decrypt(stored: str, password: str) -> str:
    token = base64.urlsafe_b64decode(stored.encode("utf-8"))
    return Fernet(archon_key(password)).decrypt(token).decode("utf-8")


def settings(**kwargs: str) -> Settings:
    return Settings(database_url="sqlite+aiosqlite:///unused.db", **kwargs)


class TestCipher:
    def test_reads_what_archon_wrote_with_the_service_key(self) -> None:
        stored = archon_encrypt("sk-live-123", SERVICE_KEY)
        cipher = CredentialCipher.from_settings(settings(supabase_service_key=SERVICE_KEY))
        assert cipher.decrypt(stored) == "sk-live-123"

    def test_archon_reads_what_it_writes(self) -> None:
        cipher = CredentialCipher.from_settings(settings(supabase_service_key=SERVICE_KEY))
        stored = cipher.encrypt("sk-ünï-😀")
        assert archon_decrypt(stored, SERVICE_KEY) == "sk-ünï-😀"

    def test_default_is_archons_development_fallback(self) -> None:
        stored = archon_encrypt("dev-secret", "default-key-for-development")
        assert CredentialCipher.default().decrypt(stored) == "dev-secret"
        assert CredentialCipher.from_settings(settings()).decrypt(stored) == "dev-secret"
        ours = CredentialCipher.default().encrypt("x")
        assert archon_decrypt(ours, "default-key-for-development") == "x"

    def test_own_key_encrypts_new_values_and_archon_values_stay_readable(self) -> None:
        cipher = CredentialCipher.from_settings(
            settings(supabase_service_key=SERVICE_KEY, credentials_key=OWN_PASSPHRASE)
        )
        stored = cipher.encrypt("new-secret")
        assert archon_decrypt(stored, OWN_PASSPHRASE) == "new-secret"
        with pytest.raises(InvalidToken):
            archon_decrypt(stored, SERVICE_KEY)
        assert cipher.decrypt(archon_encrypt("old-secret", SERVICE_KEY)) == "old-secret"

    def test_own_key_without_service_key_still_reads_development_values(self) -> None:
        cipher = CredentialCipher.from_settings(settings(credentials_key=OWN_PASSPHRASE))
        old = archon_encrypt("old", "default-key-for-development")
        assert cipher.decrypt(old) == "old"

    def test_wrong_key_names_the_setting_and_hides_secrets(self) -> None:
        stored = archon_encrypt("the-plaintext", SERVICE_KEY)
        with pytest.raises(DataLayerError) as info:
            CredentialCipher.default().decrypt(stored, name="setting 'OPENAI_API_KEY'")
        message = str(info.value)
        assert "OPENAI_API_KEY" in message and "key is wrong" in message
        for secret in ("the-plaintext", SERVICE_KEY, "default-key-for-development", stored):
            assert secret not in message

    def test_corrupt_value_is_a_data_layer_error(self) -> None:
        with pytest.raises(DataLayerError):
            CredentialCipher.default().decrypt("not base64 at all !!")

    def test_empty_value_passes_through_as_archon_stores_it(self) -> None:
        assert CredentialCipher.default().decrypt("") == ""

    def test_repr_shows_no_secret(self) -> None:
        cipher = CredentialCipher.from_settings(
            settings(supabase_service_key=SERVICE_KEY, credentials_key=OWN_PASSPHRASE)
        )
        assert SERVICE_KEY not in repr(cipher) and OWN_PASSPHRASE not in repr(cipher)

    def test_derived_keys_are_cached(self) -> None:
        derive_key(SERVICE_KEY)
        hits = derive_key.cache_info().hits
        CredentialCipher.from_settings(settings(supabase_service_key=SERVICE_KEY)).encrypt("a")
        assert derive_key.cache_info().hits > hits
        assert derive_key(SERVICE_KEY) == archon_key(SERVICE_KEY)


async def raw_row(layer, key: str) -> sa.Row:  # type: ignore[no-untyped-def]
    sql = (
        "SELECT value, encrypted_value, is_encrypted, category, description "
        f"FROM archon_settings WHERE {_quoted_key(layer)} = :key"
    )
    async with layer.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), {"key": key})).one()


class TestSettingRepository:
    """Contract tests of ``uow.settings`` on every backend, checked with plain SQL."""

    async def test_plain_value_round_trip(self, layer) -> None:  # type: ignore[no-untyped-def]
        async with layer.uow() as uow:
            setting = await uow.settings.set_value(
                "MODEL_CHOICE", "gpt-4.1", category="rag_strategy", description="chat model"
            )
            assert setting.value == "gpt-4.1" and not setting.is_encrypted
            await uow.commit()
        row = await raw_row(layer, "MODEL_CHOICE")
        assert (row.value, row.encrypted_value, bool(row.is_encrypted)) == ("gpt-4.1", None, False)
        assert (row.category, row.description) == ("rag_strategy", "chat model")
        async with layer.uow(read_only=True) as uow:
            assert await uow.settings.get_value("MODEL_CHOICE") == "gpt-4.1"
            assert await uow.settings.get_value("MISSING") is None

    async def test_encrypted_value_is_stored_in_archons_format(self, layer) -> None:  # type: ignore[no-untyped-def]
        cipher = CredentialCipher.from_settings(settings(supabase_service_key=SERVICE_KEY))
        async with layer.uow() as uow:
            repo = SqlAlchemySettingRepository(uow.session, cipher)
            await repo.set_value("OPENAI_API_KEY", "sk-abc", encrypt=True, category="api_keys")
            await uow.commit()
        row = await raw_row(layer, "OPENAI_API_KEY")
        assert row.value is None and bool(row.is_encrypted)
        assert archon_decrypt(row.encrypted_value, SERVICE_KEY) == "sk-abc"
        async with layer.uow(read_only=True) as uow:
            repo = SqlAlchemySettingRepository(uow.session, cipher)
            assert await repo.get_value("OPENAI_API_KEY") == "sk-abc"

    async def test_reads_a_row_archon_inserted(self, layer) -> None:  # type: ignore[no-untyped-def]
        stored = archon_encrypt("sk-from-archon", SERVICE_KEY)
        # Archon fills the placeholder row its setup made (revision 0006 makes it here too).
        update = sa.text(
            "UPDATE archon_settings SET encrypted_value = :enc, is_encrypted = :yes "
            f"WHERE {_quoted_key(layer)} = :key"
        )
        async with layer.engine.begin() as conn:
            result = await conn.execute(
                update, {"key": "ANTHROPIC_API_KEY", "enc": stored, "yes": True}
            )
            assert result.rowcount == 1
        cipher = CredentialCipher.from_settings(settings(supabase_service_key=SERVICE_KEY))
        async with layer.uow(read_only=True) as uow:
            repo = SqlAlchemySettingRepository(uow.session, cipher)
            assert await repo.get_value("ANTHROPIC_API_KEY") == "sk-from-archon"
            keys = await repo.get_by_category("api_keys")
            # The other placeholders stay empty until a key is entered.
            assert keys == {
                "ANTHROPIC_API_KEY": "sk-from-archon",
                **{
                    s.key: None
                    for s in ARCHON_SETTINGS
                    if s.encrypted and s.key != "ANTHROPIC_API_KEY"
                },
            }
            wrong = SqlAlchemySettingRepository(uow.session, CredentialCipher.default())
            with pytest.raises(DataLayerError, match="ANTHROPIC_API_KEY"):
                await wrong.get_value("ANTHROPIC_API_KEY")

    async def test_upsert_switches_between_plain_and_encrypted(self, layer) -> None:  # type: ignore[no-untyped-def]
        async with layer.uow() as uow:
            first = await uow.settings.set_value("TOKEN", "plain", category="c1", description="d")
            await uow.settings.set_value("TOKEN", "secret", encrypt=True)
            await uow.commit()
        row = await raw_row(layer, "TOKEN")
        assert row.value is None and bool(row.is_encrypted) and row.encrypted_value
        # category/description left as they were when not given again
        assert (row.category, row.description) == ("c1", "d")
        async with layer.uow() as uow:
            again = await uow.settings.set_value("TOKEN", "plain-again", category="c2")
            assert again.id == first.id and again.value == "plain-again"
            await uow.commit()
        row = await raw_row(layer, "TOKEN")
        assert (row.value, row.encrypted_value, bool(row.is_encrypted)) == (
            "plain-again",
            None,
            False,
        )
        assert row.category == "c2"
        async with layer.engine.connect() as conn:
            query = f"SELECT count(*) FROM archon_settings WHERE {_quoted_key(layer)} = 'TOKEN'"
            n = await conn.scalar(sa.text(query))
        assert n == 1

    async def test_get_by_category_decrypts(self, layer) -> None:  # type: ignore[no-untyped-def]
        async with layer.uow() as uow:
            await uow.settings.set_value("A", "1", category="rag")
            await uow.settings.set_value("B", "2", encrypt=True, category="rag")
            await uow.settings.set_value("C", "3", category="other")
            await uow.commit()
        async with layer.uow(read_only=True) as uow:
            assert await uow.settings.get_by_category("rag") == {"A": "1", "B": "2"}
            assert await uow.settings.get_by_category("none") == {}


def _quoted_key(layer) -> str:  # type: ignore[no-untyped-def]
    # `key` is a reserved word on MySQL/MariaDB.
    return layer.engine.dialect.identifier_preparer.quote("key")
