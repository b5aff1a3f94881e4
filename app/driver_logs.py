"""Drivers' own loggers (and SQLAlchemy's), kept free of statement parameters and result rows,
which may be settings' plain values.

aiosqlite logs every call it runs on its thread at DEBUG, arguments included: the statement and
its parameters. The filter installed here rewrites those records to the call's name and the
statement only. asyncpg logs no statements; aiomysql logs parameters only with ``echo=True``,
which the layer never sets.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

AIOSQLITE_LOGGER = "aiosqlite"
# SQLAlchemy's engine logger: parameters are hidden by the engines (hide_parameters), result
# rows, which it logs at DEBUG, by the filter below.
SQLALCHEMY_LOGGER = "sqlalchemy.engine.Engine"
HIDDEN = "<parameters hidden>"


class HideCallArguments(logging.Filter):
    """Rewrites a record's arguments that are calls (``functools.partial``) to their name and
    SQL text, without the parameters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_parameters(arg) for arg in record.args)
        elif record.args:  # a mapping of arguments: nothing of the layer's is logged that way
            record.args = dict.fromkeys(record.args, HIDDEN)
        return True


class HideRows(logging.Filter):
    """Replaces the rows SQLAlchemy logs at DEBUG ("Row %r") with a placeholder."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Row %r":
            record.args = ("<row hidden>",)
        return True


def _without_parameters(arg: Any) -> Any:
    if isinstance(arg, BaseException):
        return arg  # sqlite3's messages name constraints and columns, never bound values
    if isinstance(arg, functools.partial):
        name = getattr(arg.func, "__qualname__", type(arg.func).__name__)
        statement = next((a for a in arg.args if isinstance(a, str)), None)
        shown = f"{statement!r}, {HIDDEN}" if statement is not None else HIDDEN
        return f"{name}({shown})"
    if callable(arg):
        return getattr(arg, "__qualname__", type(arg).__name__)
    return HIDDEN


def hide_driver_parameters() -> None:
    """Install the filters on aiosqlite's and SQLAlchemy's loggers (once per process)."""
    for name, kind in ((AIOSQLITE_LOGGER, HideCallArguments), (SQLALCHEMY_LOGGER, HideRows)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
