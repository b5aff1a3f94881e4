"""The VectorIndex port and the value types every adapter speaks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from app.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

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
    _check_sequence(vector)
    length = len(vector)
    if length == 0:
        raise InvalidInputError("empty vector")
    if expected is not None and length != expected:
        raise InvalidInputError(f"wrong vector length: expected {expected}, received {length}")
    matrix = float32_matrix([vector], length)
    if metric == "cosine" and not matrix.any():
        raise InvalidInputError("an all-zero vector has no direction: cosine is undefined")


def float32_matrix(vectors: Sequence[Any], dimension: int) -> np.ndarray:
    """Vectors of one length as a float32 matrix.

    ``InvalidInputError`` for anything but sequences of ``dimension`` real numbers (strings,
    numeric strings included, ``None``, booleans, nested lists, integers beyond float range), and
    for NaN or infinity, before any of it reaches a driver or a store.
    """
    import numpy as np  # only here: importing the port loads no numpy

    for vector in vectors:
        _check_sequence(vector)
        if len(vector) != dimension:
            raise InvalidInputError(
                f"wrong vector length: expected {dimension}, received {len(vector)}"
            )
    if not len(vectors):
        return np.zeros((0, dimension), dtype=np.float32)
    try:
        raw = np.asarray(vectors)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"a vector is a sequence of numbers: {exc}") from None
    if raw.dtype.kind not in "fiu" or raw.shape != (len(vectors), dimension):
        raise InvalidInputError(
            "a vector holds numbers only (no strings, None, booleans or nested lists); got "
            f"values of type {raw.dtype}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        matrix = raw.astype(np.float32, copy=False)
    if not np.isfinite(matrix).all():
        raise InvalidInputError("vector contains NaN or infinity (or overflows float32)")
    return matrix


def vector_length(vector: Any) -> int:
    """The length of something given as a vector; ``InvalidInputError`` when it is no sequence."""
    _check_sequence(vector)
    return len(vector)


def _check_sequence(vector: Any) -> None:
    if isinstance(vector, str | bytes | bytearray | Mapping) or not hasattr(vector, "__len__"):
        raise InvalidInputError(
            f"a vector is a sequence of numbers, got {type(vector).__name__}"
        )


def collection_table(collection: str) -> str:
    """The Archon table behind a collection name."""
    try:
        return COLLECTIONS[collection]
    except KeyError:
        raise InvalidInputError(
            f"unknown collection {collection!r}; use one of {sorted(COLLECTIONS)}"
        ) from None
