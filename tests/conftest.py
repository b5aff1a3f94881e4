"""Fixtures every contract suite uses.

``backend``
    Session-scoped, parametrized over the backends in ``TEST_BACKENDS`` (ids ``sqlite``,
    ``pgvector``, ``postgres``, ``mariadb``): a :class:`~tests.support.Backend` naming an empty
    database private to the session. ``sqlite_backend``, ``pgvector_backend``, ``postgres_backend``
    and ``mariadb_backend`` give one backend by name.
``layer``
    A ``DataLayer`` (``vector_database="exact"``) on the backend's database, migrated to head once
    per session; after the test it is closed and every Archon table is emptied.
``make_layer`` / ``make_pooled_layer``
    Factories for layers with other settings (``await make_layer(chroma_path=...)``), on the
    backend's database, or on the pgvector database through pgbouncer; same cleanup.
``sql``
    Plain SQL on ``layer.engine``: ``await sql.all(q, **params)``, ``sql.scalar``, ``sql.execute``.
``pgbouncer``
    asyncpg URL of pgbouncer in transaction pool mode in front of ``pgvector_backend``'s database.

``@pytest.mark.backends("postgres", "pgvector")`` on a test (or ``pytestmark`` on a module) runs it
on those backends only. Environment variables: see ``tests/support/backends.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import make_url

from tests.support import (
    ALL_BACKENDS,
    Backend,
    Databases,
    LayerFactory,
    Sql,
    selected_backends,
    unavailable,
)
from tests.support import backends as servers
from tests.support.pgbouncer import pgbouncer as run_pgbouncer

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

SELECTED = selected_backends()


def _require_selected(name: str) -> None:
    if name not in SELECTED:
        pytest.skip(f"backend {name!r} is left out by TEST_BACKENDS")


@pytest.fixture(scope="session")
async def sqlite_backend() -> AsyncIterator[Backend]:
    _require_selected("sqlite")
    async with servers.sqlite_backend() as backend:
        yield backend


@pytest.fixture(scope="session")
async def pgvector_server() -> AsyncIterator[str]:
    """Admin URL (libpq form) of the PostgreSQL server with pgvector (also behind pgbouncer)."""
    if "pgbouncer" not in SELECTED:
        _require_selected("pgvector")
    async with servers.pgvector_server() as admin_url:
        yield admin_url


@pytest.fixture(scope="session")
async def pgvector_backend(pgvector_server: str) -> AsyncIterator[Backend]:
    async with servers.postgres_backend("pgvector", pgvector_server) as backend:
        if not backend.has_pgvector:
            unavailable("pgvector", "the server has no `vector` extension to install")
        yield backend


@pytest.fixture(scope="session")
async def postgres_backend() -> AsyncIterator[Backend]:
    _require_selected("postgres")
    async with servers.postgres_backend("postgres", servers.postgres_admin_url()) as backend:
        yield backend


@pytest.fixture(scope="session")
async def mariadb_backend() -> AsyncIterator[Backend]:
    _require_selected("mariadb")
    async with servers.mariadb_backend() as backend:
        yield backend


@pytest.fixture(scope="session")
async def pgbouncer_backend(pgvector_server: str) -> AsyncIterator[Backend]:
    """A database of the pgvector server reached through pgbouncer (transaction mode)."""
    _require_selected("pgbouncer")
    async with servers.postgres_backend("pgbouncer", pgvector_server) as direct:
        with run_pgbouncer(pgvector_server) as pooler_url:
            database = make_url(direct.url).database
            url = make_url(pooler_url).set(drivername="postgresql+asyncpg", database=database)
            yield Backend(
                "pgbouncer",
                url.render_as_string(hide_password=False),
                "postgresql",
                True,
                direct_url=direct.url,
                database_type="supabase",
            )


@pytest.fixture(scope="session", params=SELECTED)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each selected backend in turn; each is started once and kept until the session ends."""
    found: Backend = request.getfixturevalue(f"{request.param}_backend")
    return found


@pytest.fixture(scope="session")
def pgbouncer(pgvector_server: str, pgvector_backend: Backend) -> Iterator[str]:
    """pgbouncer (transaction pool mode) in front of the pgvector server, for the session."""
    with run_pgbouncer(pgvector_server) as pooler_url:
        database = make_url(pgvector_backend.url).database
        url = make_url(pooler_url).set(drivername="postgresql+asyncpg", database=database)
        yield url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def databases() -> Databases:
    return Databases()


@pytest.fixture
async def make_layer(backend: Backend, databases: Databases) -> AsyncIterator[LayerFactory]:
    if backend.direct_url is None:
        factory = LayerFactory(databases, backend.url)
    else:
        factory = LayerFactory(
            databases,
            backend.direct_url,
            connect_url=backend.url,
            database_type=backend.database_type,
        )
    yield factory
    await factory.aclose()


@pytest.fixture
async def layer(make_layer: LayerFactory) -> DataLayer:
    return await make_layer()


@pytest.fixture
async def make_pooled_layer(
    pgbouncer: str, pgvector_backend: Backend, databases: Databases
) -> AsyncIterator[LayerFactory]:
    factory = LayerFactory(
        databases, pgvector_backend.url, connect_url=pgbouncer, database_type="supabase"
    )
    yield factory
    await factory.aclose()


@pytest.fixture
def sql(layer: DataLayer) -> Sql:
    return Sql(layer)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the backend instances a ``backends(...)`` marker leaves out."""
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend") if callspec else None
        if marker is not None:
            unknown = set(marker.args) - set(ALL_BACKENDS)
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: unknown backends {sorted(unknown)}")
        if marker is not None and name is not None and name not in marker.args:
            dropped.append(item)
        elif name == "pgbouncer" and item.get_closest_marker("pooler") is None:
            # Behind the pooler only the suites that prove pooler safety run (``pooler``).
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
