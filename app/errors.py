"""The error taxonomy. Drivers' exceptions never escape untranslated: see ``translate_errors``."""

from __future__ import annotations


class DataLayerError(Exception):
    """Base of every error raised by the data layer."""


class NotFoundError(DataLayerError):
    """The entity asked for does not exist."""


class ConflictError(DataLayerError):
    """A unique or foreign-key constraint was violated, or an optimistic lock was lost."""


class InvalidInputError(DataLayerError, ValueError):
    """The caller passed something the layer refuses before touching the database."""


class UnsupportedFeatureError(DataLayerError):
    """The configured backend lacks the feature asked for."""


class BackendUnavailableError(DataLayerError):
    """The database or vector store could not be reached (after retries)."""


__all__ = [
    "BackendUnavailableError",
    "ConflictError",
    "DataLayerError",
    "InvalidInputError",
    "NotFoundError",
    "UnsupportedFeatureError",
]
