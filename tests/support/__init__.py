"""Test infrastructure shared by every contract suite: backends, layers, plain-SQL checks."""

from tests.support.backends import ALL_BACKENDS, Backend, selected_backends, unavailable
from tests.support.layers import Databases, LayerFactory
from tests.support.reset import TableReset
from tests.support.sql import Sql, execute, fetch_all, fetch_scalar

__all__ = [
    "ALL_BACKENDS",
    "Backend",
    "Databases",
    "LayerFactory",
    "Sql",
    "TableReset",
    "execute",
    "fetch_all",
    "fetch_scalar",
    "selected_backends",
    "unavailable",
]
