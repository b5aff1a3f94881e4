"""Weaviate's side of ``WeaviateVectorIndex``: the client, collections per dimension, writes,
property definitions, hits and errors."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from app.config import Settings
from app.errors import BackendUnavailableError, DataLayerError, InvalidInputError
from app.vector.external.records import flatten, from_json
from app.vector.outbox.table import mask_secrets
from app.vector.port import VectorHit, VectorRecord, collection_table
from app.vector.weaviate.schema import (
    BASE_PROPERTIES,
    DOCUMENT_PROPERTY,
    ID_PROPERTY,
    JSON_PROPERTY,
    new_properties,
    record_properties,
)

DISTANCES = {"cosine": "cosine", "l2": "l2-squared", "inner_product": "dot"}
BATCH = 500


class WeaviateStore:
    """One async client and the collections of each (collection, dimension), with their schema."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self._client = client
        self.types: dict[str, dict[str, str]] = {}  # collection name -> property -> type
        self._metrics: dict[str, str] = {}
        self.namespace: str | None = None

    def use_namespace(self, namespace: str | None) -> None:
        """Name collections for the database whose identity gives ``namespace`` from now on."""
        self.namespace = namespace

    async def client(self) -> Any:
        """The connected client, created on first use."""
        if self._client is None:
            client = connect(self.settings)
            await client.connect()
            self._client = client
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def name_for(self, collection: str, dimension: int) -> str:
        """The Weaviate collection holding ``collection``'s vectors of ``dimension``."""
        suffix = f"_{self.namespace}" if self.namespace else ""
        return f"Archon_{collection}_{dimension}{suffix}"

    def dimension_of(self, collection: str, name: str, namespace: str | None) -> int | None:
        """The dimension a collection name stands for under ``namespace``, or None."""
        prefix = f"Archon_{collection}_"
        rest = name[len(prefix) :] if name.startswith(prefix) else ""
        match = re.fullmatch(rf"([0-9]+)_{namespace}" if namespace else "([0-9]+)", rest)
        return int(match.group(1)) if match else None

    async def names(self) -> list[str]:
        """Every ``Archon_`` collection on the server (ours, legacy or another database's)."""
        client = await self.client()
        return sorted(n for n in await client.collections.list_all(simple=True) if
                      n.startswith("Archon_"))  # fmt: skip

    async def drop_names(self, names: Sequence[str]) -> None:
        client = await self.client()
        for name in names:
            await client.collections.delete(name)
            self._metrics.pop(name, None)
            self.types.pop(name, None)

    async def metric(self, collection: str, dimension: int) -> str | None:
        """The metric of the collection for ``dimension``; ``None`` when it does not exist."""
        collection_table(collection)
        name = self.name_for(collection, dimension)
        if name not in self._metrics:
            client = await self.client()
            if not await client.collections.exists(name):
                return None
            await self.read_schema(client.collections.use(name))
        return self._metrics[name]

    async def read_schema(self, col: Any) -> None:
        """(Re-)read a collection's metric and property types."""
        config = await col.config.get()
        distance = distance_of(config)
        self._metrics[col.name] = next((m for m, d in DISTANCES.items() if d == distance), "cosine")
        self.types[col.name] = {p.name: str(p.data_type.value) for p in config.properties}

    async def create(self, collection: str, dimension: int, metric: str) -> None:
        name = self.name_for(collection, dimension)
        await create_collection(await self.client(), name, DISTANCES[metric])
        self._metrics[name] = metric
        self.types[name] = dict(BASE_PROPERTIES)

    async def collection(self, collection: str, dimension: int) -> Any:
        return (await self.client()).collections.use(self.name_for(collection, dimension))

    async def collections(self, collection: str) -> list[Any]:
        """Every existing Weaviate collection of ``collection``."""
        client = await self.client()
        names = await client.collections.list_all(simple=True)
        return [
            client.collections.use(n)
            for n in sorted(names)
            if self.dimension_of(collection, n, self.namespace) is not None
        ]

    async def write(self, col: Any, records: list[VectorRecord]) -> None:
        """Batch-import records (the same UUID is overwritten), adding missing properties."""
        from weaviate.classes.data import DataObject
        from weaviate.util import generate_uuid5

        types = self.types.setdefault(col.name, {})
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            flats = [flatten(r.metadata) for r in batch]
            for prop, kind in new_properties(flats, types).items():
                await col.config.add_property(property_config(prop, kind))
                types[prop] = kind
            objects = [
                DataObject(
                    properties=record_properties(r, flat, types),
                    uuid=generate_uuid5(str(r.id)),
                    vector=[float(x) for x in r.vector],
                )
                for r, flat in zip(batch, flats, strict=True)
            ]
            result = await col.data.insert_many(objects)
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise DataLayerError(f"Weaviate refused {len(result.errors)} object(s): {first}")


