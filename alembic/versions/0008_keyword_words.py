"""Keyword search indexes the text the same way on every backend (``app.search_words``).

A word is a run of letters and decimal digits, lower-cased, matched exactly (no stemming, no accent
folding):

- PostgreSQL: a GIN index over ``to_tsvector('simple', <text with ASCII punctuation as spaces>)``
  per chunk table, read by ``layer.search``. Archon's ``content_search_vector`` (English, stemmed)
  stays as Archon made it, for Archon's own functions.
- SQLite: the FTS5 tables are made again with the ``unicode61`` tokenizer, token characters
  letters and decimal digits (``categories 'L* Nd'``), diacritics kept, no porter stemmer.
- MySQL / MariaDB: the generated ``content_search_vector`` column becomes the text's words: every
  run of characters other than letters and decimal digits turned into a space (InnoDB keeps ``_``,
  ``'`` and numerals such as ``²`` inside a word), lower-cased, in a binary collation (so FULLTEXT
  neither folds accents nor ``ß``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_keyword_words"
down_revision: str | Sequence[str] | None = "0005_archon_setup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCHABLE = {"archon_crawled_pages": ("content",), "archon_code_examples": ("content", "summary")}
# ASCII punctuation and symbols as spaces, then the 'simple' configuration's words. Frozen here;
# ``app.search_words.postgresql_words`` builds the same expression (a test holds them equal).
_PUNCTUATION = r"'[!-/:-@\[-`{-~]+', ' ', 'g'"
POSTGRESQL_WORDS = {
    "archon_crawled_pages": "to_tsvector('simple'::regconfig, "
    f"regexp_replace(coalesce(content, ''), {_PUNCTUATION}))",
    "archon_code_examples": "to_tsvector('simple'::regconfig, "
    f"regexp_replace(coalesce(content, '') || ' ' || coalesce(summary, ''), {_PUNCTUATION}))",
}
WORDS_TOKENIZER = "unicode61 remove_diacritics 0 categories ''L* Nd''"
STEMMED_TOKENIZER = "porter unicode61 remove_diacritics 2"


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    for table, columns in SEARCHABLE.items():
        if dialect == "postgresql":
            op.execute(
                f"CREATE INDEX IF NOT EXISTS idx_{table}_search_words ON {table} "
                f"USING gin ({POSTGRESQL_WORDS[table]})"
            )
        elif dialect == "sqlite":
            _remake_fts5(table, columns, WORDS_TOKENIZER)
        else:
            _remake_fulltext(table, columns, lowered=True)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    for table, columns in SEARCHABLE.items():
        if dialect == "postgresql":
            op.execute(f"DROP INDEX IF EXISTS idx_{table}_search_words")
        elif dialect == "sqlite":
            _remake_fts5(table, columns, STEMMED_TOKENIZER)
        else:
            _remake_fulltext(table, columns, lowered=False)


def _remake_fts5(table: str, columns: Sequence[str], tokenizer: str) -> None:
    """The FTS5 table again with ``tokenizer``; its triggers name it and stay as they are."""
    fts = f"{table}_fts"
    names = ", ".join(columns)
    op.execute(f"DROP TABLE {fts}")
    op.execute(
        f"CREATE VIRTUAL TABLE {fts} USING fts5({names}, content='{table}', "
        f"content_rowid='id', tokenize='{tokenizer}')"
    )
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _remake_fulltext(table: str, columns: Sequence[str], *, lowered: bool) -> None:
    source = "CONCAT(" + ", ' ', ".join(f"COALESCE({column}, '')" for column in columns) + ")"
    if lowered:
        expression = "LOWER(REGEXP_REPLACE(" + source + r", '[^\\p{L}\\p{Nd}]+', ' '))"
        collation = "utf8mb4_bin"
    else:
        expression, collation = source, "utf8mb4_unicode_ci"
    op.execute(
        f"ALTER TABLE {table} DROP INDEX idx_{table}_content_search, "
        "DROP COLUMN content_search_vector"
    )
    op.execute(
        f"ALTER TABLE {table} ADD COLUMN content_search_vector LONGTEXT CHARACTER SET utf8mb4 "
        f"COLLATE {collation} GENERATED ALWAYS AS ({expression}) STORED, "
        f"ADD FULLTEXT INDEX idx_{table}_content_search (content_search_vector)"
    )
