"""The local hashing embedder, the Markdown chunker and reading documents from files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.chunking import chunk_markdown
from app.documents import chunk_documents, read_documents, source_id_for
from app.embedding import Embedder, HashingEmbedder, default_embedder
from app.errors import InvalidInputError

CORPUS = Path(__file__).parents[1] / "app" / "demo_corpus"


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class TestHashingEmbedder:
    def test_vectors_have_the_dimension_and_unit_length(self) -> None:
        embedder = HashingEmbedder(100)
        vectors = embedder.embed(["token bucket rate limiting", "", "the and of"])
        assert [len(v) for v in vectors] == [100, 100, 100]
        assert all(np.linalg.norm(v) == pytest.approx(1.0) for v in vectors)
        assert embedder.model_name == "archon-hashing-v1-100"

    def test_it_is_an_embedder(self) -> None:
        assert isinstance(default_embedder(), Embedder)
        assert default_embedder().dimension == 384

    def test_equal_texts_give_equal_vectors_in_any_process(self) -> None:
        text = "PostgreSQL GIN indexes serve jsonb containment"
        here = HashingEmbedder().embed([text])[0]
        code = (
            "from app.embedding import HashingEmbedder;"
            f"print(repr(HashingEmbedder().embed([{text!r}])[0]))"
        )
        there = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert eval(there) == here  # noqa: S307 - a list of floats we printed ourselves

    def test_shared_words_score_higher_than_unrelated_text(self) -> None:
        embedder = HashingEmbedder()
        query, near, far = embedder.embed(
            [
                "token bucket rate limiting",
                "A token bucket refills at a fixed rate; rate limiting rejects bursts.",
                "Coroutines await sockets while the event loop runs other tasks.",
            ]
        )
        assert cosine(query, near) > 0.4
        assert cosine(query, near) > cosine(query, far) + 0.3

    def test_case_punctuation_and_stop_words_do_not_matter(self) -> None:
        embedder = HashingEmbedder()
        a, b = embedder.embed(["The Token-Bucket, of rate limiting!", "token bucket rate limiting"])
        assert a == pytest.approx(b)

    def test_word_order_matters_through_bigrams(self) -> None:
        embedder = HashingEmbedder()
        a, b = embedder.embed(["index scan sequential", "sequential scan index"])
        assert 0.5 < cosine(a, b) < 0.999

    def test_text_without_words_gets_a_fixed_nonzero_vector(self) -> None:
        empty, symbols = HashingEmbedder().embed(["", "!!! ??? the"])
        assert empty == symbols
        assert any(empty)

    def test_a_single_string_is_refused(self) -> None:
        with pytest.raises(InvalidInputError, match="list of texts"):
            HashingEmbedder().embed("not a list")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            HashingEmbedder(1)


MARKDOWN = """# Guide

Intro paragraph that is long enough to matter. It explains the purpose of the guide in a few
sentences so that the first chunk has some body.

## Install

Run the installer. Then check the version.

```python
def main():
    return 1

print(main())
```

## Use

Short.
"""


class TestChunkMarkdown:
    def test_chunks_are_numbered_and_keep_every_word(self) -> None:
        chunks = chunk_markdown(MARKDOWN, max_chars=200, min_chars=50)
        assert [c.number for c in chunks] == list(range(len(chunks)))
        assert " ".join(c.text for c in chunks).split() == MARKDOWN.split()

    def test_headings_start_chunks_and_give_their_section(self) -> None:
        chunks = chunk_markdown(MARKDOWN, max_chars=200, min_chars=50)
        assert chunks[0].text.startswith("# Guide") and chunks[0].section == "Guide"
        install = next(c for c in chunks if c.text.startswith("## Install"))
        assert install.section == "Guide > Install"

    def test_small_sections_are_merged_until_min_chars(self) -> None:
        text = "# A\n\none.\n\n## B\n\ntwo.\n\n## C\n\nthree."
        (chunk,) = chunk_markdown(text, max_chars=1000, min_chars=200)
        assert chunk.section == "A" and "## C" in chunk.text

    def test_code_fences_stay_whole(self) -> None:
        chunks = chunk_markdown(MARKDOWN, max_chars=200, min_chars=50)
        code = next(c for c in chunks if "```python" in c.text)
        assert code.text.count("```") == 2

    def test_no_chunk_is_longer_than_max_chars(self) -> None:
        text = CORPUS.joinpath("postgresql-indexing.md").read_text()
        long_paragraph = " ".join(f"Sentence number {i} talks about indexes." for i in range(80))
        giant_word = "x" * 2500
        for source in (text, long_paragraph, giant_word):
            chunks = chunk_markdown(source, max_chars=300)
            assert chunks and all(len(c.text) <= 300 for c in chunks)

    def test_long_paragraphs_split_at_sentence_ends(self) -> None:
        paragraph = " ".join(f"Sentence {i} is here." for i in range(100))
        chunks = chunk_markdown(paragraph, max_chars=200)
        assert all(re.search(r"\.$", c.text) for c in chunks)

    def test_blank_text_has_no_chunks_and_tiny_limits_are_refused(self) -> None:
        assert chunk_markdown("  \n\n ") == []
        with pytest.raises(InvalidInputError):
            chunk_markdown("text", max_chars=10)

    def test_plain_text_chunks_by_paragraph(self) -> None:
        text = "\n\n".join(f"Paragraph {i}. " + "word " * 40 for i in range(10))
        chunks = chunk_markdown(text, max_chars=500)
        assert len(chunks) > 1 and all(c.section is None for c in chunks)
        assert all(c.text.startswith("Paragraph") for c in chunks)


class TestDocuments:
    def test_read_documents_names_titles_and_urls(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        (tmp_path / "a.md").write_text("# Alpha\n\ntext")
        (tmp_path / "sub" / "b.txt").write_text("plain text")
        (tmp_path / "skip.py").write_text("print()")

        docs = read_documents(tmp_path, url_prefix="docs://")

        assert [(d.url, d.title) for d in docs] == [
            ("docs://a.md", "Alpha"),
            ("docs://sub/b.txt", "b"),
        ]
        (single,) = read_documents(tmp_path / "a.md")
        assert single.url == (tmp_path / "a.md").resolve().as_uri()

    def test_chunks_carry_the_source_model_and_section(self) -> None:
        docs = read_documents(CORPUS, url_prefix="demo://")
        embedder = HashingEmbedder()
        pages = chunk_documents(docs, source_id_for("demo"), embedder)

        assert len(docs) >= 4 and len(pages) > len(docs)
        page, chunk = pages[1]
        assert page.source_id == source_id_for("demo") and len(page.source_id) == 16
        assert page.embedding_model == embedder.model_name and page.embedding_dimension == 384
        assert page.metadata_["section"] == chunk.section
        assert all(1 <= len(p.content) <= 1000 for p, _ in pages)

    def test_every_bundled_document_is_substantial(self) -> None:
        files = sorted(CORPUS.glob("*.md"))
        assert len(files) >= 4
        for file in files:
            assert 1000 <= len(file.read_text()) <= 3500, file.name
