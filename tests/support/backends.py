"""The backends the contract suites run on, each an empty database private to the test session.

Environment:

``TEST_BACKENDS``
    Comma-separated subset of ``sqlite,pgvector,postgres,mariadb,pgbouncer`` to run (default:
    all). ``pgbouncer`` is the pgvector server behind pgbouncer in transaction mode with the
    layer in ``supabase`` mode; it runs only the modules marked ``pytest.mark.pooler``.
``REQUIRE_ALL_BACKENDS``
    ``1``: a selected backend that cannot be started or reached fails the tests that use it,
    instead of skipping them. CI sets it.
``TEST_POSTGRES_URL``
    Admin URL of a PostgreSQL server without pgvector
    (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
``TEST_MARIADB_URL``
    Admin URL of a MariaDB or MySQL 8 server (default ``mysql://root@127.0.0.1:3306/``).
``TEST_PGVECTOR_URL``
    Admin URL of a PostgreSQL server with pgvector. When unset, a private PostgreSQL 18 with
    pgvector is started by ``pgserver`` in a temporary directory.

An admin URL's user must be allowed to create and drop databases (and, for pgvector, extensions).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import pymysql
import pytest
from sqlalchemy.engine import URL, make_url

from app.config import mask_url

ALL_BACKENDS = ("sqlite", "pgvector", "postgres", "mariadb", "pgbouncer")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/"
# utf8mb4_bin, the collation the migrations give every MySQL table: equality is exact and
# case-sensitive as on PostgreSQL and SQLite, so a filter selects the same rows on every backend.
MARIADB_COLLATION = "utf8mb4_bin"
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Backend:
    """An empty database for the test session. ``dialect`` is SQLAlchemy's dialect name."""

    name: str
    url: str
    dialect: str
    has_pgvector: bool
    # Behind a pooler: the database itself (migrated and emptied directly), and the settings the
    # layer needs to work through the pooler.
    direct_url: str | None = None
    database_type: str | None = None


def selected_backends() -> list[str]:
    """The backends named by TEST_BACKENDS, in the canonical order (all when unset)."""
    raw = os.environ.get("TEST_BACKENDS", "")
    names = {name.strip() for name in raw.split(",") if name.strip()} or set(ALL_BACKENDS)
    unknown = sorted(names - set(ALL_BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"TEST_BACKENDS names unknown backends {unknown}; choose from {', '.join(ALL_BACKENDS)}"
        )
    return [name for name in ALL_BACKENDS if name in names]


def unavailable(name: str, reason: object) -> NoReturn:
    """Skip the test for a backend that cannot be had, or fail it when all are required."""
    message = f"backend {name!r} is unavailable: {reason}"
    if os.environ.get("REQUIRE_ALL_BACKENDS") == "1":
        pytest.fail(f"{message} (REQUIRE_ALL_BACKENDS=1 makes this a failure)", pytrace=False)
    pytest.skip(f"{message} (set REQUIRE_ALL_BACKENDS=1 to fail instead)")


def _database_name() -> str:
    return f"archon_test_{secrets.token_hex(6)}"


@asynccontextmanager
async def sqlite_backend() -> AsyncIterator[Backend]:
    """A SQLite file in a fresh temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="archon-sqlite-"))
    try:
        yield Backend("sqlite", f"sqlite+aiosqlite:///{directory / 'archon.db'}", "sqlite", False)
    finally:
        shutil.rmtree(directory)


# ---------------------------------------------------------------- PostgreSQL


def postgres_admin_url() -> str:
    """Admin URL of the PostgreSQL server without pgvector."""
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def asyncpg_connect_args(url: URL) -> dict[str, Any]:
    """asyncpg.connect() keywords for a URL; ``?host=/dir`` names a unix-socket directory."""
    args: dict[str, Any] = url.translate_connect_args(username="user")
    args.update(url.query)
    return args


async def _pg_admin(url: URL, statement: str) -> bool:
    """Run one statement on the admin database; tell whether pgvector is available there."""
    conn = await asyncpg.connect(**asyncpg_connect_args(url), timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(statement)
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
        )
        return bool(found)
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_backend(name: str, admin_url: str) -> AsyncIterator[Backend]:
    """A fresh database on the PostgreSQL server at ``admin_url``, dropped at the end."""
    admin = make_url(admin_url)
    database = _database_name()
    try:
        has_pgvector = await _pg_admin(admin, f'CREATE DATABASE "{database}"')
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        unavailable(name, f"cannot create a database on {mask_url(admin_url)}: {exc!r}")
    url = admin.set(drivername="postgresql+asyncpg", database=database)
    if not url.password:
        url = url.set(password=None)
    try:
        yield Backend(name, url.render_as_string(hide_password=False), "postgresql", has_pgvector)
    finally:
        # FORCE ends the sessions a test left open; otherwise the drop would wait for them.
        await _pg_admin(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _start_pgserver(pgdata: Path) -> Any:
    # Importing pgserver makes platformdirs warn when XDG_RUNTIME_DIR is unset (as it is for root).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    # Under root, pgserver runs PostgreSQL as its own `pgserver` user and opens up the path to
    # pgdata for it; the server listens on a unix socket inside pgdata only (no TCP port).
    return pgserver.get_server(pgdata, cleanup_mode="delete")


# What pgserver raises when it cannot initialise or start a server.
_PGSERVER_ERRORS = (ImportError, OSError, RuntimeError, AssertionError, subprocess.SubprocessError)


@asynccontextmanager
async def pgvector_server() -> AsyncIterator[str]:
    """Admin URL of a PostgreSQL with pgvector: TEST_PGVECTOR_URL, or a private pgserver."""
    if configured := os.environ.get("TEST_PGVECTOR_URL"):
        yield configured
        return
    directory = Path(tempfile.mkdtemp(prefix="archon-pgvector-"))
    try:
        try:
            server = _start_pgserver(directory / "pgdata")
        except _PGSERVER_ERRORS as exc:
            unavailable("pgvector", f"pgserver could not start PostgreSQL: {exc!r}")
        try:
            yield server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        finally:
            server.cleanup()  # stops the server and deletes pgdata
    finally:
        shutil.rmtree(directory)


# ---------------------------------------------------------------- MariaDB / MySQL


def _mysql_admin(url: URL, statement: str) -> None:
    conn = pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        connect_timeout=int(CONNECT_TIMEOUT),
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


@asynccontextmanager
async def mariadb_backend() -> AsyncIterator[Backend]:
    """A fresh utf8mb4 database on the MariaDB (or MySQL 8) server, dropped at the end."""
    admin_url = os.environ.get("TEST_MARIADB_URL", DEFAULT_MARIADB_URL)
    admin = make_url(admin_url)
    database = _database_name()
    try:
        _mysql_admin(
            admin,
            f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE {MARIADB_COLLATION}",
        )
    except (OSError, pymysql.MySQLError) as exc:
        unavailable("mariadb", f"cannot create a database on {mask_url(admin_url)}: {exc!r}")
    url = admin.set(drivername="mysql+aiomysql", database=database, query={"charset": "utf8mb4"})
    try:
        yield Backend("mariadb", url.render_as_string(hide_password=False), "mysql", False)
    finally:
        _mysql_admin(admin, f"DROP DATABASE IF EXISTS `{database}`")
