"""What keyword search means: the same words, and the same rows, on every backend.

The user's text is words, never query syntax: quotes, ``*``, ``OR``, ``NEAR``, ``+``, ``-``, ``@``
are not operators anywhere. A word is a run of letters, combining marks and decimal digits,
lower-cased: ``C++`` is ``c``; ``don't`` is ``don`` and ``t``; ``foo_bar`` is ``foo`` and ``bar``;
``user@example.com`` is ``user``, ``example`` and ``com``. A row matches when every word of the
query is a word of its text (for code examples, its content and summary), exactly: no stemming
(``limit`` does not find ``limits``), no accent folding (``cafe`` does not find ``café``), no
other folding (``ss`` does not find ``ß``).

Every backend indexes the text so that this holds (migration ``0008_keyword_words``):
PostgreSQL's layer index reads ``to_tsvector('simple', ...)`` over the text with ASCII punctuation
turned into spaces (Archon's own ``content_search_vector``, English and stemmed, stays for Archon's
functions); SQLite's FTS5 tokenizer is ``unicode61`` with letters, marks and decimal digits as
token characters, no diacritic removal, and the symbols Unicode assigned after its tables as
separators; MySQL/MariaDB's FULLTEXT index reads a lower-cased copy in a binary collation with
every run of other characters turned into a space.

Dropped from the query on every backend alike, so no backend requires a word another cannot find:
- words shorter than ``MIN_WORD`` letters: MySQL/MariaDB index no shorter token
  (``innodb_ft_min_token_size`` defaults to 3);
- PostgreSQL's English stop words and InnoDB's default stop words (InnoDB never indexes them).
A query left with no word, or holding a word longer than ``MAX_WORD`` characters (InnoDB indexes
none longer), matches nothing.

Case folding is each letter alone, as the servers fold: a final ``Σ`` is ``σ`` (never ``ς``)
and ``İ`` is ``i``. Beyond that it is each server's: PostgreSQL folds non-ASCII capitals by the
database's ``LC_CTYPE`` (a database created with ``LC_CTYPE=C`` folds only ASCII letters); SQLite
also folds a few letters that lower-casing keeps (final ``ς`` to ``σ``, ``ſ`` to ``s``, ``µ`` to
``μ``), so there one spelling finds the other, and keeps ``İ`` as it is (so there ``istanbul``
does not find ``İstanbul``).

Known disagreements, left as they are (each needs the index made again):
- a PostgreSQL database whose ``LC_CTYPE`` is ``C`` or ``POSIX`` reads every non-ASCII character
  as a letter: there ``dash—word``, ``«quoted»``, ``isn’t`` and ``area²`` are single words;
- letters newer than a backend's Unicode tables: SQLite (Unicode 6.1) splits words at them
  (``foo鿐bar`` is ``foo`` and ``bar``) and does not fold their capitals (``ᲐᲑᲒ``, ``Ꞗ``);
  MariaDB's FULLTEXT parser drops letters beyond the BMP (``𐐨𐐩𐐪``) and some recent CJK ones
  (``鿐``), and its ``LOWER`` keeps ``ẞ`` and Georgian Mtavruli as they are.

``tests/adversarial/test_keyword_agreement.py`` holds every backend to this rule on generated
texts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

MIN_WORD = 3
MAX_WORD = 84
# PostgreSQL's English stop words: to_tsquery drops them.
_POSTGRESQL_STOP_WORDS = """a about above after again against all am an and any are as at be because
    been before being below between both but by can did do does doing don down during each few for
    from further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own s same she should so some such t than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with you your yours yourself yourselves"""
# InnoDB's default full-text stop words (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD).
_INNODB_STOP_WORDS = """a about an are as at be by com de en for from how i in is it la of on or
    that the this to was what when where who will with und www"""
STOP_WORDS = frozenset((_POSTGRESQL_STOP_WORDS + " " + _INNODB_STOP_WORDS).split())


def text_words(text: str) -> list[str]:
    """The words of ``text``: runs of letters, combining marks and decimal digits, lower-cased.

    ``_`` and numerals such as ``²`` or ``½`` separate words, as on every backend's index; a
    combining mark stays with its letter (``e`` + U+0301).
    """
    return "".join(_lower(c) if _in_word(c) else " " for c in text).split()


def _lower(char: str) -> str:
    """One character lower-cased alone, as the servers fold: ``str.lower`` on the whole text
    would make a final ``Σ`` a ``ς`` (they give ``σ``) and ``İ`` two characters (they give ``i``).
    """
    return "i" if char == "\u0130" else char.lower()


def _in_word(char: str) -> bool:
    return char.isalpha() or char.isdecimal() or unicodedata.category(char).startswith("M")


def search_words(text: str) -> list[str]:
    """The words every match must contain, in order, each once; none when nothing can match."""
    words = text_words(text)
    if any(len(word) > MAX_WORD for word in words):
        return []
    kept = (w for w in words if len(w) >= MIN_WORD and w not in STOP_WORDS)
    return list(dict.fromkeys(kept))


# ASCII punctuation and symbols: !"#$%&'()*+,-./ :;<=>?@ [\]^_` {|}~
POSTGRESQL_PUNCTUATION = r"[!-/:-@\[-`{-~]+"


def postgresql_words(columns: Sequence[str]) -> str:
    """PostgreSQL's words of a chunk's text: the indexed expression (migration 0008) that
    ``app.search`` matches, so the index serves it."""
    text = " || ' ' || ".join(f"coalesce({column}, '')" for column in columns)
    return (
        f"to_tsvector('simple'::regconfig, "
        f"regexp_replace({text}, '{POSTGRESQL_PUNCTUATION}', ' ', 'g'))"
    )
