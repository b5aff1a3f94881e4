"""Chroma through chromadb alone: ``collection.add`` of ids, embeddings, metadata and documents,
into a collection configured as the layer configures its own (cosine, same HNSW parameters)."""

from __future__ import annotations

from typing import Any

from benchmarks.data import DIMENSION, Batch
from benchmarks.raw.common import MODEL, Digest, checksum

COLLECTION = f"archon_crawled_pages_{DIMENSION}"


def _hnsw() -> dict[str, Any]:
    from app.vector.chroma.store import HNSW

    return {"space": "cosine", **HNSW}


class RawChroma:
    """The raw side on Chroma: one embedded ``PersistentClient`` on the layer's folder."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.path = args["path"]
        self.client: Any = None
        self.collection: Any = None

    async def open(self) -> RawChroma:
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.PersistentClient(
            path=self.path, settings=Settings(anonymized_telemetry=False)
        )
        return self

    async def close(self) -> None:
        self.client = self.collection = None

    def prepare(self) -> None:
        """The collection, created before the clock starts (the layer's is too)."""
        self.collection = self.client.get_or_create_collection(
            COLLECTION,
            configuration={"hnsw": _hnsw()},
            metadata={"archon_metric": "cosine", "archon_dimension": DIMENSION},
            embedding_function=None,
        )

    def _written(self) -> list[str]:
        """This side's collection, and the layer's (named by its database's identity)."""
        names = [getattr(c, "name", c) for c in self.client.list_collections()]
        return [name for name in names if name.startswith(COLLECTION)]

    async def reset(self) -> None:
        for name in self._written():
            self.client.delete_collection(name)
        self.collection = None

    async def ingest(self, batch: Batch) -> None:
        if self.collection is None:
            self.prepare()
        size = self.client.get_max_batch_size()
        for start in range(0, len(batch), size):
            chunks = batch.chunks[start : start + size]
            self.collection.add(
                ids=[str(c.index + 1) for c in chunks],
                embeddings=batch.vectors[start : start + size],
                metadatas=[
                    {
                        "source_id": c.source_id,
                        "url": c.url,
                        "chunk_number": c.chunk_number,
                        "embedding_model": MODEL,
                    }
                    for c in chunks
                ],  # fmt: skip
                documents=[c.content for c in chunks],
            )

    async def digest(self, full: bool) -> Digest:
        """What the side that just ran wrote (the other side's collection was reset before)."""
        names = self._written()
        if not names:
            return Digest(0, 0, 0, None)
        collection = self.client.get_collection(names[0], embedding_function=None)
        count = collection.count()
        summary = None
        if full:
            got = collection.get(include=["embeddings", "metadatas", "documents"])
            rows = sorted(
                (m["url"], m["chunk_number"], doc, {}, m["source_id"], m.get("embedding_model"),
                 DIMENSION, emb)
                for m, doc, emb in zip(got["metadatas"], got["documents"], got["embeddings"],
                                       strict=True)
            )  # fmt: skip
            summary = checksum(rows)
        return Digest(count, count, 0, summary)
