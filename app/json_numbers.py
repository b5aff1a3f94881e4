"""JSON text whose floats read back as floats of the same value on every backend.

PostgreSQL's jsonb keeps numbers as ``numeric`` and prints them without an exponent and with only
the fractional digits written: Python's ``1e16`` (``"1e+16"``) comes back as the integer
``10000000000000000``, ``1e308`` as a 309-digit integer. Written positionally with at least one
fractional digit (``"10000000000000000.0"``), every backend returns a float of the same value.
``-0.0`` is written ``0.0`` on every backend: jsonb (``numeric``) has no negative zero, so
PostgreSQL could not give the sign back, and every backend reads the same.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def float_text(value: float) -> str:
    """``value`` positionally, with a fractional part: the same float for every JSON reader."""
    if value == 0:
        return "0.0"  # -0.0 too: PostgreSQL has no negative zero
    text = format(Decimal(repr(value)), "f")  # repr: the shortest digits that round-trip
    return text if "." in text else f"{text}.0"


def _needs_care(value: float) -> bool:
    text = repr(value)
    return "e" in text or "." not in text or text == "-0.0"


def _has_awkward_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and _needs_care(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def dumps(value: Any) -> str:
    """``json.dumps``, with floats written as ``float_text`` does."""
    if not _has_awkward_float(value):
        return json.dumps(value)  # the C encoder: most documents
    # The stdlib's pure-Python encoder, given our float formatting (it takes it as a parameter).
    iterencode = json.encoder._make_iterencode(  # type: ignore[attr-defined]
        {}, json.JSONEncoder().default, json.encoder.py_encode_basestring_ascii, None, float_text,
        ": ", ", ", False, False, True,
    )  # fmt: skip
    return "".join(iterencode(value, 0))
