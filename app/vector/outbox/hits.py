"""Searching an external store so that no hit is ever attributed to a row it was not written for.

The store's candidates are checked against their rows in one read: a hit whose row is gone, holds
no vector of that length, no longer matches the filters, or whose vector changed since (its score
differs beyond float32 rounding) is dropped and counted, and more candidates are fetched until
``k`` hits stand or the store has no more. The scores returned are computed from the rows. When
the store holds fewer matching vectors than the rows (a new, emptied or drifted store), or the
filter names a field the store does not hold (``id``, ``content``...), the rows answer instead,
exactly: a search for ``k`` returns ``k`` whenever ``k`` rows match.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInputError, translate_errors
from app.filters import fields_of, parse_filters
from app.vector.arguments import check_k
from app.vector.outbox.rows import as_vector
from app.vector.outbox.rows import fields_of as row_fields
from app.vector.port import VectorHit, collection_table
from app.vector.sql.common import ENTITIES, HIT_FIELDS, embedding_column

log = logging.getLogger(__name__)
SCORE_TOLERANCE = 1e-3
MAX_CANDIDATES = 4096


class CheckedSearch:
    """One search of a store fed from the rows that ``rows`` (bound to ``session``) reads."""

    def __init__(self, feed: Any, rows: Any, session: AsyncSession) -> None:
        self.feed = feed
        self.rows = rows
        self.session = session

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        filters: Mapping[str, Any] | None,
        embedding_model: str | None,
    ) -> list[VectorHit]:
        """The store's ``k`` nearest, each checked against its row (see the module docstring)."""
        k = check_k(k)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be an integer of at least 1, got {k!r}")
        collection_table(collection)
        # Checked against the rows' columns (unknown fields, wrong types) before anything runs,
        # and compiled once for every read of the rows below.
        where = self.rows.filter_clause(collection, filters, embedding_model)
        if not stored_fields_only(filters):  # e.g. id or content: the store does not hold them
            return list(await self.rows.query(collection, vector, k, filters,
                                              embedding_model=embedding_model))  # fmt: skip
        await self.feed.ready(self.session)
        kept = await self._from_store(collection, vector, k, filters, embedding_model, where)
        if len(kept) < k and await self._matching(collection, vector, where) > len(kept):
            # The store holds fewer than the rows (a new, emptied or drifted store): answer from
            # the rows, exactly, and say what repairs the store.
            log.warning(
                "%s: the %s store lacks vectors the rows hold; answering from the rows. Run "
                "`archon-db vectors reconcile --apply` (or `rebuild`)",
                collection,
                self.feed.name,
            )
            return list(await self.rows.query(collection, vector, k, filters,
                                              embedding_model=embedding_model))  # fmt: skip
        return kept

    async def _from_store(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        filters: Mapping[str, Any] | None,
        embedding_model: str | None,
        where: Any,
    ) -> list[VectorHit]:
        fetch, dropped, kept = k, 0, []
        while True:
            hits = await self.feed.store.query(
                collection, vector, fetch, filters, embedding_model=embedding_model
            )
            kept = await self._checked(collection, vector, hits, where)
            dropped = len(hits) - len(kept)
            if not dropped or len(kept) >= k or len(hits) < fetch or fetch >= MAX_CANDIDATES:
                break
            fetch = min(MAX_CANDIDATES, fetch * 4 + dropped)
        if dropped:
            self.feed.note_dropped(collection, dropped)
        return kept[:k]

    async def _matching(self, collection: str, vector: Sequence[float], where: Any) -> int:
        """How many rows hold a vector of this length and match the filters."""
        table = ENTITIES[collection].__table__
        column: Any = sa.literal_column(embedding_column(len(vector)))
        if len(vector) not in await self.rows.dimensions(collection):
            return 0
        statement = sa.select(sa.func.count()).select_from(table).where(column.is_not(None), where)
        with translate_errors(f"counting the vectors of {table.name}"):
            return int((await self.session.execute(statement)).scalar_one())

    async def _checked(
        self,
        collection: str,
        vector: Sequence[float],
        hits: Sequence[VectorHit],
        where: Any,
    ) -> list[VectorHit]:
        """The hits whose row holds the vector the store scored, matching ``where``."""
        ids = []
        for hit in hits:
            try:
                ids.append(int(hit.id))
            except (TypeError, ValueError):
                continue
        if not ids:
            return []
        dimension = len(vector)
        table = ENTITIES[collection].__table__
        column: Any = sa.literal_column(embedding_column(dimension))
        statement = sa.select(
            table.c.id, *(table.c[n] for n in HIT_FIELDS), column.label("vector")
        ).where(table.c.id.in_(ids), column.is_not(None), where)
        await self.rows._prepare_connection(self.session)
        with translate_errors(f"checking the hits against {table.name}"):
            rows = {int(r.id): r for r in (await self.session.execute(statement)).all()}
        metric = (await self.feed.store.dimensions(collection)).get(dimension, "cosine")
        query = np.asarray(vector, dtype=np.float64)
        kept = []
        for hit in hits:
            row = rows.get(_as_int(hit.id) or -1)
            if row is None:
                continue
            score = row_score(metric, query, as_vector(row.vector, dimension))
            if abs(score - hit.score) <= SCORE_TOLERANCE * max(1.0, abs(score)):
                kept.append(VectorHit(int(row.id), score, row_fields(row)))
        return kept


def stored_fields_only(filters: Mapping[str, Any] | None) -> bool:
    """Whether a filter only addresses fields a store's records hold (``HIT_FIELDS``)."""
    fields = fields_of(parse_filters(filters))
    return all(field.split(".", 1)[0] in HIT_FIELDS for field in fields)


def row_score(metric: str, query: np.ndarray, vector: np.ndarray) -> float:
    """Higher-is-better score of a row's vector, as the store computes it (float64)."""
    stored = vector.astype(np.float64)
    if metric == "l2":
        return -float(np.linalg.norm(query - stored))
    dot = float(query @ stored)
    if metric == "inner_product":
        return dot
    norms = float(np.linalg.norm(query) * np.linalg.norm(stored))
    return dot / norms if norms else 0.0


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


