"""Text every backend stores alike: no NUL byte, valid UTF-8."""

from __future__ import annotations

from app.errors import InvalidInputError


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
