"""A folder of Markdown and text files, checked before anything is written, then streamed in.

``scan_folder`` walks the folder once, reading each file to decide whether it can be stored:
a file with a NUL byte or bytes that are not UTF-8 is *skipped* (no backend stores such text),
one whose suffix is not ``.md``, ``.markdown`` or ``.txt`` is *unsupported*; both are named with
the reason. Hidden files and folders (``.git``) are not looked at. Only names, URLs, titles and a
word count are kept, so the scan holds no text. ``ingest_folder`` then reads the files again, one
at a time, and streams them through ``app.documents.ingest_stream``: one Unit of Work for the
whole folder, so an ingest is all or nothing (a failure or a refusal leaves the source as it was).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.documents import (
    SUFFIXES,
    Document,
    Progress,
    ingest_stream,
    source_for,
    title_of,
    url_for,
)
from app.embedding import Embedder
from app.errors import InvalidInputError
from app.ingest_urls import refuse_other_owners

if TYPE_CHECKING:
    from app.bootstrap import DataLayer
    from app.ingest import IngestReport


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file left out, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file that will be ingested: where it is, its URL and title."""

    path: Path
    url: str
    title: str


@dataclass
class FolderScan:
    """What ``scan_folder`` found: files to ingest, files skipped, files of other kinds."""

    files: list[FileEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unsupported: list[Skipped] = field(default_factory=list)
    words: int = 0


def read_text(path: Path) -> tuple[str | None, str | None]:
    """``(text, None)`` for a file every backend can store, else ``(None, reason)``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    nul = data.find(b"\x00")
    if nul >= 0:
        return None, f"contains a NUL byte (at byte {nul}): binary, not text"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at {exc.start})"


def scan_folder(path: Path, url_prefix: str | None = None) -> FolderScan:
    """The files at ``path`` (a file, or a folder walked recursively), sorted, checked."""
    if path.is_file():
        root, candidates = path.parent, [path]
    elif path.is_dir():
        root, candidates = path, sorted(_visible_files(path))
    else:
        raise InvalidInputError(f"{path} is neither a file nor a directory")
    scan = FolderScan()
    for file in candidates:
        if file is not path and file.suffix.lower() not in SUFFIXES:
            kind = file.suffix or "(no suffix)"
            scan.unsupported.append(Skipped(file, f"unsupported file type {kind!r}"))
            continue
        text, reason = read_text(file)
        if text is None:
            scan.skipped.append(Skipped(file, reason or "unreadable"))
            continue
        url = url_for(file, root, url_prefix)
        scan.files.append(FileEntry(file, url, title_of(text) or file.stem))
        scan.words += len(text.split())
    return scan


def _visible_files(root: Path) -> Iterator[Path]:
    for file in root.rglob("*"):
        if file.is_file() and not any(p.startswith(".") for p in file.relative_to(root).parts):
            yield file


def documents_of(scan: FolderScan) -> Iterator[Document]:
    """The scanned files' documents, read one at a time."""
    for entry in scan.files:
        text, reason = read_text(entry.path)
        if text is None:  # it was text when scanned
            raise InvalidInputError(f"{entry.path} changed while it was ingested: it {reason}")
        yield Document(entry.url, entry.title, text)


async def ingest_folder(
    layer: DataLayer,
    name: str,
    scan: FolderScan,
    embedder: Embedder,
    *,
    on_progress: Progress | None = None,
    move: bool = False,
) -> IngestReport:
    """Store the scanned files as the source ``name``, streaming, in one Unit of Work."""
    if not scan.files:
        raise InvalidInputError(f"no Markdown or text files to ingest for {name!r}")
    titles = [entry.title for entry in scan.files[:5]]
    source = source_for(name, titles, len(scan.files), scan.words)
    if not move:  # refused before any file is embedded (a provider bills every call)
        async with layer.uow() as uow:
            urls = [entry.url for entry in scan.files]
            await refuse_other_owners(uow.session, "crawled_pages", urls, source.source_id)
    return await ingest_stream(
        layer, source, documents_of(scan), len(scan.files), embedder,
        on_progress=on_progress, move=move,
    )  # fmt: skip
