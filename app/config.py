"""Settings read from the environment (pydantic-settings). Pure data: no I/O happens here."""

from __future__ import annotations

import os
import warnings
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url

from app.config_explain import explain, unknown_variable_warning, unknown_variables
from app.errors import ConfigurationError, InvalidInputError
from app.urls import (
    DatabaseType,
    check_url,
    infer_database_type,
    mask_url,
    multi_host_url,
    same_backend,
    to_async_url,
)

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///archon.db"
CHROMA_FOLDER_SUFFIX = "-chroma"


class VectorBackend(StrEnum):
    PGVECTOR = "pgvector"
    CHROMA = "chroma"
    WEAVIATE = "weaviate"
    EXACT = "exact"


class Settings(BaseSettings):
    """Every setting of the data layer; field names are the environment names in lower case.

    A setting that cannot be used raises ``ConfigurationError`` naming the variable, the value
    (never a secret's) and what is accepted. URLs stay plain strings for the code that connects;
    ``repr``, ``model_dump`` and ``model_dump_json`` show them with the password masked.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # pydantic's messages would otherwise carry the whole input, passwords included.
        hide_input_in_errors=True,
    )

    database_type: DatabaseType | None = None
    database_url: str | None = None
    mysql_host: str | None = None
    mysql_port: int = Field(default=3306, ge=1, le=65535)
    mysql_user: str = "root"
    mysql_password: SecretStr | None = None
    mysql_database: str = "archon"
    supabase_service_key: SecretStr | None = None
    credentials_key: SecretStr | None = None
    database_pool_size: int = Field(default=5, ge=1, le=1000)
    database_pool_timeout: float = Field(default=30.0, gt=0)
    # Seconds to establish a connection (the handshake included); a server that accepts and
    # never answers is given up on after this.
    database_connect_timeout: float = Field(default=10.0, gt=0, le=3600)
    # Seconds a statement may run before the server cancels it; unset = no limit.
    database_statement_timeout: float | None = Field(default=None, gt=0, le=86400)
    database_pool_recycle: int = Field(default=1800, ge=-1)
    database_pool_pre_ping: bool = False
    # NoDecode: the environment gives a comma-separated list, not JSON.
    database_read_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    enable_read_replicas: bool = False
    # Seconds after a write during which this layer's read-only Units of Work read from the
    # primary, so that they see what it just wrote (0: replicas at once).
    database_read_your_writes_seconds: float = Field(default=5.0, ge=0, le=3600)
    # Seconds a replica may trail the primary before reads skip it; unset = any lag.
    database_replica_max_lag: float | None = Field(default=None, gt=0, le=86400)
    vector_database: VectorBackend | None = None
    chroma_path: str | None = None
    chroma_url: str | None = None
    weaviate_url: str | None = None
    weaviate_api_key: SecretStr | None = None
    enable_query_logging: bool = False
    slow_query_threshold_ms: float = Field(default=500.0, ge=0)
    # Record every write of a Unit of Work (who, what, when) in archon_audit_log, with its commit.
    enable_audit_log: bool = False

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(explain(exc, type(self))) from exc
        except SettingsError as exc:  # names the field and the source, never the value
            raise ConfigurationError(str(exc)) from exc
        finally:  # a misspelt name is often why a setting is missing: say so even on failure
            _warn_unknown_variables(type(self))

    @field_validator("database_read_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if self.database_url is None and self.mysql_host:
            self.database_url = self._mysql_url()
        if self.database_url is None:
            if self.database_type not in (None, DatabaseType.SQLITE):
                raise ConfigurationError(
                    f"DATABASE_TYPE={self.database_type.value} needs DATABASE_URL"
                    + (" or MYSQL_HOST" if self.database_type is DatabaseType.MYSQL else "")
                )
            self.database_url = DEFAULT_SQLITE_URL
        self.database_url = multi_host_url(self.database_url)
        check_url(self.database_url, "DATABASE_URL")
        self.database_url = to_async_url(self.database_url)
        inferred = infer_database_type(self.database_url)
        if self.database_type is None:
            self.database_type = inferred
        elif not same_backend(self.database_type, inferred):
            raise ConfigurationError(
                f"DATABASE_TYPE={self.database_type.value} contradicts DATABASE_URL="
                f"{mask_url(self.database_url)}, a {inferred.value} URL: set DATABASE_TYPE="
                f"{inferred.value} or leave it unset (it is inferred from the URL)"
            )
        self.database_read_urls = [self._read_url(url) for url in self.database_read_urls]
        return self

    def _read_url(self, url: str) -> str:
        check_url(url, "DATABASE_READ_URLS")
        replica = infer_database_type(to_async_url(url))
        assert self.database_type is not None  # resolved before the replicas
        # Unused until ENABLE_READ_REPLICAS: a list kept for later need not match yet.
        if self.enable_read_replicas and not same_backend(replica, self.database_type):
            raise ConfigurationError(
                f"DATABASE_READ_URLS holds a {replica.value} URL ({mask_url(url)}) for a "
                f"{self.database_type.value} database: replicas must be the same database"
            )
        return to_async_url(url)

    def _mysql_url(self) -> str:
        from sqlalchemy.engine import URL

        if self.mysql_host and any(c in self.mysql_host for c in "@/?# "):
            raise ConfigurationError(
                f"MYSQL_HOST={self.mysql_host!r} is not accepted: expected a host name or "
                "address only (the user, password, port and database have their own MYSQL_* "
                "settings)"
            )
        password = self.mysql_password.get_secret_value() if self.mysql_password else None
        url = URL.create(
            "mysql+aiomysql",
            username=self.mysql_user,
            password=password,
            host=self.mysql_host,
            port=self.mysql_port,
            database=self.mysql_database,
            query={"charset": "utf8mb4"},
        )
        return url.render_as_string(hide_password=False)

    @field_serializer("database_url")
    def _dump_url(self, value: str | None) -> str | None:
        return None if value is None else mask_url(value)

    @field_serializer("database_read_urls")
    def _dump_urls(self, value: list[str]) -> list[str]:
        return [mask_url(url) for url in value]

    @property
    def safe_database_url(self) -> str:
        """DATABASE_URL with the password masked."""
        return mask_url(self.database_url or "")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "database_url" and isinstance(value, str):
                value = mask_url(value)
            elif name == "database_read_urls" and isinstance(value, list):
                value = [mask_url(v) for v in value]
            yield name, value


def _warn_unknown_variables(model: type[Settings]) -> None:
    """Warn about each variable that looks meant for the layer but names no setting."""
    for variable, closest in unknown_variables(os.environ, model.model_fields):
        # stacklevel: the warning points at the code that built the Settings.
        warnings.warn(unknown_variable_warning(variable, closest), ConfigurationWarning, 4)


class ConfigurationWarning(UserWarning):
    """An environment variable that looks meant for the data layer but is none of its settings."""


def sqlite_file(url: str | None) -> str | None:
    """The absolute path of a SQLite URL's database file; None for memory or another database."""
    if not url:
        return None
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        if "mode=memory" in database:
            return None
        database = database[len("file:") :].split("?", 1)[0]
    return os.path.abspath(database)


def chroma_folder(settings: Settings) -> str:
    """Where embedded Chroma keeps its files: ``CHROMA_PATH``, else beside the SQLite file.

    Never the working directory: the folder belongs to one database (``<database file>-chroma``).
    A server database shared by several hosts gets no implicit folder at all.
    """
    if settings.chroma_path:
        return os.path.abspath(settings.chroma_path)
    if settings.chroma_url:
        return ""
    database = sqlite_file(settings.database_url)
    if database is None:
        raise InvalidInputError(
            "VECTOR_DATABASE=chroma needs CHROMA_URL (a `chroma run` server) or CHROMA_PATH (a "
            f"folder) for {mask_url(settings.database_url or '')}: an embedded folder is only "
            "implied for a SQLite database file"
        )
    return database + CHROMA_FOLDER_SUFFIX


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
