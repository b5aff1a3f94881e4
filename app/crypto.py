"""Encryption of credentials stored in ``archon_settings``, readable by and from Archon.

Archon stores ``urlsafe_b64(Fernet(key).encrypt(plaintext))`` with
``key = urlsafe_b64(PBKDF2-HMAC-SHA256(SUPABASE_SERVICE_KEY, b"static_salt_for_credentials",
100_000 iterations, 32 bytes))`` and the password ``default-key-for-development`` when no service
key is set. ``CredentialCipher`` writes exactly that format; with ``CREDENTIALS_KEY`` configured it
encrypts new values under a key derived from that passphrase and still reads the old ones.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from app.errors import DataLayerError, InvalidInputError

if TYPE_CHECKING:
    from app.config import Settings

ARCHON_SALT = b"static_salt_for_credentials"
ARCHON_ITERATIONS = 100_000
ARCHON_DEVELOPMENT_PASSWORD = "default-key-for-development"


@lru_cache(maxsize=8)
def derive_key(password: str) -> bytes:
    """The Fernet key Archon derives from ``password`` (cached: 100k PBKDF2 rounds are slow)."""
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=ARCHON_SALT, iterations=ARCHON_ITERATIONS
    )
    return base64.urlsafe_b64encode(kdf.derive(password.encode("utf-8")))


class CredentialCipher:
    """Encrypts with the first password's key; decrypts with any of them (key rotation)."""

    def __init__(self, passwords: Sequence[str]) -> None:
        if not passwords:
            raise InvalidInputError("a CredentialCipher needs at least one password")
        # Derived lazily: building a data layer must stay cheap when no credential is read.
        self._passwords = tuple(passwords)
        self._fernet: MultiFernet | None = None

    @classmethod
    def default(cls) -> CredentialCipher:
        """Archon's development fallback: the key it uses when SUPABASE_SERVICE_KEY is unset."""
        return cls([ARCHON_DEVELOPMENT_PASSWORD])

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialCipher:
        """Archon's key (from ``supabase_service_key`` or the fallback), led by ``credentials_key``.

        With ``credentials_key`` set, new values are encrypted under it; values Archon encrypted
        remain readable.
        """
        service_key = settings.supabase_service_key
        archon = (
            service_key.get_secret_value()
            if service_key is not None
            else ARCHON_DEVELOPMENT_PASSWORD
        )
        own = settings.credentials_key
        if own is None:
            return cls([archon])
        return cls([own.get_secret_value(), archon])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._passwords)} key(s)>)"

    @property
    def _multi(self) -> MultiFernet:
        if self._fernet is None:
            self._fernet = MultiFernet([Fernet(derive_key(p)) for p in self._passwords])
        return self._fernet

    def encrypt(self, plaintext: str) -> str:
        """The value to store in ``encrypted_value``, in Archon's format."""
        token = self._multi.encrypt(plaintext.encode("utf-8"))
        return base64.urlsafe_b64encode(token).decode("ascii")

    def decrypt(self, stored: str, *, name: str = "a credential") -> str:
        """The plaintext of an ``encrypted_value``; ``name`` says which setting in errors."""
        if not stored:
            return stored  # Archon stores an empty credential as-is, unencrypted
        try:
            token = base64.urlsafe_b64decode(stored.encode("ascii"))
            return self._multi.decrypt(token).decode("utf-8")
        except (InvalidToken, binascii.Error, ValueError) as exc:
            raise DataLayerError(
                f"{name} could not be decrypted: the encryption key is wrong or the value is "
                "corrupt. Set SUPABASE_SERVICE_KEY (and CREDENTIALS_KEY, if one was used) to the "
                "values this database was written with, or store the credential again."
            ) from exc

    def can_decrypt(self, stored: str) -> bool:
        """Whether one of this cipher's keys opens ``stored``."""
        try:
            self.decrypt(stored)
        except DataLayerError:
            return False
        return True


__all__ = ["CredentialCipher", "derive_key"]
