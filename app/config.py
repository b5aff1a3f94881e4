"""Settings read from the environment (pydantic-settings). Pure data: no I/O happens here."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from app.errors import InvalidInputError

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///archon.db"
CHROMA_FOLDER_SUFFIX = "-chroma"


class DatabaseType(StrEnum):
    SUPABASE = "supabase"
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    SQLITE = "sqlite"


class VectorBackend(StrEnum):
    PGVECTOR = "pgvector"
    CHROMA = "chroma"
    WEAVIATE = "weaviate"
    EXACT = "exact"


_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "sqlite": "sqlite+aiosqlite",
}


def to_async_url(url: str) -> str:
    """Give a plain ``postgresql://`` / ``mysql://`` / ``sqlite://`` URL its async driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"DATABASE_URL is not a URL: {mask_url(url)!r}")
    base = scheme.split("+", 1)[0].lower()
    if "+" in scheme or base not in _ASYNC_DRIVERS:
        return url
    return f"{_ASYNC_DRIVERS[base]}://{rest}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, safe for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: show only the scheme
        return url.split("://", 1)[0] + "://***"


def infer_database_type(url: str) -> DatabaseType:
    """Which backend a URL names; Supabase hosts and pooler ports count as ``supabase``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("mysql", "mariadb"):
        return DatabaseType.MYSQL
    if backend == "sqlite":
        return DatabaseType.SQLITE
    if backend == "postgresql":
        host = parsed.host or ""
        if "supabase" in host or parsed.port == 6543:
            return DatabaseType.SUPABASE
        return DatabaseType.POSTGRESQL
    raise ValueError(f"unsupported database in DATABASE_URL: {backend!r}")


class Settings(BaseSettings):
    """Every setting of the data layer; field names are the environment names in lower case."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_type: DatabaseType | None = None
    database_url: str | None = None
    mysql_host: str | None = None
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: SecretStr | None = None
    mysql_database: str = "archon"
    supabase_service_key: SecretStr | None = None
    credentials_key: SecretStr | None = None
    database_pool_size: int = Field(default=5, ge=1, le=1000)
    database_pool_timeout: float = Field(default=30.0, gt=0)
    database_pool_recycle: int = Field(default=1800, ge=-1)
    database_pool_pre_ping: bool = False
    # NoDecode: the environment gives a comma-separated list, not JSON.
    database_read_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    enable_read_replicas: bool = False
    vector_database: VectorBackend | None = None
    chroma_path: str | None = None
    chroma_url: str | None = None
    weaviate_url: str | None = None
    weaviate_api_key: SecretStr | None = None
    enable_query_logging: bool = False
    slow_query_threshold_ms: float = Field(default=500.0, ge=0)

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
                raise ValueError(
                    f"DATABASE_TYPE={self.database_type.value} needs DATABASE_URL"
                    + (" or MYSQL_HOST" if self.database_type is DatabaseType.MYSQL else "")
                )
            self.database_url = DEFAULT_SQLITE_URL
        self.database_url = to_async_url(self.database_url)
        self.database_read_urls = [to_async_url(u) for u in self.database_read_urls]
        if self.database_type is None:
            self.database_type = infer_database_type(self.database_url)
        return self

    def _mysql_url(self) -> str:
        from sqlalchemy.engine import URL

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
