"""Markdown and text into the knowledge base: chunk, embed and ``layer.ingest``, as a stream.

Used by ``archon-db ingest`` (through ``app.folders``) and the demo. One source per call; each
document is one URL whose chunks (``app.chunking``) replace whatever that URL held before, with
one vector per chunk from the embedder (``app.embedding``), whose name and length are recorded on
every row. Documents are chunked and embedded one at a time while ``layer.ingest`` writes them in
batches, so memory holds one document and one write batch, never the whole corpus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.chunking import Chunk, chunk_markdown
from app.domain import CrawledPage, Source
from app.embedding import Embedder
from app.errors import InvalidInputError

if TYPE_CHECKING:
    from app.bootstrap import DataLayer
    from app.ingest import IngestReport, Item

SUFFIXES = (".md", ".markdown", ".txt")
EMBED_BATCH = 64
Progress = Callable[[str, int, int], Any]  # (stage, done, total)


@dataclass(frozen=True, slots=True)
class Document:
    """One file to ingest: where it is known from (``url``), its title and text."""

    url: str
    title: str
    text: str


def source_id_for(name: str) -> str:
    """Archon's source id: 16 hex characters of the SHA-256 of the name (a blank name names no
    source: InvalidInputError)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"source name {name!r} is blank: give the source a name")
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
        url = url_for(file, root, url_prefix)
        documents.append(Document(url, title_of(text) or file.stem, text))
    return documents


def url_for(file: Path, root: Path, url_prefix: str | None) -> str:
    """``url_prefix`` + the path relative to ``root``, or the file's URI."""
    if url_prefix:
        return f"{url_prefix}{file.relative_to(root).as_posix()}"
    return file.resolve().as_uri()


def title_of(text: str) -> str | None:
    """The text of the first level-1 heading."""
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


def pages_of(
    document: Document, source_id: str, embedder: Embedder
) -> Iterator[tuple[CrawledPage, Chunk]]:
    """One ``CrawledPage`` per chunk of ``document`` (no vector yet)."""
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
        yield page, chunk


def chunk_documents(
    documents: Iterable[Document], source_id: str, embedder: Embedder
) -> list[tuple[CrawledPage, Chunk]]:
    """One ``CrawledPage`` per chunk of each document (no vectors yet)."""
    return [pair for document in documents for pair in pages_of(document, source_id, embedder)]


def embedded(
    documents: Iterable[Document],
    source_id: str,
    embedder: Embedder,
    on_document: Callable[[], Any] | None = None,
) -> Iterator[Item]:
    """``(page, vector)`` for every chunk, one document at a time; ``on_document()`` after each."""
    for document in documents:
        pages = [page for page, _ in pages_of(document, source_id, embedder)]
        for start in range(0, len(pages), EMBED_BATCH):
            batch = pages[start : start + EMBED_BATCH]
            # float32 rows: a fifth of the memory of lists of Python floats, and what is stored.
            vectors = np.asarray(embedder.embed([page.content for page in batch]), np.float32)
            yield from zip(batch, vectors, strict=True)
        if on_document is not None:
            on_document()


def source_for(name: str, titles: Sequence[str], documents: int, words: int) -> Source:
    """The source row of ``documents`` files named ``name`` (``titles``: the first few)."""
    return Source(
        source_id=source_id_for(name),
        title=name,
        source_display_name=name,
        summary=f"{documents} document(s): " + ", ".join(titles[:5]),
        total_word_count=words,
        metadata_={"knowledge_type": "technical", "source_type": "file"},
    )


async def ingest_documents(
    layer: DataLayer,
    name: str,
    documents: Sequence[Document],
    embedder: Embedder,
    *,
    on_progress: Progress | None = None,
    move: bool = False,
) -> IngestReport:
    """Store ``documents`` as the source ``name``: chunked, embedded, in one Unit of Work."""
    if not documents:
        raise InvalidInputError(f"no Markdown or text documents to ingest for {name!r}")
    words = sum(len(document.text.split()) for document in documents)
    source = source_for(name, [d.title for d in documents[:5]], len(documents), words)
    return await ingest_stream(
        layer, source, documents, len(documents), embedder, on_progress=on_progress, move=move
    )


async def ingest_stream(
    layer: DataLayer,
    source: Source,
    documents: Iterable[Document],
    count: int,
    embedder: Embedder,
    *,
    on_progress: Progress | None = None,
    move: bool = False,
) -> IngestReport:
    """Chunk, embed and write ``documents`` (``count`` of them) as ``source``, streaming, in one
    Unit of Work: all of them or, on any error, none. Progress stages: ``embedding`` (documents),
    ``writing`` (chunks)."""
    done = 0

    def document_done() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress("embedding", done, count)

    def writing(written: int, total: int) -> None:
        if on_progress is not None:
            on_progress("writing", written, total)

    items = embedded(documents, source.source_id, embedder, document_done)
    return await layer.ingest(
        source, items, embedding_model=embedder.model_name, on_progress=writing, move=move
    )
