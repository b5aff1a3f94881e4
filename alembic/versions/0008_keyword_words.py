"""Keyword search indexes the text the same way on every backend (``app.search_words``).

A word is a run of letters and decimal digits, lower-cased, matched exactly (no stemming, no accent
folding):

- PostgreSQL: a GIN index over ``to_tsvector('simple', <text with ASCII punctuation as spaces>)``
  per chunk table, read by ``layer.search``. Archon's ``content_search_vector`` (English, stemmed)
  stays as Archon made it, for Archon's own functions.
- SQLite: the FTS5 tables are made again with the ``unicode61`` tokenizer, token characters
  letters, combining marks and decimal digits (``categories 'L* M* Nd'``), diacritics kept, no
  porter stemmer.
- MySQL / MariaDB: the generated ``content_search_vector`` column becomes the text's words: every
  run of characters other than letters, marks and decimal digits turned into a space (InnoDB keeps ``_``,
  ``'`` and numerals such as ``²`` inside a word), lower-cased, in a binary collation (so FULLTEXT
  neither folds accents nor ``ß``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_keyword_words"
down_revision: str | Sequence[str] | None = "0007_audit_log"
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
# SQLite's unicode61 tables are Unicode 6.1's: symbols assigned since (most emoji among them)
# would stick to the letters beside them. They are named as separators. Code point ranges:
LATER_SYMBOLS = [
    (0x58D, 0x58E), (0x605, 0x605), (0x61C, 0x61D), (0x7FE, 0x7FF), (0x888, 0x888),
    (0x890, 0x891), (0x8E2, 0x8E2), (0x9FD, 0x9FD), (0xA76, 0xA76), (0xC77, 0xC77),
    (0xC84, 0xC84), (0xD4F, 0xD4F), (0xD58, 0xD5E), (0xD76, 0xD78), (0x1B7D, 0x1B7E),
    (0x2066, 0x2069), (0x20BA, 0x20C0), (0x218A, 0x218B), (0x23F4, 0x23FF), (0x2700, 0x2700),
    (0x2B4D, 0x2B4F), (0x2B5A, 0x2B73), (0x2B76, 0x2B95), (0x2B97, 0x2BFF), (0x2E3C, 0x2E5D),
    (0x32FF, 0x32FF), (0xA8FC, 0xA8FC), (0xAB5B, 0xAB5B), (0xAB6A, 0xAB6B), (0xFBC2, 0xFBC2),
    (0xFD40, 0xFD4F), (0xFDCF, 0xFDCF), (0xFDFE, 0xFDFF), (0x1018B, 0x1018E), (0x1019C, 0x1019C),
    (0x101A0, 0x101A0), (0x102E1, 0x102FB), (0x1056F, 0x1056F), (0x10877, 0x1087F),
    (0x108A7, 0x108AF), (0x108FB, 0x108FF), (0x109BC, 0x109BD), (0x109C0, 0x109CF),
    (0x109D2, 0x109FF), (0x10A48, 0x10A48), (0x10A9D, 0x10A9F), (0x10AC8, 0x10AC8),
    (0x10AEB, 0x10AF6), (0x10B99, 0x10B9C), (0x10BA9, 0x10BAF), (0x10CFA, 0x10CFF),
    (0x10EAD, 0x10EAD), (0x10F1D, 0x10F26), (0x10F51, 0x10F59), (0x10F86, 0x10F89),
    (0x10FC5, 0x10FCB), (0x110CD, 0x110CD), (0x11174, 0x11175), (0x111CD, 0x111CD),
    (0x111DB, 0x111DB), (0x111DD, 0x111DF), (0x111E1, 0x111F4), (0x11238, 0x1123D),
    (0x112A9, 0x112A9), (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D),
    (0x114C6, 0x114C6), (0x115C1, 0x115D7), (0x11641, 0x11643), (0x11660, 0x1166C),
    (0x116B9, 0x116B9), (0x1173A, 0x1173F), (0x1183B, 0x1183B), (0x118EA, 0x118F2),
    (0x11944, 0x11946), (0x119E2, 0x119E2), (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C),
    (0x11A9E, 0x11AA2), (0x11C41, 0x11C45), (0x11C5A, 0x11C6C), (0x11C70, 0x11C71),
    (0x11EF7, 0x11EF8), (0x11FC0, 0x11FF1), (0x11FFF, 0x11FFF), (0x12463, 0x1246E),
    (0x12474, 0x12474), (0x12FF1, 0x12FF2), (0x13430, 0x13438), (0x16A6E, 0x16A6F),
    (0x16AF5, 0x16AF5), (0x16B37, 0x16B3F), (0x16B44, 0x16B45), (0x16B5B, 0x16B61),
    (0x16E80, 0x16E9A), (0x16FE2, 0x16FE2), (0x1BC9C, 0x1BC9C), (0x1BC9F, 0x1BCA3),
    (0x1CF50, 0x1CFC3), (0x1D1DE, 0x1D1EA), (0x1D2E0, 0x1D2F3), (0x1D372, 0x1D378),
    (0x1D800, 0x1D9FF), (0x1DA37, 0x1DA3A), (0x1DA6D, 0x1DA74), (0x1DA76, 0x1DA83),
    (0x1DA85, 0x1DA8B), (0x1E14F, 0x1E14F), (0x1E2FF, 0x1E2FF), (0x1E8C7, 0x1E8CF),
    (0x1E95E, 0x1E95F), (0x1EC71, 0x1ECB4), (0x1ED01, 0x1ED3D), (0x1F0BF, 0x1F0BF),
    (0x1F0E0, 0x1F0F5), (0x1F10B, 0x1F10F), (0x1F12F, 0x1F12F), (0x1F16C, 0x1F16F),
    (0x1F19B, 0x1F1AD), (0x1F23B, 0x1F23B), (0x1F260, 0x1F265), (0x1F321, 0x1F32F),
    (0x1F336, 0x1F336), (0x1F37D, 0x1F37F), (0x1F394, 0x1F39F), (0x1F3C5, 0x1F3C5),
    (0x1F3CB, 0x1F3DF), (0x1F3F1, 0x1F3FF), (0x1F43F, 0x1F43F), (0x1F441, 0x1F441),
    (0x1F4F8, 0x1F4F8), (0x1F4FD, 0x1F4FF), (0x1F53E, 0x1F53F), (0x1F544, 0x1F54F),
    (0x1F568, 0x1F5FA), (0x1F641, 0x1F644), (0x1F650, 0x1F67F), (0x1F6C6, 0x1F6D7),
    (0x1F6DD, 0x1F6EC), (0x1F6F0, 0x1F6FC), (0x1F780, 0x1F7D8), (0x1F7E0, 0x1F7EB),
    (0x1F7F0, 0x1F7F0), (0x1F800, 0x1F80B), (0x1F810, 0x1F847), (0x1F850, 0x1F859),
    (0x1F860, 0x1F887), (0x1F890, 0x1F8AD), (0x1F8B0, 0x1F8B1), (0x1F900, 0x1FA53),
    (0x1FA60, 0x1FA6D), (0x1FA70, 0x1FA74), (0x1FA78, 0x1FA7C), (0x1FA80, 0x1FA86),
    (0x1FA90, 0x1FAAC), (0x1FAB0, 0x1FABA), (0x1FAC0, 0x1FAC5), (0x1FAD0, 0x1FAD9),
    (0x1FAE0, 0x1FAE7), (0x1FAF0, 0x1FAF6), (0x1FB00, 0x1FB92), (0x1FB94, 0x1FBCA),
]  # fmt: skip
SEPARATORS = "".join(chr(c) for low, high in LATER_SYMBOLS for c in range(low, high + 1))
WORDS_TOKENIZER = (
    f"unicode61 remove_diacritics 0 categories ''L* M* Nd'' separators ''{SEPARATORS}''"
)
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
        expression = "LOWER(REGEXP_REPLACE(" + source + r", '[^\\p{L}\\p{M}\\p{Nd}]+', ' '))"
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
