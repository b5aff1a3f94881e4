"""``archon-db doctor``: what the configured database and vector store can do, and why.

Prints, per section, every capability detected: the database (dialect, server version, schema
revision, extensions, keyword-search structures, embedding columns), the vector index (which one,
why it was picked when ``VECTOR_DATABASE`` is unset, its capabilities, collections, pending
outbox operations) and the embedder the command line uses. Exit 2 when the database or the store
cannot be reached.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli.session import Url, out, resolved_index, with_layer
from app.config import DatabaseType, Settings, chroma_folder, mask_url, sqlite_file
from app.embedding import default_embedder
from app.errors import translate_errors
from app.vector.outbox.table import pending_summary
from app.vector.port import COLLECTIONS

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

Rows = list[tuple[str, str]]


def doctor(url: Url = None) -> None:
    """Print every detected capability of the configured database and vector backend."""
    sections = with_layer(url, diagnose, must_exist=True)
    for title, rows in sections:
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in rows:
            table.add_row(name, value)
        out.print(table)


async def diagnose(layer: DataLayer) -> list[tuple[str, Rows]]:
    """The doctor's sections: database, vector index, embedder."""
    return [
        ("Database", await database_rows(layer)),
        ("Vector index", await vector_rows(layer)),
        ("Embedder (command line and demo)", embedder_rows()),
    ]


async def database_rows(layer: DataLayer) -> Rows:
    from app import migrations

    settings = layer.settings
    dialect = layer.engine.dialect
    rows: Rows = [
        ("type", str(getattr(settings.database_type, "value", settings.database_type))),
        ("url", settings.safe_database_url),
        ("driver", f"{dialect.name}+{dialect.driver}"),
    ]
    async with AsyncSession(layer.engine) as session:
        with translate_errors("connecting to the database"):
            await session.execute(sa.text("SELECT 1"))
        version = ".".join(map(str, dialect.server_version_info or ()))
        mariadb = " (MariaDB)" if getattr(dialect, "is_mariadb", False) else ""
        rows.append(("server version", version + mariadb))
        rows += await _dialect_rows(session, dialect.name, settings)
        columns = await _embedding_columns(session)
        rows.append(("embedding columns", columns or "none"))
    revision = await migrations.current(layer.engine)
    head = migrations.head()
    state = "up to date" if revision == head else f"head is {head}: run `archon-db migrate upgrade`"
    rows.append(("schema revision", f"{revision or '(none)'} ({state})"))
    replicas = await layer.replica_status()
    rows.append(("read replicas", str(len(replicas))))
    rows += [(f"replica {r['url']}", _replica_state(r)) for r in replicas]
    rows.append(("query logging", "on" if settings.enable_query_logging else "off"))
    rows.append(("audit log", "on" if settings.enable_audit_log else "off"))
    return rows


def _replica_state(replica: dict[str, Any]) -> str:
    lag = replica["lag_seconds"]
    state = "healthy" if replica["healthy"] else "down"
    if lag is not None:
        state += f", lag {lag:.1f} s"
    if replica["skipped_reason"]:
        state += f", skipped ({replica['skipped_reason']})"
    return state


async def _scalar(session: AsyncSession, query: str, **params: Any) -> Any:
    with translate_errors("inspecting the database"):
        return (await session.execute(sa.text(query), params)).scalar()


async def _dialect_rows(session: AsyncSession, dialect: str, settings: Settings) -> Rows:
    if dialect == "postgresql":
        found = await session.execute(sa.text("SELECT extname, extversion FROM pg_extension"))
        extensions: dict[str, str] = {str(n): str(v) for n, v in found.all()}
        pooled = settings.database_type is DatabaseType.SUPABASE
        return [
            ("extensions", ", ".join(f"{n} {v}" for n, v in sorted(extensions.items()))),
            ("pgvector", extensions.get("vector", "not installed")),
            ("keyword search", "tsvector words index + ts_rank_cd"),
            (
                "prepared statements",
                "cache off, unique names (pooler safe)" if pooled else "cached per connection",
            ),
        ]
    if dialect == "sqlite":
        fts = await _scalar(
            session, "SELECT count(*) FROM sqlite_master WHERE name = 'archon_crawled_pages_fts'"
        )
        options = (await session.execute(sa.text("PRAGMA compile_options"))).scalars().all()
        return [
            ("journal mode", str(await _scalar(session, "PRAGMA journal_mode"))),
            ("foreign keys", "on" if await _scalar(session, "PRAGMA foreign_keys") else "off"),
            ("FTS5 compiled in", "yes" if "ENABLE_FTS5" in options else "no"),
            ("keyword search", "FTS5 + bm25" if fts else "FTS5 tables missing (migrate)"),
            ("JSON containment", "archon_json_contains() registered on connect"),
        ]
    fulltext = await _scalar(
        session,
        "SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
        "AND table_name = 'archon_crawled_pages' AND index_type = 'FULLTEXT'",
    )
    return [
        ("keyword search", "FULLTEXT natural language" if fulltext else "no FULLTEXT (migrate)"),
        ("RETURNING", "MariaDB only; not relied upon"),
    ]


