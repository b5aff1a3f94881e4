"""Vector search: the VectorIndex port, its value types and (in submodules) the adapters.

Adapters are imported from their own modules (``app.vector.sql.pgvector``, ``app.vector.chroma``,
``app.vector.weaviate``, ``app.vector.sql.exact``) so that importing this package loads no SDK.
"""

from app.vector.port import (
    COLLECTIONS,
    SearchHit,
    VectorCapabilities,
    VectorHit,
    VectorIndex,
    VectorRecord,
    check_vector,
)

__all__ = [
    "COLLECTIONS",
    "SearchHit",
    "VectorCapabilities",
    "VectorHit",
    "VectorIndex",
    "VectorRecord",
    "check_vector",
]
