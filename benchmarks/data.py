"""A deterministic synthetic corpus: ~1 KB text chunks with clustered float32 embeddings.

Chunk ``i`` is the same whatever the batch size or the order it is generated in: its text and
vector come from a generator seeded with ``(seed, i)``. Vectors are a cluster centre plus noise,
normalised (what embedding models give: topics, and neighbours inside them); the text of a chunk
mentions its cluster's topic words, so a keyword query and a vector query near that cluster's
centre agree in part, as hybrid search expects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

DIMENSION = 1536
EMBEDDING_MODEL = "bench-embedding-3-small"
CHUNKS_PER_PAGE = 8
_SYLLABLES = (
    "ka lo mi ren tas vu ber cho dan fel gim hol jun kep lur mab nos pid qua rix sol".split()
)
_COMMON = (
    "the request limit server client cache token page index query result error retry "
    "timeout response header batch stream vector search document section example config"
).split()


@dataclass(frozen=True)
class Chunk:
    """One chunk as both sides write it."""

    index: int
    source_id: str
    url: str
    chunk_number: int
    content: str
    metadata: dict[str, Any]

    @property
    def metadata_json(self) -> str:
        return json.dumps(self.metadata, sort_keys=True)


@dataclass(frozen=True)
class Batch:
    """Consecutive chunks of ONE source and their vectors (``float32``, one row per chunk)."""

    source_id: str
    chunks: list[Chunk]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.chunks)


@dataclass(frozen=True)
class Corpus:
    """``size`` chunks in sources of ``source_size`` chunks, vectors in ``clusters`` clusters."""

    size: int
    seed: int = 1536
    dimension: int = DIMENSION
    clusters: int = 32
    source_size: int = 1000
    noise: float = 0.8
    words: int = 150  # ~1 KB of text

    @cached_property
    def centres(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0xC0FFEE])
        return rng.standard_normal((self.clusters, self.dimension)).astype(np.float32)

    @cached_property
    def vocabulary(self) -> list[str]:
        rng = np.random.default_rng([self.seed, 0xBEEF])
        parts = rng.choice(_SYLLABLES, size=(1500, 3))
        return sorted({"".join(p) for p in parts}) + _COMMON

    def source_of(self, index: int) -> str:
        return f"bench-{index // self.source_size:04d}"

    def cluster_of(self, index: int) -> int:
        return (index * 7919) % self.clusters  # spread every cluster over every source

    @staticmethod
    def topic_words(cluster: int) -> list[str]:
        return [f"topic{cluster}alpha", f"topic{cluster}beta"]

    def chunk(self, index: int, rng: np.random.Generator | None = None) -> Chunk:
        rng = rng or np.random.default_rng([self.seed, index])
        picks = rng.integers(0, len(self.vocabulary), self.words)
        words = [self.vocabulary[p] for p in picks]
        cluster = self.cluster_of(index)
        for position, word in zip((3, self.words // 2), self.topic_words(cluster), strict=True):
            words[position] = word
        page, number = divmod(index, CHUNKS_PER_PAGE)
        source = self.source_of(index)
        return Chunk(
            index=index,
            source_id=source,
            url=f"https://docs.example.com/{source}/page-{page:06d}",
            chunk_number=number,
            content=" ".join(words),
            metadata={"knowledge_type": "documentation", "page": page, "cluster": cluster},
        )

    def vector(self, index: int, rng: np.random.Generator) -> np.ndarray:
        centre = self.centres[self.cluster_of(index)]
        raw = centre + self.noise * rng.standard_normal(self.dimension, dtype=np.float32)
        return (raw / np.linalg.norm(raw)).astype(np.float32)

    def batch(self, start: int, stop: int) -> Batch:
        """Chunks ``start`` up to ``stop`` (within one source) with their vectors."""
        if self.source_of(start) != self.source_of(stop - 1):
            raise ValueError("a batch holds chunks of one source")
        chunks, vectors = [], np.empty((stop - start, self.dimension), dtype=np.float32)
        for row, index in enumerate(range(start, stop)):
            rng = np.random.default_rng([self.seed, index])
            chunks.append(self.chunk(index, rng))
            vectors[row] = self.vector(index, rng)
        return Batch(self.source_of(start), chunks, vectors)

    def batches(self, size: int) -> Iterator[Batch]:
        """The corpus in batches of at most ``size`` chunks, never across sources."""
        for source_start in range(0, self.size, self.source_size):
            source_stop = min(self.size, source_start + self.source_size)
            for start in range(source_start, source_stop, size):
                yield self.batch(start, min(source_stop, start + size))

    def sources(self) -> list[str]:
        return [self.source_of(i) for i in range(0, self.size, self.source_size)]

    def queries(self, count: int) -> tuple[np.ndarray, list[str]]:
        """``count`` query vectors near cluster centres, and the matching keyword queries."""
        rng = np.random.default_rng([self.seed, 0xFACE])
        clusters = rng.integers(0, self.clusters, count)
        noise = rng.standard_normal((count, self.dimension), dtype=np.float32)
        raw = self.centres[clusters] + self.noise * noise
        vectors = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
        texts = [" ".join(self.topic_words(int(c))) for c in clusters]
        return vectors, texts


def exact_top_k(matrix: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    """Row positions of the ``k`` nearest rows by cosine, per query (rows are unit length)."""
    scores = queries @ matrix.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
    return [list(map(int, row)) for row in ordered]


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    """Mean fraction of the exact top-k that ``found`` contains."""
    if not exact:
        return 1.0
    hits = [len(set(f) & set(e)) / max(1, len(e)) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits))