async def _embedding_columns(session: AsyncSession) -> str:
    from app.vector.sql.common import embedding_columns

    parts = []
    for table in COLLECTIONS.values():
        columns = await embedding_columns(session, table)
        kinds = ", ".join(f"{dim} ({kind})" for dim, kind in sorted(columns.items()))
        if kinds:
            parts.append(f"{table}: {kinds}")
    return "; ".join(parts)


async def vector_rows(layer: DataLayer) -> Rows:
    settings = layer.settings
    configured = settings.vector_database
    index = await resolved_index(layer)
    caps = index.capabilities
    rows: Rows = [
        ("VECTOR_DATABASE", configured.value if configured else "unset: picked by detection"),
        ("in use", caps.name),
        ("why", await choice_reason(layer)),
        ("metrics", ", ".join(sorted(caps.metrics))),
        ("filter operators", ", ".join(sorted(caps.filter_operators))),
        ("native hybrid", "yes" if caps.hybrid else "no (reciprocal rank fusion in the layer)"),
        ("largest dimension", str(caps.max_dimension)),
        ("search", "approximate (HNSW)" if caps.approximate else "exact"),
        ("writes", "in the SQL transaction" if caps.transactional else "outbox, after commit"),
    ]
    describe = getattr(index, "describe", None)
    if describe is not None:
        for name, value in (await describe()).items():
            if name != "backend":
                rows.append((name, _plain(value)))
    rows.extend(await store_rows(layer, index))
    if not caps.transactional:
        pending = await pending_summary(layer.engine)
        total = sum(p.count for p in pending)
        rows.append(
            ("outbox", f"{total} pending" + (" (`archon-db vectors sync`)" if total else ""))
        )
    return rows


async def store_rows(layer: DataLayer, index: Any) -> Rows:
    """Per collection, the rows holding a vector and (external store) the store's records, with
    what to run when they differ; collections of another database the store still holds."""
    from app.vector.outbox.reconcile import summarize

    feed = await layer.vector_feed()
    if feed is None:
        return [(f"{c} vectors", f"{await index.count(c)} (in the rows)") for c in COLLECTIONS]
    summary = await summarize(feed)
    rows: Rows = []
    for collection, (held, stored) in summary.counts.items():
        note = "" if held == stored else "  DIFFERENT: run `archon-db vectors reconcile --apply`"
        rows.append((f"{collection} vectors", f"{held} in the rows, {stored} in the store{note}"))
    if summary.foreign:
        rows.append((
            "other collections",
            f"{', '.join(summary.foreign)}: another database's or an earlier life of this one's "
            "(never read); `archon-db vectors prune` removes them"
            + ("; an older version's: `archon-db vectors rebuild --from-store` copies their "
               "vectors into rows that have none" if summary.legacy else ""),
        ))  # fmt: skip
    return rows


async def choice_reason(layer: DataLayer) -> str:
    """Why this vector index: configured, or what detection found."""
    settings = layer.settings
    if settings.vector_database is not None:
        return f"VECTOR_DATABASE={settings.vector_database.value} is configured"
    from app.vector.sql.common import embedding_columns, pgvector_extension

    found: list[str] = []
    if layer.engine.dialect.name == "postgresql":
        async with AsyncSession(layer.engine) as session:
            extension = await pgvector_extension(session)
            columns = await embedding_columns(session, "archon_crawled_pages")
        if extension is None:
            found.append("no `vector` extension in this PostgreSQL database")
        elif all("vector" in kind for kind in columns.values()):
            version = ".".join(map(str, extension[1]))
            return f"PostgreSQL has pgvector {version} and pgvector embedding columns"
        else:
            found.append("pgvector is installed but the embedding columns are float32 blobs")
    else:
        found.append(f"{layer.engine.dialect.name} has no pgvector")
    chroma = importlib.util.find_spec("chromadb") is not None
    if settings.weaviate_url:
        found.append(f"WEAVIATE_URL is set: Weaviate at {mask_url(settings.weaviate_url)}")
    elif chroma and (settings.chroma_url or settings.chroma_path):
        found.append(f"CHROMA_URL / CHROMA_PATH is set: Chroma at {chroma_folder_or_url(settings)}")
    elif chroma and sqlite_file(settings.database_url):
        found.append(f"embedded Chroma beside the database file: {chroma_folder(settings)}")
    elif chroma:
        found.append(
            "a server database gets no implicit Chroma folder (set CHROMA_URL or CHROMA_PATH): "
            "exact numpy search over SQL blobs"
        )
    else:
        found.append("chromadb is not installed: exact numpy search over SQL blobs")
    return "; ".join(found)


def chroma_folder_or_url(settings: Settings) -> str:
    return mask_url(settings.chroma_url) if settings.chroma_url else chroma_folder(settings)


def embedder_rows() -> Rows:
    embedder = default_embedder()
    return [
        ("model", embedder.model_name),
        ("dimension", str(embedder.dimension)),
        ("kind", "feature hashing of word unigrams + bigrams (deterministic, no download)"),
    ]


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)
