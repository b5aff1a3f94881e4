"""``uow.vectors`` for the stores that cannot join a SQL transaction (Chroma, Weaviate).

Writes are validated at once, then recorded as rows of the outbox (``app.vector.outbox``) through
the Unit of Work's own session, so they commit or roll back with the entities; an after-commit
hook applies them. Reads go to the store and see what has been applied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from app.domain.types import utcnow
from app.errors import BackendUnavailableError, InvalidInputError, translate_errors
from app.filter_eval import evaluate
from app.filters import parse_filters
from app.vector.external import PreparedGroup, by_dimension, prepare_group
from app.vector.outbox import (
    DrainReport,
    decode_payload,
    encode_vector,
    mask_secrets,
    outbox,
    upsert_payload,
)
from app.vector.outbox_apply import Recorded, apply_recorded
from app.vector.port import (
    Metric,
    RecordId,
    VectorHit,
    VectorRecord,
    collection_table,
)

log = logging.getLogger(__name__)


class OutboxVectorIndex:
    """A Unit of Work's view of an external store: reads go to the store, writes to the outbox.

    Reads see what has been applied, not what this Unit of Work has recorded but not committed.
    ``upsert`` and ``delete`` return how many operations were recorded.
    """

    def __init__(self, index: Any, uow: Any) -> None:
        self.index = index
        self.uow = uow
        self.last_report: DrainReport | None = None
        self._recorded: list[Recorded] = []
        self._engine: Any = None

    @property
    def capabilities(self) -> Any:
        return self.index.capabilities

    async def ensure_collection(
        self, collection: str, dimension: int, metric: Metric = "cosine"
    ) -> None:
        """Straight to the store: creating a collection is idempotent and holds no rows."""
        await self.index.ensure_collection(collection, dimension, metric)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Validate now, store after commit."""
        collection_table(collection)
        records = list(records)
        groups = await self._prepare(collection, records)
        rows = [
            {"record_id": str(id_), "op": "upsert", "vector": encode_vector(group.matrix[i]),
             "payload": upsert_payload(id_, group.metadata_json[i], group.documents[i])}
            for group in groups
            for i, id_ in enumerate(group.ids)
        ]  # fmt: skip
        await self._record(Recorded(collection, groups=groups), rows)
        return len(records)

    async def _prepare(self, collection: str, records: list[VectorRecord]) -> list[PreparedGroup]:
        """The store's own checks; only the universal ones while it cannot be reached."""
        prepare = getattr(self.index, "prepare_records", None)
        validate = getattr(self.index, "validate_records", None)
        try:
            if prepare is not None:
                return list(await prepare(collection, records))
            if validate is not None:
                await validate(collection, records)
                return _converted(records, cosine=False)
        except BackendUnavailableError:
            # The point of the outbox: the commit need not wait for the store.
            log.info("vector store unreachable; the records are checked again when applied")
        return _converted(records, cosine=True)

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Remove these ids from the store after commit."""
        collection_table(collection)
        unique = list(dict.fromkeys(ids))
        rows = [
            {"record_id": str(i), "op": "delete", "payload": json.dumps({"id": i}), "vector": None}
            for i in unique
        ]
        await self._record(Recorded(collection, deletes=unique), rows)
        return len(unique)

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        """Resolve ``filters`` to ids now (the store and the pending writes), delete those."""
        node = parse_filters(filters)
        if node is None:
            raise InvalidInputError("delete_where needs a filter; use delete(ids) for known ids")
        pending = await self._pending_state(collection)
        stored = await self.index.ids_where(collection, filters)
        ids = [i for i in stored if str(i) not in pending]
        for op, payload in pending.values():
            if op == "upsert" and evaluate(node, payload["metadata"]):
                ids.append(payload["id"])
        return await self.delete(collection, ids) if ids else 0

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """The store's answer (applied writes only)."""
        hits = await self.index.query(
            collection, vector, k, filters, embedding_model=embedding_model
        )
        return list(hits)

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        """The store's count (applied writes only)."""
        return int(await self.index.count(collection, filters))

    def __getattr__(self, name: str) -> Any:
        # hybrid, describe, dimensions...: the store's own, read-only extras.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.index, name)

    async def _record(self, recorded: Recorded, rows: list[dict[str, Any]]) -> None:
        """Insert the rows (one executemany); apply ``recorded`` from memory after commit."""
        if not rows:
            return
        now = utcnow()
        common = {"batch": recorded.batch, "collection": recorded.collection, "attempts": 0,
                  "created_at": now, "updated_at": now}  # fmt: skip
        for row in rows:
            row.update(common)
        with translate_errors("recording vector writes in the outbox"):
            await self.uow.session.execute(outbox.insert(), rows)
        recorded.rows = len(rows)
        self._engine = self.uow.session.bind
        self._recorded.append(recorded)
        self.uow.after_commit(self._apply)

    async def _apply(self) -> None:
        # One hook per write call; the first to run applies every write of the transaction.
        recorded, self._recorded = self._recorded, []
        if not recorded:
            return
        try:
            report = await apply_recorded(self.index, self._engine, recorded)
        except Exception as exc:  # the commit stands; the rows stay pending for a replay
            log.warning(
                "vector outbox: could not apply %d write(s) (%s); `archon-db vectors sync` will",
                len(recorded),
                mask_secrets(str(exc)),
            )
            report = DrainReport(errors=[mask_secrets(str(exc))])
        else:
            if report.failed:
                log.warning(
                    "vector outbox: %d operation(s) left pending (%s); run `archon-db vectors "
                    "sync` once the store is reachable",
                    report.failed,
                    "; ".join(report.errors),
                )
        self.last_report = report

    async def _pending_state(self, collection: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """The newest pending operation per record id, as this transaction sees the outbox."""
        query = (
            sa.select(outbox.c.record_id, outbox.c.op, outbox.c.payload)
            .where(outbox.c.collection == collection)
            .order_by(outbox.c.id)
        )
        with translate_errors("reading the vector outbox"):
            rows = (await self.uow.session.execute(query)).all()
        return {row.record_id: (row.op, decode_payload(row.payload)) for row in rows}


def _converted(records: list[VectorRecord], *, cosine: bool) -> list[PreparedGroup]:
    return [prepare_group(d, group, cosine=cosine) for d, group in by_dimension(records).items()]
