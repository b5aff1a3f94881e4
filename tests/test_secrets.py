"""Secrets never leave: not in reprs, dumps, errors, logs (the drivers' own included) or CLI
output, whatever the shape of the URL that holds them."""

from __future__ import annotations

import logging
import sqlite3
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app import migrations
from app.bootstrap import bootstrap
from app.cli import _register
from app.cli import app as cli
from app.config import Settings, get_settings
from app.errors import ConfigurationError, scrub
from app.urls import mask_url

SECRET = "Zq9-s3cret-Pw"

# Every shape a password may come in; the ones Settings refuses say why without it.
URL_SHAPES = [
    f"postgresql//relpw:{SECRET}@host/db",  # no ://
    f"postgresql://relpw:a@{SECRET}@host/db",  # unencoded @ in the password
    f"postgresql://relpw:{SECRET}@host:99999/db",
    f"postgresql://relpw@host/db?password={SECRET}",  # a query parameter
    f"postgresql//relpw:{SECRET}@host/db?password={SECRET}",
    f"mysql://root:{SECRET}@db.internal:3306/archon?charset=utf8mb4",
    f"postgresql://:{SECRET}@[::1]:5432/db",
    f"postgresql://relpw:{SECRET}?x@host/db",  # unencoded ? in the password
    f"postgresql://relpw:a?{SECRET}@host/db",
    f"mysql://root:a?b@{SECRET}@host/db?charset=utf8mb4",  # unencoded ? and @
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "DATABASE_TYPE", "MYSQL_HOST", "VECTOR_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()


def outputs_of(settings: Settings) -> list[str]:
    return [
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        settings.safe_database_url,
    ]


@pytest.mark.parametrize("url", URL_SHAPES)
def test_no_output_of_settings_shows_the_password(url: str) -> None:
    assert SECRET not in mask_url(url) and SECRET not in scrub(f"connecting to {url} failed")
    try:
        settings = Settings(database_url=url, database_read_urls=[url])
    except ConfigurationError as exc:
        shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    else:
        assert SECRET in (settings.database_url or "")  # still the URL to connect with
        shown = outputs_of(settings)
    assert all(SECRET not in text for text in shown)


def test_secret_fields_are_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MYSQL_PASSWORD", "SUPABASE_SERVICE_KEY", "CREDENTIALS_KEY", "WEAVIATE_API_KEY"):
        monkeypatch.setenv(name, SECRET)
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    settings = Settings()
    assert settings.mysql_password is not None
    assert settings.mysql_password.get_secret_value() == SECRET
    assert all(SECRET not in text for text in outputs_of(settings))
    assert "mysql+aiomysql://root:***@db.internal:3306/archon" in settings.model_dump_json()


def test_validation_errors_carry_no_input_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_PASSWORD", SECRET)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{SECRET}@h/db")
    with pytest.raises(ConfigurationError) as raised:
        Settings(database_pool_size="abc", database_type="sqlite")
    assert "DATABASE_POOL_SIZE='abc'" in str(raised.value)
    cause = raised.value.__cause__
    assert cause is not None and SECRET not in str(cause) and SECRET not in repr(cause)
    assert SECRET not in "".join(traceback.format_exception(raised.value))


async def test_plain_setting_values_never_reach_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "logged.db"
    caplog.set_level(logging.DEBUG)  # every logger: the layer's, aiosqlite's...
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # ...and SQLAlchemy's, off by default
    layer = bootstrap(
        Settings(database_url=f"sqlite+aiosqlite:///{database}", vector_database="exact",
                 enable_query_logging=True)
    )  # fmt: skip
    try:
        await migrations.upgrade(layer.engine)
        async with layer.uow() as uow:
            await uow.settings.set_value("OPENAI_API_KEY", SECRET)
            await uow.commit()
        async with layer.uow(read_only=True) as uow:
            assert await uow.settings.get_value("OPENAI_API_KEY") == SECRET
    finally:
        await layer.aclose()
    with sqlite3.connect(database) as db:  # stored unencrypted: it did pass through the driver
        query = "SELECT value FROM archon_settings WHERE key = 'OPENAI_API_KEY'"
        assert db.execute(query).fetchall() == [(SECRET,)]
    driver = [r.getMessage() for r in caplog.records if r.name == "aiosqlite"]
    assert any("archon_settings" in m and "<parameters hidden>" in m for m in driver)
    assert any("parameters hidden" in r.getMessage() for r in caplog.records
               if r.name.startswith("sqlalchemy.engine"))  # fmt: skip
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("url", URL_SHAPES)
def test_cli_output_never_shows_the_password(url: str) -> None:
    _register()
    # Port 9: nothing listens, so a URL that is accepted fails at once when connecting.
    url = url.replace("host:99999", "127.0.0.1:9").replace("@host/", "@127.0.0.1:9/")
    result = CliRunner().invoke(cli, ["migrate", "current", "--url", url], catch_exceptions=False)
    assert result.exit_code == 2
    assert SECRET not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "url",
    ["postgresql://db.example/app?password=p@S3cretPW", "postgresql://u%3AS3cretPW@h/db",
     "postgresql://u:S3cretPW@h/db?x=a@b"],
)  # fmt: skip
def test_an_at_sign_in_the_query_or_an_encoded_colon_hides_nothing(url: str) -> None:
    from app.config import Settings, mask_url

    settings = Settings(_env_file=None, database_url=url)
    for shown in (mask_url(url), settings.safe_database_url, repr(settings),
                  str(settings.model_dump()), settings.model_dump_json()):  # fmt: skip
        assert "S3cretPW" not in shown
    assert "@h/db" in mask_url(url) or "db.example/app" in mask_url(url)


def test_a_host_that_is_no_host_names_mysql_host() -> None:
    from app.config import Settings
    from app.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="MYSQL_HOST") as raised:
        Settings(_env_file=None, mysql_host="h@x", mysql_password="S3cretPW")
    assert "S3cretPW" not in str(raised.value)


@pytest.mark.parametrize("value", [[f"postgresql://u:{SECRET}@h/db"], {"url": SECRET}, 7])
def test_a_url_that_is_not_text_is_not_shown(value: object) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL") as caught:
        Settings(_env_file=None, database_url=value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
