"""Embedders: the ``Embedder`` port and a deterministic local one that needs no download.

``HashingEmbedder`` is feature hashing (the "hashing trick"): lower-cased word unigrams and
bigrams, minus common English stop words, are hashed with a keyed BLAKE2b into ``dimension``
buckets with a hash-derived sign, weighted ``1 + log(tf)``, and the vector is L2-normalised.
It is stable across processes and machines (no ``hash()`` randomisation), costs nothing to load
and ranks by shared vocabulary: texts that use the same words (and word pairs) score high,
paraphrases with different words do not. A real model is swapped in by passing any object with
the same three members.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from app.errors import InvalidInputError

DEFAULT_DIMENSION = 384
_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_EMPTY_FEATURE = "\x00empty"
# Words that carry no topic; without this list every English text would share a large component.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves also may might must
    shall us via per""".split()
)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one fixed length.

    ``embed`` returns one vector of ``dimension`` floats per input text, in order; equal texts give
    equal vectors. ``model_name`` is recorded with every stored vector (``embedding_model``) so
    vectors of different models are never compared.
    """

    dimension: int
    model_name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text."""
        ...


class HashingEmbedder:
    """Signed feature hashing of word unigrams and bigrams, L2-normalised (see module doc)."""

    def __init__(self, dimension: int = DEFAULT_DIMENSION, *, bigram_weight: float = 0.5) -> None:
        if dimension < 2:
            raise InvalidInputError(f"embedding dimension must be at least 2, got {dimension}")
        self.dimension = dimension
        self.bigram_weight = bigram_weight
        self.model_name = f"archon-hashing-v1-{dimension}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text; a text without words gets a fixed placeholder."""
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a list of texts, not a single string")
        return [self._embed_one(text).tolist() for text in texts]

    def _embed_one(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float64)
        for feature, weight in self._features(text).items():
            index, sign = self._bucket(feature)
            vector[index] += sign * weight
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:  # every feature cancelled out: fall back to the placeholder direction
            index, sign = self._bucket(_EMPTY_FEATURE)
            vector[index] = sign
            norm = 1.0
        return vector / norm

    def _features(self, text: str) -> dict[str, float]:
        words = [w for w in tokenize(text) if w not in STOP_WORDS]
        if not words:
            return {_EMPTY_FEATURE: 1.0}
        counts: Counter[str] = Counter(words)
        counts.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
        return {
            feature: (1.0 + math.log(tf)) * (self.bigram_weight if " " in feature else 1.0)
            for feature, tf in counts.items()
        }

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, key=b"archon").digest()
        number = int.from_bytes(digest, "little")
        return (number >> 1) % self.dimension, (1.0 if number & 1 else -1.0)

    def __repr__(self) -> str:
        return f"HashingEmbedder(dimension={self.dimension})"


def tokenize(text: str) -> Iterable[str]:
    """Lower-cased words and numbers (apostrophes kept inside words)."""
    return _TOKEN.findall(text.lower())


def default_embedder(dimension: int = DEFAULT_DIMENSION) -> Embedder:
    """The embedder the command line and the demo use when none is configured."""
    return HashingEmbedder(dimension)
