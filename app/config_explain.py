"""Configuration that explains itself: pydantic's errors as one sentence per setting, and
environment variables that look meant for the layer but are not its settings."""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from app.urls import ACCEPTED_URLS, mask_url

PREFIXES = ("DATABASE_", "MYSQL_", "VECTOR_", "CHROMA_", "WEAVIATE_", "SUPABASE_", "ARCHON_")
# Archon's own variables share the prefixes; they are not the layer's but are not mistakes.
ARCHON_VARIABLES = frozenset(
    {
        "SUPABASE_URL",
        "ARCHON_HOST",
        "ARCHON_SERVER_PORT",
        "ARCHON_MCP_PORT",
        "ARCHON_AGENTS_PORT",
        "ARCHON_UI_PORT",
        "ARCHON_DOCS_PORT",
    }
)
URL_FIELDS = frozenset({"database_url", "database_read_urls", "chroma_url", "weaviate_url"})
_SHOWN_LENGTH = 80


def explain(exc: ValidationError, model: type[BaseModel]) -> str:
    """One message for all of ``exc``'s errors, naming each variable, the value and what fits."""
    return "; ".join(_explain_one(error, model) for error in exc.errors(include_url=False))


def _explain_one(error: Any, model: type[BaseModel]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # raised by a model validator: already names its variables
        return message
    field = str(error["loc"][0])
    info = model.model_fields.get(field)
    if info is None:
        return f"{field.upper()}: {message}"
    value = error.get("input")
    accepted = accepted_values(info)
    return (
        f"{field.upper()}={shown_value(field, info, value)} is not accepted: expected "
        f"{accepted}{_closest_choice(info, value)}"
    )


def is_secret(info: FieldInfo) -> bool:
    """Whether the field holds a password or key."""
    return SecretStr in _kinds(info.annotation)


def shown_value(field: str, info: FieldInfo, value: Any) -> str:
    """How a value given for ``field`` may appear in a message: secrets never do."""
    if is_secret(info):
        return "(value not shown: secret)"
    if field in URL_FIELDS:  # a URL given as a list or mapping may hold one with a password
        return mask_url(value) if isinstance(value, str) else f"(a {type(value).__name__})"
    text = repr(value)
    return text if len(text) <= _SHOWN_LENGTH else text[:_SHOWN_LENGTH] + "..."


def accepted_values(info: FieldInfo) -> str:
    """What the field accepts, in words."""
    kinds = _kinds(info.annotation)
    enum = next((k for k in kinds if isinstance(k, type) and issubclass(k, Enum)), None)
    if enum is not None:
        return "one of " + ", ".join(str(member.value) for member in enum)
    if bool in kinds:
        return "true or false (also 1/0, yes/no, on/off)"
    if int in kinds:
        return "a whole number" + _bounds(info)
    if float in kinds:
        return "a number" + _bounds(info)
    if list in kinds:
        return f"comma-separated URLs, each {ACCEPTED_URLS}"
    return "text"


def _kinds(annotation: Any) -> set[Any]:
    """The types an annotation allows, optional and list wrappers opened."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in get_args(annotation)))
    if origin is not None:
        return {origin}
    return {annotation}


def _bounds(info: FieldInfo) -> str:
    limits = {name: getattr(m, name) for m in info.metadata for name in ("ge", "gt", "le", "lt")
              if getattr(m, name, None) is not None}  # fmt: skip
    if "ge" in limits and "le" in limits:
        return f" from {limits['ge']} to {limits['le']}"
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return "".join(f" {signs[name]} {limit}" for name, limit in limits.items())


def _closest_choice(info: FieldInfo, value: Any) -> str:
    kinds = _kinds(info.annotation)
    enum = next((k for k in kinds if isinstance(k, type) and issubclass(k, Enum)), None)
    if enum is None or not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value.lower(), [str(m.value) for m in enum], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_variables(
    environ: Mapping[str, str], known: Iterable[str]
) -> Iterator[tuple[str, str | None]]:
    """Variables that look meant for the layer but are none of its settings, with the closest
    known name (None when nothing is close)."""
    names = {name.upper() for name in known}
    for variable in environ:
        upper = variable.upper()
        if upper in names or upper in ARCHON_VARIABLES:
            continue
        # A typo in the prefix itself (DATABSE_URL) is caught by closeness, not by the prefix.
        close = difflib.get_close_matches(upper, names, n=1, cutoff=0.85)
        if close or upper.startswith(PREFIXES):
            nearest = close or difflib.get_close_matches(upper, names, n=1, cutoff=0.6)
            yield variable, nearest[0] if nearest else None


def unknown_variable_warning(variable: str, closest: str | None) -> str:
    """The warning for one unknown variable."""
    hint = f"did you mean {closest}?" if closest else "no setting has a similar name"
    return f"{variable} is not a setting of the data layer and is ignored: {hint}"
