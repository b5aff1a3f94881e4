"""Weaviate: ``WeaviateVectorIndex`` (``index``), its client (``client``) and schema
(``schema``)."""

from app.vector.weaviate.index import WeaviateVectorIndex

__all__ = ["WeaviateVectorIndex"]
