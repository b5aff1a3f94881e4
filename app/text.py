"""Text every backend stores alike: no NUL byte, valid UTF-8."""

from __future__ import annotations

from app.errors import InvalidInputError

# One text or JSON value: MariaDB's default max_allowed_packet (16 MiB) bounds a whole
# statement, so a value is kept well below it, and refused on every backend alike.
MAX_VALUE_BYTES = 4 * 1024 * 1024


def check_text(name: str, value: str) -> None:
    """Text every backend stores: no NUL byte, valid UTF-8 (no lone surrogate)."""
    if "\x00" in value:
        raise InvalidInputError(f"{name} contains a NUL byte, which no backend stores")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{name} is not valid text: {exc.reason} at position {exc.start} (a lone surrogate)"
        ) from None


def check_size(name: str, size: int) -> None:
    """Refuse a value of ``size`` bytes (about) beyond ``MAX_VALUE_BYTES``."""
    if size > MAX_VALUE_BYTES:
        raise InvalidInputError(
            f"{name} is about {size // 1024} KiB; a text or JSON value holds at most "
            f"{MAX_VALUE_BYTES // 1024 // 1024} MiB on every backend"
        )
