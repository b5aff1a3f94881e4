"""Chroma's side of ``ChromaVectorIndex``: the client, the collections per dimension, ``where``.

Everything here is synchronous (Chroma's client is) and runs in a worker thread; errors come out as
``app.errors`` exceptions with secrets masked.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from app.errors import BackendUnavailableError, DataLayerError, InvalidInputError, scrub
from app.vector.chroma.metadata import (
    FLAGS_LAYOUT,
    LAYOUT_KEY,
    ChromaDialect,
    Where,
    metadata_of,
    stored_metadata,
    uses_flags,
)
from app.vector.external.records import ARCHON_DIMENSIONS, PreparedGroup
from app.vector.port import COLLECTIONS, collection_table

T = TypeVar("T")
log = logging.getLogger(__name__)
SPACES: dict[str, str] = {"cosine": "cosine", "l2": "l2", "inner_product": "ip"}
MAX_DIMENSION = 65536
# Above Chroma's defaults (100 / 100 / 16): recall@10 stays >= 0.95 on filtered searches.
HNSW = {"ef_construction": 200, "ef_search": 128, "max_neighbors": 32}


class ChromaStore:
    """One Chroma client and the collections of each (collection, dimension)."""

    def __init__(
        self, url: str | None, path: str, client: Any = None, connect_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.path = path
        self._client = client
        self._lock = threading.Lock()
        self._collections: dict[str, Any] = {}
        self._dims: dict[str, dict[int, str]] = {}
        self._batch_size: int | None = None
        self.namespace: str | None = None

    def use_namespace(self, namespace: str | None) -> None:
        """Name collections for the database whose identity gives ``namespace`` from now on."""
        if namespace != self.namespace:
            self._collections.clear()
            self._dims.clear()
            self.namespace = namespace

    @property
    def present(self) -> bool:
        """Whether the store exists (a server, or an embedded folder): reads never create one.
        Anything else at the folder's path counts, so that using it fails and says so."""
        return bool(self.url) or self._client is not None or os.path.exists(self.path)

    def client(self) -> Any:
        """The Chroma client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        options = ChromaSettings(anonymized_telemetry=False)
        if not self.url:
            return chromadb.PersistentClient(path=self.path, settings=options)
        parts = urlsplit(self.url)
        secure = parts.scheme == "https"
        host, port = parts.hostname or "localhost", parts.port or (443 if secure else 8000)
        self._answers(f"{parts.scheme}://{host}:{port}", f"{host}:{port}")
        try:
            return chromadb.HttpClient(
                host=host,
                port=port,
                ssl=secure,
                settings=options,
            )
        except ValueError as exc:  # the client says "could not connect" with a ValueError
            raise ConnectionError(str(exc)) from exc

    def _answers(self, base: str, address: str) -> None:
        """Fail within ``connect_timeout`` when the server does not answer: Chroma's own client
        waits without a limit, so a server that accepts and never answers hung its first call.
        Any answer will do (an older server's 404 too): the client reports the rest."""
        import httpx

        try:
            httpx.get(f"{base}/api/v2/heartbeat", timeout=self.connect_timeout)
        except httpx.TimeoutException as exc:
            raise ConnectionError(
                f"no answer from {address} within {self.connect_timeout:g} s "
                "(DATABASE_CONNECT_TIMEOUT)"
            ) from exc
        except httpx.HTTPError:
            pass

    def release(self, *, hard: bool = False) -> None:
        """Close the client. ``hard``: also stop the embedded system Chroma caches by path, for
        every client of this process (a folder about to be moved)."""
        client, self._client = self._client, None
        self.forget()
        closers = [getattr(client, "close", None)]
        if hard and not self.url:
            from chromadb.api.shared_system_client import SharedSystemClient

            system = SharedSystemClient._identifier_to_system.pop(self.path, None)
            SharedSystemClient._identifier_to_refcount.pop(self.path, None)
            closers.append(getattr(system, "stop", None))
        for closing in closers:
            if closing is None:
                continue
            try:
                closing()
            except Exception as exc:  # a broken store may fail to close; it is let go anyway
                log.info("closing the Chroma store at %s: %s", self.path, scrub(str(exc)))

    def quarantine(self) -> str | None:
        """Move an embedded store's folder aside (``<folder>.broken-<time>``); None for a server."""
        if self.url or not os.path.exists(self.path):
            return None
        self.release(hard=True)
        target = f"{self.path}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
        os.rename(self.path, target)
        return target

    def forget_collections(self) -> None:
        """Drop the cached collection handles (the client stays)."""
        self._collections.clear()
        self._dims.clear()

    @staticmethod
    def vanished(exc: Exception) -> bool:
        """Whether ``exc`` says a cached collection no longer exists."""
        from chromadb.errors import NotFoundError

        return isinstance(exc, NotFoundError) or "does not exist" in str(exc)

    def forget(self) -> None:
        """Drop the client and every cached collection."""
        self._collections.clear()
        self._dims.clear()
        self._batch_size = None
        self._client = None

    @property
    def batch_size(self) -> int:
        """Chroma's maximum batch size (asked once: over HTTP it is a request)."""
        if self._batch_size is None:
            self._batch_size = max(int(self.client().get_max_batch_size()), 1)
        return self._batch_size

    def name_for(self, collection: str, dimension: int) -> str:
        """The Chroma collection holding ``collection``'s vectors of ``dimension``."""
        suffix = f"_{self.namespace}" if self.namespace else ""
        return f"archon_{collection}_{dimension}{suffix}"

    def _dimension_of(self, collection: str, name: str, namespace: str | None) -> int | None:
        """The dimension a collection name stands for under ``namespace``, or None."""
        prefix = f"archon_{collection}_"
        rest = name[len(prefix) :] if name.startswith(prefix) else ""
        pattern = rf"([0-9]+)_{namespace}" if namespace else "([0-9]+)"
        match = re.fullmatch(pattern, rest)
        return int(match.group(1)) if match else None

    def existing(self, collection: str, dimension: int | None = None) -> dict[int, str]:
        """Dimension -> metric of ``collection``'s Chroma collections (re-read on a miss)."""
        collection_table(collection)
        known = self._dims.get(collection)
        if known is not None and (dimension is None or dimension in known):
            return known
        if not self.present:
            return {}
        found: dict[int, str] = {}
        for item in self.client().list_collections():
            name = getattr(item, "name", item)
            found_dimension = self._dimension_of(collection, name, self.namespace)
            if found_dimension is not None:
                metric = (getattr(item, "metadata", None) or {}).get("archon_metric", "cosine")
                found[found_dimension] = metric
        self._dims[collection] = found
        return found

    def names(self) -> list[str]:
        """Every ``archon_`` collection in the store (ours, legacy or another database's)."""
        if not self.present:
            return []
        names = (getattr(c, "name", c) for c in self.client().list_collections())
        return sorted(name for name in names if name.startswith("archon_"))

    def foreign(self) -> list[str]:
        """The ``archon_`` collections that are not this database's (never read)."""
        ours = {self.name_for(c, d) for c in COLLECTIONS for d in self.existing(c)}
        return [name for name in self.names() if name not in ours]

    def legacy(self, collection: str) -> dict[int, Any]:
        """Dimension -> collection written before collections were named by the database."""
        found = {}
        for name in self.names():
            dimension = self._dimension_of(collection, name, None)
            if dimension is not None:
                found[dimension] = self.client().get_collection(name, embedding_function=None)
        return found

    def drop(self, collection: str) -> dict[int, str]:
        """Delete this database's collections of ``collection``; dimension -> metric they had."""
        dropped = dict(self.existing(collection))
        for dimension in dropped:
            name = self.name_for(collection, dimension)
            self.client().delete_collection(name)
            self._collections.pop(name, None)
        self._dims.pop(collection, None)
        return dropped

    def drop_names(self, names: Sequence[str]) -> None:
        """Delete these collections (``foreign`` ones, when pruning)."""
        for name in names:
            self.client().delete_collection(name)
        self._collections.clear()
        self._dims.clear()

    def stored_ids(self, collection: str, dimension: int) -> list[str]:
        """The ids held in the collection of ``dimension``."""
        col = self.collection(collection, dimension, create=False)
        if col is None:
            return []
        return [id_ for id_, _ in self.scan(col, None, include=[])]

    def stored_records(self, collection: str, dimension: int, ids: Sequence[str]) -> dict:
        """id -> (stored vector, metadata) of those ``ids`` the collection holds."""
        col = self.collection(collection, dimension, create=False)
        found: dict[str, Any] = {}
        if col is None:
            return found
        for batch in batches(list(ids), self.batch_size):
            got = col.get(ids=list(batch), include=["embeddings", "metadatas"])
            for id_, vector, meta in zip(
                got["ids"], got["embeddings"], got["metadatas"], strict=True
            ):
                found[id_] = (vector, metadata_of(meta or {}))
        return found

    def metric(self, collection: str, dimension: int) -> str | None:
        """The metric of the collection for ``dimension``; ``None`` when it does not exist."""
        return self.existing(collection, dimension).get(dimension)

    def collection(self, collection: str, dimension: int, *, create: bool) -> Any | None:
        """The Chroma collection; Archon's dimensions are created on demand when ``create``."""
        name = self.name_for(collection, dimension)
        if name in self._collections:
            return self._collections[name]
        if dimension in self.existing(collection, dimension):
            found = self.client().get_collection(name, embedding_function=None)
        elif create and dimension in ARCHON_DIMENSIONS:
            found = self.ensure(collection, dimension, "cosine")
        else:
            return None
        self._collections[name] = found
        return found

    def collections(self, collection: str) -> Iterator[Any]:
        """Every existing Chroma collection of ``collection``, by dimension."""
        for dimension in sorted(self.existing(collection)):
            found = self.collection(collection, dimension, create=False)
            if found is not None:
                yield found

    def ensure(self, collection: str, dimension: int, metric: str) -> Any:
        """Create (or find) the collection; a different metric than the existing one is refused."""
        if metric not in SPACES:
            raise InvalidInputError(f"unknown metric {metric!r}; use one of {sorted(SPACES)}")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise InvalidInputError(f"dimension must be between 1 and {MAX_DIMENSION}")
        name = self.name_for(collection, dimension)
        existing = self.metric(collection, dimension)
        if existing is not None and existing != metric:
            raise InvalidInputError(
                f"{name} exists with metric {existing!r}, not {metric!r}; "
                "one metric per collection and dimension"
            )
        found = self.client().get_or_create_collection(
            name,
            configuration={"hnsw": {"space": SPACES[metric], **HNSW}},
            # An existing collection keeps its own metadata, hence its layout.
            metadata={
                "archon_metric": metric,
                "archon_dimension": dimension,
                LAYOUT_KEY: FLAGS_LAYOUT,
            },
            embedding_function=None,
        )
        self._collections[name] = found
        self._dims.setdefault(collection, {})[dimension] = metric
        return found

    def dimension_error(self, collection: str, received: int) -> InvalidInputError:
        known = sorted(set(ARCHON_DIMENSIONS) | set(self.existing(collection)))
        return InvalidInputError(
            f"wrong vector length: expected one of {', '.join(map(str, known))}, received "
            f"{received}; run `archon-db vectors add-dimension {received}` to store vectors "
            "of that length"
        )

    def write(self, collection: str, group: PreparedGroup) -> None:
        """Upsert one dimension's records in batches; remove their ids from other dimensions."""
        col = self.collection(collection, group.dimension, create=True)
        if col is None:
            raise self.dimension_error(collection, group.dimension)
        others = [d for d in self.existing(collection) if d != group.dimension]
        flags = uses_flags(col.metadata)
        with_documents = any(group.documents)
        for start in range(0, len(group.ids), self.batch_size):
            stop = start + self.batch_size
            ids = [str(i) for i in group.ids[start:stop]]
            for other in others:  # a row re-embedded at another length moves collections
                found = self.collection(collection, other, create=False)
                if found is not None:
                    found.delete(ids=ids)
            metadatas = [
                stored_metadata(id_, flat, text, flags=flags)
                for id_, flat, text in zip(
                    group.ids[start:stop], group.flat[start:stop],
                    group.metadata_json[start:stop], strict=True,
                )
            ]  # fmt: skip
            documents = group.documents[start:stop] if with_documents else None
            _add_or_upsert(col, ids, group.matrix[start:stop], metadatas, documents)

    def has_opaque(self, col: Any, keys: set[str]) -> bool:
        """Whether any record holds one of ``keys`` as a value Chroma cannot filter on."""
        where = self.dialect(col).any_opaque(sorted(keys))
        return bool(col.get(where=where, limit=1, include=[])["ids"])

    @staticmethod
    def dialect(col: Any) -> ChromaDialect:
        """The ``where`` dialect of the collection's layout."""
        return ChromaDialect(uses_flags(col.metadata))

    def scan(
        self, col: Any, where: Where | None, include: Sequence[str] = ("metadatas",)
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, stored metadata) of every record ``where`` selects, page by page."""
        page, offset = self.batch_size, 0
        while True:
            got = col.get(where=where, include=list(include), limit=page, offset=offset)
            metadatas = got.get("metadatas") or [None] * len(got["ids"])
            yield from zip(got["ids"], (m or {} for m in metadatas), strict=True)
            if len(got["ids"]) < page:
                return
            offset += page

    def describe(self) -> dict[str, Any]:
        if not self.present:
            return {"collections": {}, "missing": f"no store folder at {self.path} yet"}
        client = self.client()
        return {
            "server version": client.get_version(),
            "max batch size": client.get_max_batch_size(),
            "collections": {
                name: client.get_collection(name, embedding_function=None).count()
                for name in self.names()
            },
        }

    @contextmanager
    def errors(self, action: str, location: str) -> Iterator[None]:
        """Chroma's, httpx's and the OS's errors as ``app.errors`` exceptions."""
        try:
            yield
        except DataLayerError:
            raise
        except Exception as exc:
            raise translate_error(exc, action, location) from exc


def translate_error(exc: Exception, action: str, location: str) -> DataLayerError:
    """A Chroma, httpx or OS error as one of ours, with any secret masked."""
    import httpx
    from chromadb import errors as chroma_errors

    detail = scrub(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = detail if len(detail) <= 300 else detail[:300] + "…"
    if isinstance(exc, httpx.HTTPError | ConnectionError | OSError | TimeoutError):
        return BackendUnavailableError(
            f"{action} failed: Chroma at {location} could not be reached ({detail}); "
            "start it or check CHROMA_URL / CHROMA_PATH"
        )
    invalid = (chroma_errors.InvalidArgumentError, chroma_errors.DuplicateIDError, ValueError)
    if isinstance(exc, invalid):
        return InvalidInputError(f"{action} failed: Chroma refused the input ({detail})")
    return DataLayerError(f"{action} failed: Chroma error ({detail})")


def _add_or_upsert(
    col: Any, ids: list[str], matrix: Any, metadatas: list[dict[str, Any]], documents: Any
) -> None:
    """``add`` the ids the collection lacks, ``upsert`` the others, whole.

    ``add`` is measurably cheaper than ``upsert`` for new ids, and one ``get`` of the batch's ids
    costs little. Chroma's ``upsert`` merges metadata into what the id holds, so the keys the new
    metadata lacks are cleared with ``None``. ``add`` skips an id that exists: a concurrent writer
    adding one of these ids between the two calls wins, as it would by writing a moment later;
    the outbox's row locks keep its own writes of an id in order.
    """
    found = col.get(ids=ids, include=["metadatas"])
    held = dict(zip(found["ids"], found["metadatas"], strict=True))
    if not held:
        col.add(ids=ids, embeddings=matrix, metadatas=metadatas, documents=documents)
        return
    for i, id_ in enumerate(ids):
        if id_ in held:
            metadatas[i] = {**dict.fromkeys(held[id_] or {}), **metadatas[i]}
    for write, existing in ((col.add, False), (col.upsert, True)):
        taken = [i for i, id_ in enumerate(ids) if (id_ in held) is existing]
        if taken:
            write(
                ids=[ids[i] for i in taken],
                embeddings=matrix[taken],
                metadatas=[metadatas[i] for i in taken],
                documents=None if documents is None else [documents[i] for i in taken],
            )


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]
