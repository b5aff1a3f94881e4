"""Settings from the environment, backend inference, and secrets kept out of every output."""

from __future__ import annotations

import logging

import pytest

from app.bootstrap import bootstrap
from app.config import DatabaseType, Settings, VectorBackend, get_settings, mask_url
from app.errors import BackendUnavailableError, ConfigurationError

SECRET = "s3cr3t-Pa55"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("DATABASE_URL", "DATABASE_TYPE", "MYSQL_HOST", "VECTOR_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file of a developer's is read
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("url", "kind", "driver"),
    [
        ("sqlite:///x.db", DatabaseType.SQLITE, "sqlite+aiosqlite"),
        ("postgresql://u@db.internal:5432/archon", DatabaseType.POSTGRESQL, "postgresql+asyncpg"),
        ("postgres://u@db.internal/archon", DatabaseType.POSTGRESQL, "postgresql+asyncpg"),
        ("postgresql://u@aws-0.pooler.supabase.com:5432/postgres", DatabaseType.SUPABASE, None),
        ("postgresql://u@pooler.local:6543/postgres", DatabaseType.SUPABASE, None),
        ("mysql://root@127.0.0.1/archon", DatabaseType.MYSQL, "mysql+aiomysql"),
        ("mariadb://root@127.0.0.1/archon", DatabaseType.MYSQL, "mysql+aiomysql"),
        ("mysql+aiomysql://root@127.0.0.1/archon", DatabaseType.MYSQL, "mysql+aiomysql"),
    ],
)
def test_type_and_driver_are_inferred_from_the_url(url, kind, driver) -> None:
    settings = Settings(database_url=url)
    assert settings.database_type is kind
    if driver:
        assert settings.database_url.startswith(driver + "://")


def test_nothing_set_is_the_embedded_default() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///archon.db"
    assert settings.database_type is DatabaseType.SQLITE
    assert settings.vector_database is None  # detected at start: Chroma when installed


def test_environment_names_configure_the_same_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("DATABASE_TYPE", "supabase")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "12")
    monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "7.5")
    monkeypatch.setenv("DATABASE_READ_URLS", "postgresql://r1/db, postgresql://r2/db")
    monkeypatch.setenv("ENABLE_READ_REPLICAS", "true")
    monkeypatch.setenv("VECTOR_DATABASE", "pgvector")
    monkeypatch.setenv("SLOW_QUERY_THRESHOLD_MS", "250")
    settings = get_settings()
    assert settings.database_type is DatabaseType.SUPABASE
    assert settings.database_pool_size == 12 and settings.database_pool_timeout == 7.5
    assert settings.database_read_urls == [
        "postgresql+asyncpg://r1/db",
        "postgresql+asyncpg://r2/db",
    ]
    assert settings.enable_read_replicas and settings.vector_database is VectorBackend.PGVECTOR
    assert settings.slow_query_threshold_ms == 250
    assert get_settings() is settings  # read once


def test_mysql_variables_assemble_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    monkeypatch.setenv("MYSQL_PORT", "3307")
    monkeypatch.setenv("MYSQL_USER", "archon")
    monkeypatch.setenv("MYSQL_PASSWORD", SECRET)
    monkeypatch.setenv("MYSQL_DATABASE", "kb")
    settings = Settings()
    assert settings.database_type is DatabaseType.MYSQL
    assert settings.database_url.startswith("mysql+aiomysql://archon:")
    assert "db.internal:3307/kb" in settings.database_url
    assert SECRET not in repr(settings) and SECRET not in settings.safe_database_url


def test_a_type_without_a_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_TYPE=postgresql needs DATABASE_URL"):
        Settings(database_type="postgresql")


def test_passwords_never_appear_in_reprs() -> None:
    url = f"postgresql://archon:{SECRET}@db.internal:5432/archon"
    settings = Settings(database_url=url, database_read_urls=[url])
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in mask_url(url)
    assert SECRET not in mask_url(f"not a url ://{SECRET}")


async def test_passwords_never_appear_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 9: connecting fails at once, with the password in the DSN.
    url = f"postgresql://archon:{SECRET}@127.0.0.1:9/archon"
    caplog.set_level(logging.DEBUG)
    layer = bootstrap(
        Settings(database_url=url, vector_database="exact", enable_query_logging=True)
    )
    try:
        with pytest.raises(BackendUnavailableError) as raised:
            async with layer.uow() as uow:
                await uow.projects.count()
    finally:
        await layer.aclose()
    assert SECRET not in str(raised.value)
    assert "running and reachable" in str(raised.value)
    assert SECRET not in caplog.text


async def test_query_logging_logs_statements_not_parameters(
    layer, caplog: pytest.LogCaptureFixture
) -> None:
    logged = bootstrap(
        Settings(
            database_url=layer.settings.database_url,
            vector_database="exact",
            enable_query_logging=True,
            slow_query_threshold_ms=0,
        )
    )
    caplog.set_level(logging.INFO, logger="app.sql")
    try:
        async with logged.uow(read_only=True) as uow:
            await uow.settings.get_value(SECRET)
    finally:
        await logged.aclose()
    statements = [r for r in caplog.records if r.name == "app.sql"]
    assert any("archon_settings" in r.getMessage() for r in statements)
    assert all(r.levelno == logging.WARNING for r in statements)  # every one is "slow" at 0 ms
    assert SECRET not in caplog.text
