"""Split Markdown or plain text into numbered chunks of about ``max_chars`` characters.

Chunks end on block boundaries: a heading starts a new chunk (once the current one holds at least
``min_chars``), paragraphs are packed together up to ``max_chars``, fenced code blocks are never
cut in the middle of a line, and only a block longer than ``max_chars`` on its own is split (at
sentence ends, else at whitespace). Each chunk carries the heading path it sits under, which ingest
keeps in the chunk's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from app.errors import InvalidInputError

DEFAULT_MAX_CHARS = 1000
DEFAULT_MIN_CHARS = 200
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document: ``number`` counts from 0, ``section`` is its heading path."""

    number: int
    text: str
    section: str | None = None


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    level: int = 0  # heading level, 0 for anything else
    code: bool = False


def chunk_markdown(
    text: str, *, max_chars: int = DEFAULT_MAX_CHARS, min_chars: int = DEFAULT_MIN_CHARS
) -> list[Chunk]:
    """The chunks of a Markdown (or plain-text) document, in order; none for blank text."""
    if max_chars < 50:
        raise InvalidInputError(f"max_chars must be at least 50, got {max_chars}")
    min_chars = min(min_chars, max_chars)
    chunks: list[Chunk] = []
    parts: list[str] = []
    section: str | None = None
    headings: list[tuple[int, str]] = []

    def flush() -> None:
        body = "\n\n".join(parts).strip()
        if body:
            chunks.append(Chunk(len(chunks), body, section))
        parts.clear()

    for block in _pieces(_blocks(text), max_chars):
        size = sum(len(p) + 2 for p in parts)
        if block.level and parts and size >= min_chars:
            flush()
        elif parts and size + len(block.text) > max_chars:
            flush()
        if block.level:
            headings = [h for h in headings if h[0] < block.level] + [(block.level, block.text)]
        if not parts:
            section = " > ".join(_heading_title(h[1]) for h in headings) or None
        parts.append(block.text)
    flush()
    return chunks


def _heading_title(line: str) -> str:
    match = _HEADING.match(line)
    return match.group(2) if match else line


def _blocks(text: str) -> Iterator[_Block]:
    """Paragraphs, headings and fenced code blocks, in document order."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    paragraph: list[str] = []
    fence: str | None = None
    code: list[str] = []
    for line in lines:
        if fence is not None:
            code.append(line)
            if line.strip().startswith(fence):
                yield _Block("\n".join(code), code=True)
                fence, code = None, []
            continue
        opening = _FENCE.match(line)
        heading = _HEADING.match(line)
        if opening or heading or not line.strip():
            if paragraph:
                yield _Block("\n".join(paragraph).strip())
                paragraph = []
        if opening:
            fence, code = opening.group(1), [line]
        elif heading:
            yield _Block(line.strip(), level=len(heading.group(1)))
        elif line.strip():
            paragraph.append(line)
    if paragraph:
        yield _Block("\n".join(paragraph).strip())
    if code:  # an unclosed fence keeps what it has
        yield _Block("\n".join(code), code=True)


def _pieces(blocks: Iterator[_Block], max_chars: int) -> Iterator[_Block]:
    """Blocks no longer than ``max_chars``: long ones split at lines or sentences."""
    for block in blocks:
        if len(block.text) <= max_chars:
            yield block
            continue
        units = block.text.split("\n") if block.code else _SENTENCE_END.split(block.text)
        joiner = "\n" if block.code else " "
        for piece in _pack(units, max_chars, joiner):
            yield _Block(piece, code=block.code)


def _pack(units: list[str], max_chars: int, joiner: str) -> Iterator[str]:
    current = ""
    for unit in (u for raw in units for u in _hard_split(raw, max_chars)):
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) <= max_chars:
            current = candidate
        else:
            if current:
                yield current
            current = unit
    if current:
        yield current


def _hard_split(unit: str, max_chars: int) -> Iterator[str]:
    """A sentence or line longer than ``max_chars`` cut at the last whitespace that fits."""
    while len(unit) > max_chars:
        cut = unit.rfind(" ", 0, max_chars + 1)
        cut = cut if cut > max_chars // 2 else max_chars
        yield unit[:cut].rstrip()
        unit = unit[cut:].lstrip()
    if unit:
        yield unit
