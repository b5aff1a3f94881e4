"""The databases a benchmark runs on, each private to the run and removed at the end.

``pg``       PostgreSQL 18 + pgvector started by ``pgserver`` in a temporary directory, or the
             server at ``TEST_PGVECTOR_URL`` (an admin URL) when set.
``mariadb``  a fresh database on the MariaDB / MySQL 8 server at ``TEST_MARIADB_URL``
             (default ``mysql://root@127.0.0.1:3306/``).
``sqlite``   a file in a temporary directory (WAL, as the layer configures it).
``chroma``   an embedded Chroma folder next to a SQLite file (the layer's rows and outbox).

Each target is migrated to head through the layer before any scenario runs.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from app.config import Settings

BACKENDS = ("pg", "mariadb", "sqlite", "chroma")
DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/"


class TargetUnavailable(RuntimeError):
    """A backend that cannot be started or reached."""


@dataclass
class Target:
    """One migrated database: how the layer reaches it and how the raw driver does."""

    backend: str
    url: str  # SQLAlchemy URL with the async driver
    vector_database: str
    raw: dict[str, Any] = field(default_factory=dict)  # the raw driver's connect arguments
    chroma_path: str | None = None

    def settings(self, **overrides: Any) -> Settings:
        """The layer's settings for this target (no .env file is read)."""
        values: dict[str, Any] = {
            "database_url": self.url,
            "vector_database": self.vector_database,
            "chroma_path": self.chroma_path,
            **overrides,
        }
        return Settings(_env_file=None, **values)


def database_name() -> str:
    return f"archon_bench_{secrets.token_hex(5)}"


@asynccontextmanager
async def open_target(backend: str) -> AsyncIterator[Target]:
    """A migrated, empty database for ``backend``; removed on exit."""
    openers = {"pg": _postgres, "mariadb": _mariadb, "sqlite": _sqlite, "chroma": _chroma}
    if backend not in openers:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    async with openers[backend]() as target:
        await migrate(target)
        yield target


async def migrate(target: Target) -> None:
    from app.bootstrap import bootstrap

    layer = bootstrap(target.settings())
    try:
        await layer.migrate()
    finally:
        await layer.aclose()


# -- PostgreSQL + pgvector ----------------------------------------------------------------------


@asynccontextmanager
async def _postgres() -> AsyncIterator[Target]:
    async with AsyncExitStack() as stack:
        admin = os.environ.get("TEST_PGVECTOR_URL")
        if admin is None:
            admin = await stack.enter_async_context(_pgserver())
        admin_url = make_url(admin)
        name = database_name()
        await _pg_admin(admin_url, f'CREATE DATABASE "{name}"')
        stack.push_async_callback(_pg_admin, admin_url, f'DROP DATABASE "{name}" WITH (FORCE)')
        url = admin_url.set(drivername="postgresql+asyncpg", database=name)
        raw = _asyncpg_args(url)
        yield Target("pg", url.render_as_string(hide_password=False), "pgvector", raw)


def _asyncpg_args(url: URL) -> dict[str, Any]:
    """asyncpg.connect() keywords; ``?host=/dir`` names a unix-socket directory."""
    args: dict[str, Any] = url.translate_connect_args(username="user")
    args.update(url.query)
    if not args.get("password"):
        args.pop("password", None)
    return args


async def _pg_admin(url: URL, statement: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(**_asyncpg_args(url), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TargetUnavailable(f"PostgreSQL is unreachable: {exc!r}") from exc
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def _pgserver() -> AsyncIterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="archon-bench-pg-"))
    try:
        try:
            server = await asyncio.to_thread(_start_pgserver, directory / "pgdata")
        except (ImportError, OSError, RuntimeError, AssertionError) as exc:
            raise TargetUnavailable(f"pgserver could not start PostgreSQL: {exc!r}") from exc
        try:
            yield server.get_uri()
        finally:
            await asyncio.to_thread(server.cleanup)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start_pgserver(pgdata: Path) -> Any:
    # Under root, pgserver runs PostgreSQL as its own user and opens the path to pgdata for it;
    # importing it warns when XDG_RUNTIME_DIR is unset.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver.get_server(pgdata, cleanup_mode="delete")


# -- MariaDB / MySQL ----------------------------------------------------------------------------


@asynccontextmanager
async def _mariadb() -> AsyncIterator[Target]:
    admin = make_url(os.environ.get("TEST_MARIADB_URL", DEFAULT_MARIADB_URL))
    name = database_name()
    await asyncio.to_thread(
        _mysql_admin, admin, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    try:
        url = admin.set(drivername="mysql+aiomysql", database=name, query={"charset": "utf8mb4"})
        raw = {
            "host": admin.host or "127.0.0.1",
            "port": admin.port or 3306,
            "user": admin.username or "root",
            "password": admin.password or "",
            "db": name,
            "charset": "utf8mb4",
        }
        yield Target("mariadb", url.render_as_string(hide_password=False), "exact", raw)
    finally:
        await asyncio.to_thread(_mysql_admin, admin, f"DROP DATABASE IF EXISTS `{name}`")


def _mysql_admin(url: URL, statement: str) -> None:
    import pymysql

    try:
        conn = pymysql.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            connect_timeout=10,
            autocommit=True,
        )
    except (OSError, pymysql.MySQLError) as exc:
        raise TargetUnavailable(f"MariaDB is unreachable: {exc!r}") from exc
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


# -- SQLite and Chroma --------------------------------------------------------------------------


@asynccontextmanager
async def _sqlite() -> AsyncIterator[Target]:
    directory = Path(tempfile.mkdtemp(prefix="archon-bench-sqlite-"))
    try:
        path = directory / "archon.db"
        yield Target("sqlite", f"sqlite+aiosqlite:///{path}", "exact", {"database": str(path)})
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def _chroma() -> AsyncIterator[Target]:
    directory = Path(tempfile.mkdtemp(prefix="archon-bench-chroma-"))
    try:
        path = directory / "archon.db"
        chroma = str(directory / "chroma")
        raw = {"database": str(path), "path": chroma}
        yield Target("chroma", f"sqlite+aiosqlite:///{path}", "chroma", raw, chroma)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
