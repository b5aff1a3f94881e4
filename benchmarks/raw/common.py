"""What every raw side shares: the rows both sides write, and the digest that compares them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from benchmarks.data import DIMENSION, EMBEDDING_MODEL, Batch

PAGES = "archon_crawled_pages"
# What a raw side empties between runs, children before parents.
TABLES = (
    "archon_vector_outbox",
    "archon_vector_versions",
    "archon_crawled_pages",
    "archon_code_examples",
    "archon_page_metadata",
    "archon_sources",
)
EMBEDDING = f"embedding_{DIMENSION}"
# The entity's own columns, in the order the raw reads select them.
PAGE_COLUMNS = (
    "id, url, chunk_number, content, metadata, source_id, llm_chat_model, embedding_model, "
    "embedding_dimension, page_id, created_at"
)
INSERT_COLUMNS = (
    "url",
    "chunk_number",
    "content",
    "metadata",
    "source_id",
    "embedding_model",
    "embedding_dimension",
    "created_at",
    EMBEDDING,
)
SOURCE_COLUMNS = (
    "source_id",
    "source_url",
    "source_display_name",
    "summary",
    "total_word_count",
    "title",
    "metadata",
    "created_at",
    "updated_at",
)


def source_values(batch: Batch, now: datetime) -> dict[str, Any]:
    """The source row both sides upsert for a batch (the layer builds a ``Source`` of it)."""
    return {
        "source_id": batch.source_id,
        "source_url": f"https://docs.example.com/{batch.source_id}",
        "source_display_name": batch.source_id,
        "summary": "synthetic documentation",
        "total_word_count": 150 * len(batch),
        "title": f"Docs {batch.source_id}",
        "metadata": {"knowledge_type": "documentation"},
        "created_at": now,
        "updated_at": now,
    }


def utcnow() -> datetime:
    return datetime.now(UTC)


def urls_of(batch: Batch) -> list[str]:
    return sorted({chunk.url for chunk in batch.chunks})


@dataclass(frozen=True)
class Digest:
    """What both sides must agree on after the same work."""

    rows: int
    vectors: int
    sources: int
    checksum: str | None = None  # over every row's content and vector, when --check

    def differences(self, other: Digest) -> list[str]:
        out = []
        for name in ("rows", "vectors", "sources", "checksum"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name}: layer {mine} != raw {theirs}")
        return out


def checksum(rows: Iterable[tuple[Any, ...]]) -> str:
    """Hash of (url, chunk_number, content, metadata, source_id, model, dimension, vector bytes)."""
    digest = hashlib.sha256()
    for url, number, content, metadata, source, model, dimension, vector in rows:
        if isinstance(metadata, str | bytes):
            metadata = json.loads(metadata)
        line = json.dumps(
            [url, number, content, metadata, source, model, dimension], sort_keys=True
        )
        digest.update(line.encode())
        digest.update(vector_bytes(vector))
    return digest.hexdigest()[:16]


def vector_bytes(vector: Any) -> bytes:
    """A stored vector as little-endian float32 bytes, whatever form the driver returned."""
    import numpy as np

    if vector is None:
        return b"-"
    if isinstance(vector, bytes | bytearray | memoryview):
        return bytes(vector)
    to_numpy = getattr(vector, "to_numpy", None)
    array = to_numpy() if to_numpy is not None else vector
    return np.asarray(array, dtype="<f4").tobytes()


MODEL = EMBEDDING_MODEL
