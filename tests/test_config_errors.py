"""Configuration that explains itself: each error names the variable, the value and what is
accepted; contradictions are refused; misspelt variables get a did-you-mean warning; the CLI
says it in one line and exits 2."""

from __future__ import annotations

import traceback
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from app.cli import _register
from app.cli import app as cli
from app.config import ConfigurationWarning, Settings, get_settings
from app.errors import ConfigurationError, DataLayerError

SECRET = "Zq9-s3cret-Pw"
LAYER_PREFIXES = ("DATABASE_", "MYSQL_", "VECTOR_", "CHROMA_", "WEAVIATE_", "SUPABASE_", "ARCHON_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith(LAYER_PREFIXES) or name.upper() == "ENABLE_READ_REPLICAS":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no developer's .env is read
    get_settings.cache_clear()


def refusal(**environment: str) -> str:
    """The message Settings() refuses ``environment`` with, its cause's and traceback included."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with pytest.raises(ConfigurationError) as raised:
            Settings()
    assert isinstance(raised.value, DataLayerError)
    everything = "".join(traceback.format_exception(raised.value))
    assert SECRET not in everything and SECRET not in repr(raised.value)
    return str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("DATABASE_TYPE", "postgres", "one of supabase, postgresql, mysql, sqlite"),
        ("DATABASE_POOL_SIZE", "abc", "a whole number from 1 to 1000"),
        ("DATABASE_POOL_SIZE", "0", "a whole number from 1 to 1000"),
        ("DATABASE_POOL_TIMEOUT", "-1", "a number > 0"),
        ("VECTOR_DATABASE", "pgvecter", "one of pgvector, chroma, weaviate, exact"),
        ("ENABLE_READ_REPLICAS", "maybe", "true or false"),
        ("MYSQL_PORT", "99999", "a whole number from 1 to 65535"),
    ],
)
def test_an_error_names_the_variable_the_value_and_the_accepted_values(
    variable: str, value: str, accepted: str
) -> None:
    # A password in the environment: pydantic would echo it with the whole input.
    message = refusal(**{variable: value, "MYSQL_PASSWORD": SECRET})
    assert message.startswith(f"{variable}={value!r} is not accepted: expected {accepted}")
    assert "\n" not in message


def test_a_misspelt_choice_gets_the_closest_one() -> None:
    assert "(did you mean 'postgresql'?)" in refusal(DATABASE_TYPE="postgres")
    assert "(did you mean 'pgvector'?)" in refusal(VECTOR_DATABASE="pgvecter")


def test_an_error_on_a_secret_names_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(mysql_password=[SECRET], weaviate_api_key={"key": SECRET})
    message = str(raised.value)
    assert "MYSQL_PASSWORD=(value not shown: secret)" in message
    assert "WEAVIATE_API_KEY=(value not shown: secret)" in message
    assert SECRET not in "".join(traceback.format_exception(raised.value))


def test_every_error_is_in_one_message() -> None:
    message = refusal(DATABASE_TYPE="postgres", DATABASE_POOL_SIZE="abc")
    assert "DATABASE_TYPE='postgres'" in message and "DATABASE_POOL_SIZE='abc'" in message


@pytest.mark.parametrize(
    ("database_type", "url", "scheme"),
    [
        ("sqlite", f"mysql://root:{SECRET}@db.internal/archon", "mysql"),
        ("postgresql", "sqlite:///x.db", "sqlite"),
        ("mysql", f"postgresql://u:{SECRET}@db.internal/archon", "postgresql"),
        ("supabase", "mariadb://root@db.internal/archon", "mysql"),
    ],
)
def test_a_type_contradicting_the_url_is_refused(database_type: str, url: str, scheme: str) -> None:
    message = refusal(DATABASE_TYPE=database_type, DATABASE_URL=url)
    assert f"DATABASE_TYPE={database_type} contradicts DATABASE_URL=" in message
    assert f"a {scheme} URL: set DATABASE_TYPE={scheme} or leave it unset" in message


def test_mysql_variables_contradicting_the_type_are_refused() -> None:
    message = refusal(DATABASE_TYPE="postgresql", MYSQL_HOST="db", MYSQL_PASSWORD=SECRET)
    assert "DATABASE_TYPE=postgresql contradicts" in message and "a mysql URL" in message


def test_supabase_and_postgresql_are_one_family() -> None:
    assert Settings(database_type="supabase", database_url="postgresql://u@h/db").database_type
    plain = Settings(database_type="postgresql", database_url="postgresql://u@h:6543/db")
    assert plain.database_type == "postgresql"  # stated, not inferred


def test_replicas_of_another_database_are_refused() -> None:
    message = refusal(
        DATABASE_URL="sqlite:///x.db",
        DATABASE_READ_URLS=f"mysql://u:{SECRET}@r/db",
        ENABLE_READ_REPLICAS="true",
    )
    assert "DATABASE_READ_URLS holds a mysql URL" in message and "for a sqlite database" in message


SCHEMES = "scheme postgresql (or postgres), mysql (or mariadb) or sqlite"


@pytest.mark.parametrize(
    ("url", "says", "accepted"),
    [
        (f"postgresql//relpw:{SECRET}@host/db", "DATABASE_URL is not a URL", SCHEMES),
        (f"postgresql://relpw:{SECRET}@host:99999/db", "port 99999", "a port from 1 to 65535"),
        (f"postgresql://relpw:{SECRET}@host:abc/db", "not a valid URL", "from 1 to 65535"),
        (f"postgresql://relpw:a@{SECRET}@host/db", "unencoded '@'", "percent-encode it as %40"),
        (f"oracle://relpw:{SECRET}@host/db", "unsupported database 'oracle'", SCHEMES),
    ],
)
def test_an_unusable_url_is_refused_without_its_password(
    url: str, says: str, accepted: str
) -> None:
    message = refusal(DATABASE_URL=url)
    assert message.startswith("DATABASE_URL") and says in message and accepted in message


def test_a_misspelt_variable_gets_the_closest_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABSE_URL", f"postgresql://u:{SECRET}@h/db")
    monkeypatch.setenv("VECTOR_DB", "chroma")
    monkeypatch.setenv("ARCHON_SERVER_PORT", "8181")  # Archon's own: not a mistake
    with pytest.warns(ConfigurationWarning) as warned:
        settings = Settings()
    messages = sorted(str(w.message) for w in warned)
    assert messages == [
        "DATABSE_URL is not a setting of the data layer and is ignored: did you mean DATABASE_URL?",
        "VECTOR_DB is not a setting of the data layer and is ignored: did you mean "
        "VECTOR_DATABASE?",
    ]
    assert settings.database_url == "sqlite+aiosqlite:///archon.db"  # the typo changed nothing


def test_the_warning_comes_even_when_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABSE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("DATABASE_TYPE", "postgresql")
    with pytest.warns(ConfigurationWarning, match="did you mean DATABASE_URL"):
        with pytest.raises(ConfigurationError, match="needs DATABASE_URL"):
            Settings()


def invoke(args: list[str], **environment: str) -> Result:
    _register()
    return CliRunner().invoke(cli, args, env=environment, catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "environment", "says"),
    [
        (["--url", f"postgresql://u:{SECRET}@h:99999/db"], {}, "DATABASE_URL=postgresql://u:***@h"),
        (["--url", f"postgresql//u:{SECRET}@h/db"], {}, "DATABASE_URL is not a URL"),
        ([], {"DATABASE_TYPE": "postgres"}, "DATABASE_TYPE='postgres' is not accepted"),
        ([], {"DATABASE_POOL_SIZE": "abc"}, "DATABASE_POOL_SIZE='abc' is not accepted"),
        ([], {"VECTOR_DATABASE": "pgvecter", "MYSQL_PASSWORD": SECRET}, "'pgvecter'"),
        ([], {"DATABASE_TYPE": "sqlite", "DATABASE_URL": f"mysql://r:{SECRET}@h"}, "contradicts"),
    ],
)
@pytest.mark.parametrize("command", [["migrate", "current"], ["doctor"], ["vectors", "status"]])
def test_the_cli_says_a_configuration_error_in_one_line(
    command: list[str], args: list[str], environment: dict[str, str], says: str
) -> None:
    result = invoke(command + args, **environment)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
    assert SECRET not in result.output


def test_the_cli_warns_about_a_misspelt_variable(tmp_path: Path) -> None:
    result = invoke(["migrate", "current"], DATABSE_URL=f"sqlite:///{tmp_path / 'mine.db'}")
    warning = "warning: DATABSE_URL is not a setting of the data layer and is ignored: did you mean"
    assert f"{warning} DATABASE_URL?" in result.output
    assert not (tmp_path / "archon.db").exists()  # a read-only command creates nothing


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.output == f"archon-db {version('archon-data')}\n"
