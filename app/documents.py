"""Markdown and text files into the knowledge base: read, chunk, embed, ``layer.ingest``.

Used by ``archon-db ingest`` and the demo. One source per call; each file is one URL whose chunks
(``app.chunking``) replace whatever that URL held before, with one vector per chunk from the
embedder (``app.embedding``), whose name and length are recorded on every row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.chunking import Chunk, chunk_markdown
from app.domain import CrawledPage, Source
from app.embedding import Embedder
from app.errors import InvalidInputError

if TYPE_CHECKING:
    from app.bootstrap import DataLayer
    from app.ingest import IngestReport

SUFFIXES = (".md", ".markdown", ".txt")
Progress = Callable[[str, int, int], Any]  # (stage, done, total)


@dataclass(frozen=True, slots=True)
class Document:
    """One file to ingest: where it is known from (``url``), its title and text."""

    url: str
    title: str
    text: str


def source_id_for(name: str) -> str:
    """Archon's source id: 16 hex characters of the SHA-256 of the name."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: a command-line byte that is not UTF-8
        raise InvalidInputError(
            f"source name {name!r} is not valid text: {exc.reason} at position {exc.start}"
        ) from None
    return hashlib.sha256(encoded).hexdigest()[:16]


def find_files(path: Path) -> list[Path]:
    """``path`` itself, or the Markdown and text files under it, sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InvalidInputError(f"{path} is neither a file nor a directory")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_documents(path: Path, url_prefix: str | None = None) -> list[Document]:
    """The documents at ``path``; URLs are ``url_prefix`` + the relative path, or file URIs."""
    root = path if path.is_dir() else path.parent
    documents = []
    for file in find_files(path):
        text = file.read_text(encoding="utf-8", errors="replace")
        relative = file.relative_to(root).as_posix()
        url = f"{url_prefix}{relative}" if url_prefix else file.resolve().as_uri()
        documents.append(Document(url, _title(text) or file.stem, text))
    return documents


def _title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


def chunk_documents(
    documents: Iterable[Document], source_id: str, embedder: Embedder
) -> list[tuple[CrawledPage, Chunk]]:
    """One ``CrawledPage`` per chunk of each document (no vectors yet)."""
    pages = []
    for document in documents:
        for chunk in chunk_markdown(document.text):
            metadata = {"title": document.title, "section": chunk.section, "source_type": "file"}
            page = CrawledPage(
                url=document.url,
                chunk_number=chunk.number,
                content=chunk.text,
                metadata_={k: v for k, v in metadata.items() if v is not None},
                source_id=source_id,
                embedding_model=embedder.model_name,
                embedding_dimension=embedder.dimension,
            )
            pages.append((page, chunk))
    return pages


async def ingest_documents(
    layer: DataLayer,
    name: str,
    documents: Sequence[Document],
    embedder: Embedder,
    *,
    on_progress: Progress | None = None,
    batch_size: int = 64,
) -> IngestReport:
    """Store ``documents`` as the source ``name``: chunked, embedded, in one Unit of Work."""
    if not documents:
        raise InvalidInputError(f"no Markdown or text documents to ingest for {name!r}")
    source_id = source_id_for(name)
    pages = chunk_documents(documents, source_id, embedder)
    vectors: list[list[float]] = []
    for start in range(0, len(pages), batch_size):
        batch = pages[start : start + batch_size]
        vectors.extend(embedder.embed([page.content for page, _ in batch]))
        if on_progress is not None:
            on_progress("embedding", len(vectors), len(pages))
    words = sum(len(page.content.split()) for page, _ in pages)
    source = Source(
        source_id=source_id,
        title=name,
        source_display_name=name,
        summary=f"{len(documents)} document(s): " + ", ".join(d.title for d in documents[:5]),
        total_word_count=words,
        metadata_={"knowledge_type": "technical", "source_type": "file"},
    )

    def writing(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress("writing", done, total)

    items = [(page, vector) for (page, _), vector in zip(pages, vectors, strict=True)]
    return await layer.ingest(
        source, items, embedding_model=embedder.model_name, on_progress=writing
    )
