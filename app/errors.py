"""The error taxonomy, and the one place where drivers' exceptions are translated into it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc


class DataLayerError(Exception):
    """Base of every error raised by the data layer."""


class NotFoundError(DataLayerError):
    """The entity asked for does not exist."""


class ConflictError(DataLayerError):
    """A unique or foreign-key constraint was violated, or an optimistic lock was lost."""


class InvalidInputError(DataLayerError, ValueError):
    """The caller passed something the layer refuses before touching the database."""


class ConfigurationError(InvalidInputError):
    """A setting (environment variable or ``Settings`` field) that cannot be used as given."""


class UnsupportedFeatureError(DataLayerError):
    """The configured backend lacks the feature asked for."""


class BackendUnavailableError(DataLayerError):
    """The database or vector store could not be reached (after retries)."""


class RetryableError(DataLayerError):
    """A serialization failure, deadlock or pooler hiccup: running the transaction again may
    succeed."""


# SQLSTATE classes and MySQL error numbers, by what they mean to a caller.
# 26000 / 42P05: a prepared statement missing, or already there, on the server connection a
# transaction pooler handed out: the next transaction may get a connection where it is right.
_PG_RETRYABLE = {"40001", "40P01", "26000", "42P05"}
# 1467: InnoDB's AUTO-INC lock lost in a deadlock (reported as "Failed to read auto-increment
# value"): the statement can be retried as a deadlock can.
_MYSQL_RETRYABLE = {1213, 1205, 1467}
# The server is shutting down, crashed, or not yet accepting connections (class 08: the
# connection itself failed).
_PG_UNAVAILABLE = {"57P01", "57P02", "57P03"}
_PG_CONFLICT = {"23505", "23503"}
_MYSQL_CONFLICT = {1062, 1451, 1452, 1216, 1217, 1586}
_PG_INVALID = {"22P02", "22021", "23514", "23502", "22001", "22003", "22007", "22008"}
_MYSQL_INVALID = {1048, 1265, 1366, 1406, 1264, 4025, 3819, 1292}
# Greedy up to the last @: a password may hold an unencoded @ of its own; "//" rather than "://"
# catches a URL missing its colon too.
_PASSWORD_IN_DSN = re.compile(r"(//[^:/@\s]*:)\S+@")
_SECRET_PARAMETER = re.compile(r"((?:pass|pwd|secret|key|token|auth|cred)\w*=)[^&\s]+", re.I)


def _sqlstate(orig: BaseException | None) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        code = getattr(orig, attr, None)
        if isinstance(code, str):
            return code
    return None


def _mysql_errno(orig: BaseException | None) -> int | None:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def scrub(message: str) -> str:
    """A driver message with any DSN password masked."""
    return _SECRET_PARAMETER.sub(r"\1***", _PASSWORD_IN_DSN.sub(r"\1***@", message))


def classify(error: sa_exc.DBAPIError) -> type[DataLayerError]:
    """Which of our errors a driver error becomes."""
    orig = error.orig
    state, errno = _sqlstate(orig), _mysql_errno(orig)
    text = str(orig).lower()
    if state in _PG_RETRYABLE or errno in _MYSQL_RETRYABLE or "database is locked" in text:
        return RetryableError
    if state == "25006" and error.connection_invalidated:
        # A writer's server turned standby (app.failover): the next connection finds the primary.
        return RetryableError
    if state in _PG_CONFLICT or errno in _MYSQL_CONFLICT:
        return ConflictError
    if "unique constraint" in text or "foreign key constraint" in text:
        return ConflictError
    if state in _PG_INVALID or errno in _MYSQL_INVALID or "check constraint" in text:
        return InvalidInputError
    if isinstance(error, sa_exc.InterfaceError) or error.connection_invalidated:
        return BackendUnavailableError
    if state is not None and (state.startswith("08") or state in _PG_UNAVAILABLE):
        return BackendUnavailableError
    if isinstance(error, sa_exc.OperationalError) and state is None and errno in (2003, 2006, 2013):
        return BackendUnavailableError
    if isinstance(error, sa_exc.IntegrityError):
        return ConflictError
    return DataLayerError


def _savepoint_lost(error: sa_exc.DBAPIError) -> bool:
    return _mysql_errno(error.orig) == 1305 or _sqlstate(error.orig) == "3B001"


def _first_cause(error: sa_exc.DBAPIError) -> sa_exc.DBAPIError:
    """The error that started it all when a savepoint rollback failed on top of it.

    After a deadlock MySQL has rolled back the whole transaction, so rolling back to a savepoint
    fails too; the deadlock, not the missing savepoint, is what the caller must see (and retry).
    """
    if not _savepoint_lost(error):
        return error
    cause: BaseException | None = error.__context__
    while cause is not None:
        if isinstance(cause, sa_exc.DBAPIError) and not _savepoint_lost(cause):
            return cause
        cause = cause.__context__
    return error


_ADVICE = {
    ConflictError: "a row with the same key exists, or a referenced row is missing",
    RetryableError: "the transaction lost a race; run it again (UnitOfWork.run_in_transaction)",
    InvalidInputError: "the database rejected a value",
    BackendUnavailableError: "check that the database is running and reachable",
    DataLayerError: "database error",
}


@contextmanager
def translate_errors(action: str = "database operation") -> Iterator[None]:
    """Re-raise drivers' and SQLAlchemy's exceptions as ``DataLayerError`` subclasses."""
    try:
        yield
    except DataLayerError:
        raise
    except sa_exc.DBAPIError as raised:
        exc = _first_cause(raised)
        kind = classify(exc)
        detail = scrub(str(exc.orig)).strip().splitlines()[0] if exc.orig else ""
        raise kind(f"{action} failed: {_ADVICE[kind]} ({detail})") from exc
    except sa_exc.TimeoutError as exc:  # the pool's: every connection in use all that time
        raise BackendUnavailableError(
            f"{action} failed: no pooled connection came free within DATABASE_POOL_TIMEOUT "
            "(every one was in use): raise DATABASE_POOL_SIZE, or hold Units of Work open for "
            f"less time ({exc})"
        ) from exc
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise BackendUnavailableError(
            f"{action} failed: {_ADVICE[BackendUnavailableError]} ({scrub(str(exc))})"
        ) from exc
    except LookupError as exc:  # SQLAlchemy's Enum rejects an unknown value with LookupError
        raise InvalidInputError(f"{action} failed: {exc}") from exc


__all__ = [
    "BackendUnavailableError",
    "ConfigurationError",
    "ConflictError",
    "DataLayerError",
    "InvalidInputError",
    "NotFoundError",
    "RetryableError",
    "UnsupportedFeatureError",
    "translate_errors",
]
