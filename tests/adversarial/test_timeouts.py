"""A server that accepts connections and never answers: ``BackendUnavailableError`` naming host
and port within ``DATABASE_CONNECT_TIMEOUT`` + 2 s (it used to hang MariaDB callers for over
900 s). A statement running past ``DATABASE_STATEMENT_TIMEOUT`` is cancelled by the server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from app.bootstrap import bootstrap
from app.config import Settings
from app.errors import BackendUnavailableError, DataLayerError
from tests.support import Backend, LayerFactory

TIMEOUT = 1.5


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback listener that accepts connections and never writes a byte."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    yield port
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    "url", ["postgresql://archon@127.0.0.1:{port}/archon", "mysql://root@127.0.0.1:{port}/archon"]
)
async def test_a_silent_server_is_unavailable_within_the_connect_timeout(
    silent_port: int, url: str
) -> None:
    settings = Settings(_env_file=None, database_url=url.format(port=silent_port),
                        database_connect_timeout=TIMEOUT, vector_database="exact")  # fmt: skip
    layer = bootstrap(settings)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError) as raised:
            async with layer.uow(read_only=True) as uow:
                await uow.projects.count()
    finally:
        await layer.aclose()
    assert time.monotonic() - started < TIMEOUT + 2
    assert f"127.0.0.1:{silent_port}" in str(raised.value)
    assert "DATABASE_CONNECT_TIMEOUT" in str(raised.value)


async def test_sqlite_interrupts_a_statement_past_the_statement_timeout(tmp_path) -> None:
    import sqlalchemy as sa

    from app.errors import translate_errors

    url = f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}"
    layer = bootstrap(Settings(_env_file=None, database_url=url, vector_database="exact",
                               database_statement_timeout=0.5))  # fmt: skip
    # A recursive count to a billion: seconds of work inside one statement.
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000)"
            " SELECT count(*) FROM n")  # fmt: skip
    started = time.monotonic()
    try:
        with pytest.raises(DataLayerError, match="interrupted"):
            async with layer.uow() as uow:
                with translate_errors("counting"):
                    await uow.session.execute(sa.text(slow))
        assert time.monotonic() - started < 4
        async with layer.uow() as uow:  # the connection goes on: quick statements still run
            assert (await uow.session.execute(sa.text("SELECT 1"))).scalar() == 1
    finally:
        await layer.aclose()


@pytest.mark.backends("postgres", "pgvector", "mariadb")
async def test_a_statement_past_the_statement_timeout_is_cancelled(
    make_layer: LayerFactory, backend: Backend
) -> None:
    import sqlalchemy as sa

    layer = await make_layer(database_statement_timeout=0.5)
    sleep = "SELECT pg_sleep(5)" if backend.dialect == "postgresql" else "SELECT SLEEP(5)"
    started = time.monotonic()
    with pytest.raises(DataLayerError):
        async with layer.uow() as uow:
            from app.errors import translate_errors

            with translate_errors("sleeping"):
                result = await uow.session.execute(sa.text(sleep))
                if backend.dialect != "postgresql":  # MariaDB answers 1 for an interrupted SLEEP
                    assert result.scalar() == 0, "SLEEP was not interrupted"
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    ("query", "advice"),
    [("timeout=5", "DATABASE_CONNECT_TIMEOUT"), ("connect_timeout=5", "DATABASE_CONNECT_TIMEOUT"),
     ("sslmode=require", "ssl=require"), ("command_timeout=3", "DATABASE_STATEMENT_TIMEOUT")],
)  # fmt: skip
def test_url_options_a_driver_takes_otherwise_are_refused_by_name(query: str, advice: str) -> None:
    from app.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        Settings(_env_file=None, database_url=f"postgresql://u:pw@127.0.0.1/db?{query}")
    assert query.split("=")[0] in str(raised.value) and advice in str(raised.value)
    assert "pw" not in str(raised.value).replace("password", "")


@pytest.mark.backends("postgres", "mariadb")
async def test_an_option_the_driver_does_not_know_is_refused_at_connect(backend: Backend) -> None:
    from app.errors import ConfigurationError

    joined = "&" if "?" in backend.url else "?"
    url = f"{backend.url}{joined}no_such_option=1"
    settings = Settings(_env_file=None, database_url=url, vector_database="exact")
    layer = bootstrap(settings)
    try:
        with pytest.raises(ConfigurationError, match="no_such_option"):
            async with layer.uow(read_only=True) as uow:
                await uow.projects.count()
    finally:
        await layer.aclose()


@pytest.mark.parametrize(
    ("url", "option", "accepted"),
    [("postgresql://u:pw@127.0.0.1/db?ssl=bogus", "ssl", "verify-full"),
     ("postgresql://u:pw@127.0.0.1/db?ssl=true", "ssl", "require"),
     ("mysql://root:pw@127.0.0.1/db?charset=latin1", "charset", "utf8mb4"),
     ("mysql://root:pw@127.0.0.1/db?charset=utf8", "charset", "utf8mb4"),
     ("mysql://root:pw@127.0.0.1/db?charset=bogus", "charset", "utf8mb4"),
     ("mysql://root:pw@127.0.0.1/db?charset=utf8mb4&use_unicode=0", "use_unicode", "text")],
)  # fmt: skip
def test_url_option_values_the_layer_cannot_work_with_are_refused_by_name(
    url: str, option: str, accepted: str
) -> None:
    # They used to fail later and untyped: latin1 or ascii with a UnicodeEncodeError for any
    # non-Latin text, a bogus charset with an AttributeError, an emoji refused by utf8 (3 bytes),
    # use_unicode=0 giving bytes for text; a bad ssl as "check that the database is running".
    from app.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        Settings(_env_file=None, database_url=url)
    message = str(raised.value)
    assert f"'{option}'" in message and accepted in message and "DATABASE_URL" in message
    assert "pw" not in message.replace("password", "")


def test_url_option_values_that_work_are_kept() -> None:
    kept = ("postgresql://u@127.0.0.1/db?ssl=require", "postgresql://u@h/db?ssl=disable",
            "mysql://root@h/db?charset=UTF8MB4", "mysql://root@h/db?use_unicode=1")  # fmt: skip
    for url in kept:
        assert Settings(_env_file=None, database_url=url).database_url


async def test_a_silent_chroma_server_is_unavailable_within_the_connect_timeout(
    silent_port: int, tmp_path
) -> None:
    # Chroma's HTTP client waits without a limit: a server that accepts and never answers used
    # to hang the first use of the store (``archon-db doctor`` among them) for good.
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
                        vector_database="chroma", chroma_url=f"http://127.0.0.1:{silent_port}",
                        database_connect_timeout=TIMEOUT)  # fmt: skip
    layer = bootstrap(settings)
    started = time.monotonic()
    try:
        await layer.migrate()
        with pytest.raises(BackendUnavailableError) as raised:
            await layer.search("crawled_pages", vector=[0.1] * 384, mode="vector")
    finally:
        await asyncio.wait_for(layer.aclose(), 5)
    assert time.monotonic() - started < TIMEOUT + 5  # the migration's own seconds included
    assert f"127.0.0.1:{silent_port}" in str(raised.value)
