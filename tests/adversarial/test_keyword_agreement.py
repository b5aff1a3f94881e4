"""Generated texts and queries: keyword search gives, on every backend, exactly the rows the rule
of ``app.search_words`` selects (every word of the query a word of the text, matched exactly).

The pieces are what full-text engines read differently: accents, ``ß``, ligatures, numerals such
as ``²``, e-mail addresses, paths, versions, ``_`` and apostrophes, non-ASCII capitals and
punctuation, scripts without spaces, emoji. ``TEST_FUZZ_EXAMPLES`` examples per backend.
"""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bootstrap import DataLayer
from app.search_words import search_words, text_words
from tests.vector_fixtures import add_chunks

EXAMPLES = int(os.environ.get("TEST_FUZZ_EXAMPLES", "25"))
PIECES = [
    "alpha", "Beta", "ALPHA", "café", "cafe", "CAFÉ", "straße", "strasse", "ÉCOLE", "école",
    "limit", "limits", "x²y", "area²", "naïve", "naive", "ﬁle", "file", "日本語", "foo_bar",
    "isn't", "isn’t", "user@example.com", "/usr/local/bin", "1.2.3", "v2", "abc123", "2024",
    "ǅemal", "Ωmega", "ωmega", "🙂smile", "✅done", "cafe\u0301", "x\u20ddy", "«quoted»",
    "dash—word", "well-known", "C++", "the", "ΟΔΟΣ", "οδοσ",
]  # fmt: skip
SEPARATORS = [" ", "  ", "\n", ", ", ". ", "-", "/", "_", "'", "—", "\t"]
documents = st.lists(
    st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from(SEPARATORS)), min_size=1,
             max_size=6).map(lambda parts: "".join(p + s for p, s in parts)),
    min_size=1, max_size=5,
)  # fmt: skip
queries = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map(" ".join)
examples = itertools.count()


def expected(corpus: list[str], query: str) -> set[int]:
    words = search_words(query)
    return {
        i for i, text in enumerate(corpus) if words and set(words) <= set(text_words(text))
    }


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(corpus=documents, query=queries)
async def test_every_backend_selects_the_rule_s_rows(
    layer: DataLayer, corpus: list[str], query: str
) -> None:
    source = f"agree-{next(examples)}"
    rows = [
        {"url": f"https://{source}.example.com/{i}", "content": text, "source_id": source}
        for i, text in enumerate(corpus)
    ]
    ids = await add_chunks(layer.engine, "crawled_pages", rows)
    hits = await layer.search(
        "crawled_pages", text=query, k=100, mode="keyword", filters={"source_id": source}
    )
    assert {ids.index(hit.entity.id) for hit in hits} == expected(corpus, query), (corpus, query)
