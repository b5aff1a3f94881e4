"""Keyword search means the same on every backend: the text is words, every word must match.

Each query of the table gives the same rows on SQLite, PostgreSQL, pgvector and MariaDB: the rows
whose text holds every word of the query (``app.search_words``), checked against the expectation
written here and against the same rule computed in Python over the corpus. The corpus avoids what
the backends' engines still do differently (stemming, accents folding, e-mail and host tokens).
"""

from __future__ import annotations

import re

from app.search_words import search_words
from tests.vector_fixtures import add_chunks

CORPUS = [
    "alpha beta gamma",
    "alpha delta",
    "beta gamma delta",
    "Alpha BETA well-known",
    "café menu 2024",
    "kernel panic report",
    "near kernel report",
]
# query -> the corpus rows (by index) it finds
TABLE = {
    "alpha beta": {0, 3},
    '"alpha beta"': {0, 3},
    "alpha*": {0, 1, 3},
    "alpha OR delta": {1},
    "NEAR(kernel report)": {6},
    "+alpha -beta": {0, 3},
    "@alpha": {0, 1, 3},
    "C++": set(),
    "don't": set(),
    "the of and": set(),
    "*": set(),
    "CAFÉ": {4},
    "ALPHA Gamma": {0},
    "well-known": {3},
    "2024": {4},
    "kernel_panic": {5},
    '"kernel" AND "panic"': {5},
    "beta NOT delta": {2},
    "ab alpha": {0, 1, 3},
    "alpha^2 (beta)": {0, 3},
    "com alpha": {0, 1, 3},
    "zzz": set(),
}


def _expected_in_python(query: str) -> set[int]:
    words = search_words(query)
    if not words:
        return set()
    documents = [set(re.findall(r"[^\W_]+", text.lower())) for text in CORPUS]
    return {i for i, found in enumerate(documents) if all(w in found for w in words)}


def test_the_table_follows_the_rule() -> None:
    assert len(TABLE) >= 15
    assert {q: _expected_in_python(q) for q in TABLE} == TABLE


def test_query_syntax_is_words() -> None:
    assert search_words('NEAR(a b) OR * "x"') == ["near"]
    assert search_words("C++ don't ab") == []
    assert search_words("Foo_BAR foo") == ["foo", "bar"]


async def test_every_backend_finds_the_same_rows(layer) -> None:
    rows = [
        {"url": f"https://words.example.com/{i}", "content": t, "source_id": "words"}
        for i, t in enumerate(CORPUS)
    ]
    ids = await add_chunks(layer.engine, "crawled_pages", rows)
    found = {}
    for query in TABLE:
        hits = await layer.search("crawled_pages", text=query, k=100, mode="keyword")
        found[query] = {ids.index(hit.entity.id) for hit in hits}
    assert found == TABLE


async def test_a_word_in_every_row_is_found(layer) -> None:
    # MySQL's relevance is 0 for a word every row holds: matching must not hang on relevance.
    await add_chunks(
        layer.engine, "crawled_pages", [{"content": "lonely zebra", "source_id": "words"}]
    )
    hits = await layer.search("crawled_pages", text="zebra", k=5, mode="keyword")
    assert [hit.entity.content for hit in hits] == ["lonely zebra"]
