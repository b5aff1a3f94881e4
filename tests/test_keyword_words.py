"""Keyword search means the same on every backend: the text is words, every word must match.

Each query of the table gives the same rows on SQLite, PostgreSQL, pgvector and MariaDB: the rows
whose text holds every word of the query (``app.search_words``), checked against the expectation
written here and against the same rule computed in Python over the corpus. The corpus holds what
the backends' engines used to read differently: stemming, accents, ``ß``, e-mail addresses, host
names and paths, ``_`` and ``'`` inside words, numerals such as ``²``, non-ASCII capitals.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.search import _postgresql
from app.search_words import postgresql_words, search_words, text_words
from tests.vector_fixtures import add_chunks

CORPUS = [
    "alpha beta gamma",
    "alpha delta",
    "beta gamma delta",
    "Alpha BETA well-known",
    "café menu 2024",
    "kernel panic report",
    "near kernel report",
    "mail user@example.com now",
    "path /usr/local/bin_dir here",
    "cafe plain",
    "Straße",
    "limits reached",
    "snake_case_name",
    "isn't working",
    "ÉCOLE upper",
    "area² metric",
    "host www.example.org",
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
    "user example": {7},
    "user@example.com": {7},
    "local bin": {8},
    "bin_dir": {8},
    "cafe": {9},
    "café": {4},
    "strasse": set(),
    "straße": {10},
    "limit": set(),
    "limits": {11},
    "snake case": {12},
    "snake_case_name": {12},
    "isn working": {13},
    "école": {14},
    "area": {15},
    "example": {7, 16},
    "org example": {16},
    "x" * 85 + " alpha": set(),
}


def _expected_in_python(query: str) -> set[int]:
    words = search_words(query)
    if not words:
        return set()
    documents = [set(text_words(text)) for text in CORPUS]
    return {i for i, found in enumerate(documents) if all(w in found for w in words)}


def test_the_table_follows_the_rule() -> None:
    assert len(TABLE) >= 15
    assert {q: _expected_in_python(q) for q in TABLE} == TABLE


def test_words_are_letters_and_decimal_digits() -> None:
    assert text_words("x²y ½ foo_bar a+b ÉCOLE user@example.com") == [
        *("x", "y", "foo", "bar", "a", "b", "école", "user", "example", "com")
    ]


def test_the_migration_indexes_what_search_reads() -> None:
    spec = importlib.util.spec_from_file_location(
        "keyword_words", Path(__file__).parents[1] / "alembic/versions/0008_keyword_words.py"
    )
    assert spec is not None and spec.loader is not None
    revision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision)
    for table, columns in revision.SEARCHABLE.items():
        assert revision.POSTGRESQL_WORDS[table] == postgresql_words(columns)


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


@pytest.mark.backends("pgvector", "postgres")
async def test_postgresql_search_reads_the_words_index(layer) -> None:
    statement = _postgresql("code_examples", "kernel report", sa.true())
    compiled = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    async with layer.engine.connect() as connection:
        await connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = (await connection.execute(sa.text(f"EXPLAIN {compiled}"))).scalars().all()
    assert any("idx_archon_code_examples_search_words" in line for line in plan), plan


def test_letters_fold_one_by_one_as_the_servers_fold() -> None:
    # str.lower() on the whole text gives a final "ς" and "i" + U+0307 for "İ"; every server's
    # index holds "σ" and "i", so the typed text could not find itself.
    assert text_words("ΟΔΟΣ İstanbul ǅemal") == ["οδοσ", "istanbul", "ǆemal"]
    assert search_words("ΟΔΟΣ") == ["οδοσ"]


async def test_greek_capitals_find_their_own_row(layer) -> None:
    ids = await add_chunks(
        layer.engine,
        "crawled_pages",
        [{"content": text, "source_id": "words"} for text in ("ΟΔΟΣ upper", "ΔΡΟΜΟΣ other")],
    )
    hits = await layer.search("crawled_pages", text="ΟΔΟΣ", k=10, mode="keyword")
    assert [ids.index(hit.entity.id) for hit in hits] == [0]


@pytest.mark.backends("pgvector", "postgres", "mariadb")
async def test_dotted_capital_i_is_i(layer) -> None:
    # SQLite keeps "İ" unfolded (documented in app.search_words): there only the same spelling
    # finds it.
    ids = await add_chunks(
        layer.engine,
        "crawled_pages",
        [{"content": text, "source_id": "words"} for text in ("İstanbul trip", "Ankara trip")],
    )
    for query in ("İstanbul", "istanbul", "ISTANBUL"):
        hits = await layer.search("crawled_pages", text=query, k=10, mode="keyword")
        assert [ids.index(hit.entity.id) for hit in hits] == [0], query