async def create_collection(client: Any, name: str, distance: str) -> None:
    """A collection of self-provided vectors (HNSW, ``distance``) with Archon's base properties."""
    from weaviate.classes.config import Configure, VectorDistances

    await client.collections.create(
        name,
        vector_config=Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(
                distance_metric=VectorDistances(distance), ef_construction=200, max_connections=32
            )
        ),
        inverted_index_config=Configure.inverted_index(index_null_state=True),
        properties=[property_config(n, kind) for n, kind in BASE_PROPERTIES.items()],
    )


def property_config(name: str, kind: str) -> Any:
    from weaviate.classes.config import DataType, Property, Tokenization

    if name == JSON_PROPERTY:  # returned, never searched or filtered on
        return Property(
            name=name, data_type=DataType.TEXT, index_filterable=False, index_searchable=False
        )
    # Metadata text compares whole values (field tokenization); the document is searched by word.
    exact = kind.startswith("text") and name != DOCUMENT_PROPERTY
    return Property(
        name=name, data_type=DataType(kind), tokenization=Tokenization.FIELD if exact else None
    )


def distance_of(config: Any) -> str:
    """The distance name of a collection's (default, self-provided) vector index."""
    vectors = getattr(config, "vector_config", None) or {}
    index = next(iter(vectors.values())).vector_index_config if vectors else None
    index = index or config.vector_index_config
    metric = index.distance_metric
    return str(getattr(metric, "value", metric))


def to_hit(obj: Any, metric: str, hybrid: bool) -> VectorHit:
    props = obj.properties
    if hybrid:
        score = float(obj.metadata.score or 0.0)
    elif metric == "l2":
        score = -math.sqrt(max(float(obj.metadata.distance), 0.0))
    elif metric == "inner_product":
        score = -float(obj.metadata.distance)  # Weaviate's dot distance is the negated dot
    else:
        score = 1.0 - float(obj.metadata.distance)
    return VectorHit(json.loads(props[ID_PROPERTY]), score, from_json(props.get(JSON_PROPERTY)))


def connect(settings: Settings) -> Any:
    """An (unconnected) async Weaviate client for ``WEAVIATE_URL`` / ``WEAVIATE_API_KEY``."""
    import weaviate
    from weaviate.classes.init import Auth

    url = urlsplit(settings.weaviate_url or "")
    key = settings.weaviate_api_key
    auth = Auth.api_key(key.get_secret_value()) if key and key.get_secret_value() else None
    secure = url.scheme == "https"
    host = url.hostname or "localhost"
    grpc_port = int(parse_qs(url.query).get("grpc_port", ["50051"])[0])
    if host.endswith((".weaviate.cloud", ".weaviate.network")) and auth is not None:
        return weaviate.use_async_with_weaviate_cloud(f"https://{host}", auth_credentials=auth)
    return weaviate.use_async_with_custom(
        http_host=host,
        http_port=url.port or (443 if secure else 8080),
        http_secure=secure,
        grpc_host=host,
        grpc_port=grpc_port,
        grpc_secure=secure,
        auth_credentials=auth,
    )


def translate_error(
    exc: Exception, action: str, location: str, settings: Settings
) -> DataLayerError:
    """A Weaviate or OS error as one of ours, with the API key and other secrets masked."""
    from weaviate import exceptions as wx

    detail = mask_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else "")[:300]
    key = settings.weaviate_api_key
    if key is not None and key.get_secret_value():
        detail = detail.replace(key.get_secret_value(), "***")
    unreachable = (
        wx.WeaviateConnectionError,
        wx.WeaviateClosedClientError,
        wx.WeaviateTimeoutError,
        OSError,
    )
    if isinstance(exc, unreachable):
        return BackendUnavailableError(
            f"{action} failed: Weaviate at {location} could not be reached ({detail}); "
            "start it or check WEAVIATE_URL / WEAVIATE_API_KEY"
        )
    if isinstance(exc, wx.WeaviateInvalidInputError | ValueError):
        return InvalidInputError(f"{action} failed: Weaviate refused the input ({detail})")
    return DataLayerError(f"{action} failed: Weaviate error ({detail})")
