"""What keyword search makes of the user's text: the same words on every backend.

The text is words, never query syntax: quotes, ``*``, ``OR``, ``NEAR``, ``+``, ``-``, ``@`` are
not operators anywhere. A word is a run of letters and digits (``C++`` is ``c``; ``don't`` is
``don`` and ``t``; ``foo_bar`` is ``foo`` and ``bar``), lower-cased. Every word must match.

Dropped from the query on every backend alike, so no backend requires a word another cannot find:
- words shorter than ``MIN_WORD`` letters: MySQL/MariaDB index no shorter token
  (``innodb_ft_min_token_size`` defaults to 3);
- PostgreSQL's English stop words (``to_tsquery`` drops them) and InnoDB's default stop words
  (never indexed).
A query left with no word matches nothing.

What still differs between backends, by the design of their full-text engines (documented, not
hidden): stemming (PostgreSQL's English stemmer and SQLite's porter match ``limits`` to ``limit``;
MySQL matches whole words only); accents (SQLite and MySQL's collation match ``cafe`` to ``café``,
PostgreSQL does not); and PostgreSQL's parser keeps e-mail addresses, host names and paths in a
document as single tokens (``user@example.com`` is not found by ``example``), while MySQL keeps
``_`` inside a word.
"""

from __future__ import annotations

import re

MIN_WORD = 3
_WORD = re.compile(r"[^\W_]+")
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


def search_words(text: str) -> list[str]:
    """The words every match must contain, in order, each once."""
    words = _WORD.findall(text.lower())
    kept = (w for w in words if len(w) >= MIN_WORD and w not in STOP_WORDS)
    return list(dict.fromkeys(kept))
