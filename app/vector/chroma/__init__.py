"""Chroma, embedded or over HTTP: ``ChromaVectorIndex`` (``index``), the client and its
collections (``store``) and how records are laid out in them (``metadata``)."""

from app.vector.chroma.index import ChromaVectorIndex

__all__ = ["ChromaVectorIndex"]
