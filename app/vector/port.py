"""The VectorIndex port and the value types every adapter speaks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from app.errors import InvalidInputError

Metric = Literal["cosine", "l2", "inner_product"]
MatchType = Literal["vector", "keyword", "hybrid"]
RecordId = int | str

# The collections Archon searches, by the entity they hold.
COLLECTIONS = {"crawled_pages": "archon_crawled_pages", "code_examples": "archon_code_examples"}


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """One vector to store: ``id`` is the row id of the entity it embeds."""

    id: RecordId
    vector: Sequence[float]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    document: str | None = None


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One result of a vector query; ``score`` is higher-is-better (see ``VectorIndex.query``)."""

    id: RecordId
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result of ``DataLayer.search``: the hydrated entity, its score and how it matched."""

    entity: Any
    score: float
    match_type: MatchType


@dataclass(frozen=True, slots=True)
class VectorCapabilities:
    """What an adapter can do; ``archon-db doctor`` prints it."""

    name: str
    metrics: frozenset[str]
    filter_operators: frozenset[str]
    hybrid: bool
    max_dimension: int
    transactional: bool
    approximate: bool


class VectorIndex(Protocol):
    """Stores vectors by the id of the row they embed and finds the nearest ones.

    Scores are higher-is-better whatever the metric: cosine -> ``1 - cosine distance`` (in
    [-1, 1]), inner product -> the dot product, l2 -> ``-euclidean distance``. Filters are the
    language of ``app.filters``; an operator outside ``capabilities.filter_operators`` raises
    ``InvalidInputError``, never silently ignored. A vector whose length differs from the
    collection's dimension, or that holds NaN/infinity (or is all zeros under cosine), raises
    ``InvalidInputError`` naming expected and received lengths. Transactional adapters
    (``capabilities.transactional``) write in the caller's Unit of Work; others go through the
    outbox and are applied after commit.
    """

    capabilities: VectorCapabilities

    async def ensure_collection(
        self, collection: str, dimension: int, metric: Metric = "cosine"
    ) -> None:
        """Make ``collection`` ready for vectors of ``dimension`` (idempotent)."""
        ...

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Insert or replace records by id; returns how many were written."""
        ...

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """The ``k`` nearest records matching ``filters``, best first.

        ``embedding_model`` restricts to vectors made by that model, so vectors of different
        models are never compared.
        """
        ...

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Remove the vectors of these ids; returns how many existed."""
        ...

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        """Remove every vector whose metadata matches ``filters``."""
        ...

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        """How many vectors ``collection`` holds (matching ``filters``)."""
        ...


def check_vector(
    vector: Sequence[float], *, expected: int | None = None, metric: Metric = "cosine"
) -> None:
    """Reject what no index can store sensibly, with a message that says what was wrong."""
    length = len(vector)
    if length == 0:
        raise InvalidInputError("empty vector")
    if expected is not None and length != expected:
        raise InvalidInputError(f"wrong vector length: expected {expected}, received {length}")
    if not all(math.isfinite(x) for x in vector):
        raise InvalidInputError("vector contains NaN or infinity")
    if metric == "cosine" and not any(vector):
        raise InvalidInputError("an all-zero vector has no direction: cosine is undefined")


def collection_table(collection: str) -> str:
    """The Archon table behind a collection name."""
    try:
        return COLLECTIONS[collection]
    except KeyError:
        raise InvalidInputError(
            f"unknown collection {collection!r}; use one of {sorted(COLLECTIONS)}"
        ) from None
