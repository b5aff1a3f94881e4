"""Database URLs: masking for output, checking, async drivers, which backend a URL names.

Masking works on the text, not on a parse: a URL too broken to parse (no ``://``, an unencoded
``@`` in the password) must still come out without its password.
"""

from __future__ import annotations

import re
from enum import StrEnum

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.errors import ConfigurationError


class DatabaseType(StrEnum):
    SUPABASE = "supabase"
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    SQLITE = "sqlite"


_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "sqlite": "sqlite+aiosqlite",
}
ACCEPTED_URLS = (
    "<scheme>://user:password@host:port/database with scheme postgresql (or postgres), "
    "mysql (or mariadb) or sqlite, optionally with +driver"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Query parameters whose values may be credentials (libpq's password, sslpassword, tokens...).
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|key|token|auth|cred", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its password and secret-looking query values replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "***"  # not a URL: nothing tells where a password would sit, so show nothing
    end = _user_part_end(rest)
    userinfo, address = (rest[:end], rest[end + 1 :]) if end >= 0 else ("", rest)
    address, question, query = address.partition("?")
    if end >= 0:
        user, colon, _ = userinfo.partition(":")
        if "%3a" in user.lower():  # a colon percent-encoded into the user part hides a password
            userinfo = "***@"
        else:
            userinfo = f"{user}:***@" if colon else f"{userinfo}@"
    if question:
        query = "&".join(_mask_parameter(pair) for pair in query.split("&"))
    return f"{scheme}://{userinfo}{address}{question}{query}"


def _user_part_end(rest: str) -> int:
    """Where the user part of ``rest`` (the URL after ``://``) ends: its ``@``, or -1.

    Read both ways, keeping the later ``@``: the last one before the query (an unencoded ``@``
    in the password stays inside the user part; an ``@`` in a query value is no end of it), and
    SQLAlchemy's reading (a user name without ``:`` or ``/``, a password up to the first ``@``,
    so an unencoded ``?`` in the password is still in it), extended over a host holding ``@``.
    """
    before_query = rest.partition("?")[0].rfind("@")
    first = rest.find("@")
    if first < 0 or "/" in rest[:first].partition(":")[0]:
        return before_query
    host = re.match(r"[^/?]*", rest[first + 1 :])
    after = host.group().rfind("@") if host else -1
    return max(before_query, first + 1 + after if after >= 0 else first)


def _mask_parameter(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAMETER.search(name) else pair


def check_url(url: str, variable: str) -> URL:
    """``url`` parsed; ``ConfigurationError`` naming ``variable`` when it cannot be used."""
    masked = mask_url(url)
    if "://" not in url:
        raise ConfigurationError(
            f"{variable} is not a URL (value not shown: it may hold a password): expected "
            f"{ACCEPTED_URLS}"
        )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"{variable}={masked} is not a valid URL (the port must be a number from 1 to 65535): "
            f"expected {ACCEPTED_URLS}"
        ) from exc
    if "@" in (parsed.host or ""):
        raise ConfigurationError(
            f"{variable}={masked} has an unencoded '@' in its user name or password: "
            "percent-encode it as %40 (urllib.parse.quote(password, safe=''))"
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConfigurationError(
            f"{variable}={masked} has port {parsed.port}: expected a port from 1 to 65535"
        )
    if parsed.get_backend_name() not in _ASYNC_DRIVERS:
        raise ConfigurationError(
            f"{variable}={masked} names an unsupported database "
            f"{parsed.get_backend_name()!r}: expected {ACCEPTED_URLS}"
        )
    _check_query(parsed, variable)
    return parsed


# URL query options drivers take in another form, or not at all: refused by name, with what
# to use instead (left in, they failed at connect time with a driver's TypeError, or did nothing).
_TIMEOUTS = "use DATABASE_CONNECT_TIMEOUT (connecting) or DATABASE_STATEMENT_TIMEOUT (statements)"
_INSTEAD = {
    "postgresql": {
        "timeout": _TIMEOUTS,
        "connect_timeout": _TIMEOUTS,
        "command_timeout": _TIMEOUTS,
        "statement_timeout": _TIMEOUTS,
        "sslmode": "asyncpg names it ssl: ?ssl=require (or verify-ca, verify-full, disable)",
        "sslcert": "asyncpg reads client certificates from PGSSLCERT / PGSSLKEY",
        "sslkey": "asyncpg reads client certificates from PGSSLCERT / PGSSLKEY",
        "sslrootcert": "asyncpg reads the root certificate from PGSSLROOTCERT",
        "sslpassword": "asyncpg takes no key password in the URL; use an unencrypted key file",
        "application_name": "not a connection option of asyncpg; it cannot be set in the URL",
        "options": "not a connection option of asyncpg; it cannot be set in the URL",
    },
    "mysql": {
        "connect_timeout": _TIMEOUTS,
        "read_timeout": _TIMEOUTS,
        "write_timeout": _TIMEOUTS,
        "timeout": _TIMEOUTS,
    },
    "sqlite": {"timeout": "use DATABASE_POOL_TIMEOUT (how long a writer waits for the lock)"},
}


# Query options whose other values the layer cannot work with (they failed later, untyped: a
# latin1 or ascii charset with a UnicodeEncodeError for any other text, an unknown one with an
# AttributeError; utf8 refuses emoji; use_unicode=0 gives bytes for text; a bad ssl mode read as
# "the database is not reachable"): option -> (accepted values, lower-cased; what they mean).
_VALUES: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "postgresql": {
        "ssl": (
            ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
            "asyncpg's SSL modes",
        ),
    },
    "mysql": {
        "charset": (("utf8mb4",), "the layer's tables hold any Unicode text"),
        "use_unicode": (("1", "true", "yes", "on", "y", "t"), "the layer reads text as text"),
    },
}


def _check_query(parsed: URL, variable: str) -> None:
    backend = parsed.get_backend_name()
    for name, value in parsed.query.items():
        advice = _INSTEAD.get(backend, {}).get(name.lower())
        if advice is not None:
            raise ConfigurationError(
                f"{variable} has the query option {name!r}, which the {backend} driver does not "
                f"take that way: {advice}"
            )
        accepted = _VALUES.get(backend, {}).get(name.lower())
        values = [value] if isinstance(value, str) else list(value)
        fold = str.lower if backend == "mysql" else str  # asyncpg reads its modes as written
        if accepted is not None and any(fold(v) not in accepted[0] for v in values):
            given = "" if _SECRET_PARAMETER.search(name) else f"={values[-1]!r}"
            raise ConfigurationError(
                f"{variable} has the query option {name!r}{given}: expected "
                f"{' or '.join(accepted[0])} ({accepted[1]})"
            )


def to_async_url(url: str) -> str:
    """Give a plain ``postgresql://`` / ``mysql://`` / ``sqlite://`` URL its async driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        check_url(url, "DATABASE_URL")  # raises, naming what a URL looks like
    base = scheme.split("+", 1)[0].lower()
    if "+" in scheme or base not in _ASYNC_DRIVERS:
        return url
    return f"{_ASYNC_DRIVERS[base]}://{rest}"


def infer_database_type(url: str) -> DatabaseType:
    """Which backend a URL names; Supabase hosts and pooler ports count as ``supabase``."""
    parsed = check_url(url, "DATABASE_URL")
    backend = parsed.get_backend_name()
    if backend in ("mysql", "mariadb"):
        return DatabaseType.MYSQL
    if backend == "sqlite":
        return DatabaseType.SQLITE
    host = parsed.host or ""
    if "supabase" in host or parsed.port == 6543:
        return DatabaseType.SUPABASE
    return DatabaseType.POSTGRESQL


def same_backend(first: DatabaseType, second: DatabaseType) -> bool:
    """Whether two types talk to the same kind of server (Supabase is PostgreSQL)."""
    postgres = {DatabaseType.SUPABASE, DatabaseType.POSTGRESQL}
    return first == second or {first, second} <= postgres


def multi_host_url(url: str) -> str:
    """A PostgreSQL URL naming several servers in SQLAlchemy's form, ``?host=a:1&host=b:2``.

    Accepted as given: libpq's comma list in the address (``user@a:5432,b:5433/db``) and in the
    query (``?host=a,b&port=5432,5433``). Several servers without ``target_session_attrs`` get
    ``read-write``: connections go to the one that accepts writes. Other URLs are unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme.split("+", 1)[0].lower() not in ("postgresql", "postgres"):
        if "," in rest.partition("?")[0].rpartition("@")[2].partition("/")[0]:
            raise ConfigurationError(
                f"DATABASE_URL={mask_url(url)} names several hosts: only a PostgreSQL URL may"
            )
        return url
    rest, question, query = rest.partition("?")
    userinfo, at, address = rest.rpartition("@")
    netloc, slash, path = address.partition("/")
    pairs = [pair for pair in query.split("&") if pair] if question else []
    if "," in netloc:  # the address's list, each host given the query's port if it has none
        pairs = [f"host={part}" for part in netloc.split(",") if part] + [
            p for p in pairs if p.partition("=")[0] != "host"
        ]
        netloc = ""
    hosts = _query_hosts(pairs)
    if len(hosts) < 2:
        return url
    pairs = [p for p in pairs if p.partition("=")[0] not in ("host", "port")]
    pairs += [f"host={host}" for host in hosts]
    if not any(p.partition("=")[0] == "target_session_attrs" for p in pairs):
        pairs.append("target_session_attrs=read-write")
    return f"{scheme}://{userinfo}{at}{netloc}{slash}{path}?{'&'.join(pairs)}"


def _query_hosts(pairs: list[str]) -> list[str]:
    """``host=a,b&port=1,2`` (libpq) or ``host=a:1&host=b:2`` (SQLAlchemy) as ``a:1``, ``b:2``."""
    values: dict[str, list[str]] = {"host": [], "port": []}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name in values:
            values[name] += [part for part in value.split(",") if part]
    hosts, ports = values["host"], values["port"]
    if len(ports) == 1:
        ports = ports * len(hosts)
    if ports and len(ports) != len(hosts):
        raise ConfigurationError(
            f"DATABASE_URL names {len(hosts)} hosts and {len(ports)} ports: give one port, "
            "or one port per host (host=a,b&port=5432,5433)"
        )
    if not ports:
        return hosts
    return [h if ":" in h else f"{h}:{p}" for h, p in zip(hosts, ports, strict=True)]


def url_hosts(url: str) -> list[str]:
    """The ``host:port`` servers a URL names (several for a multi-host PostgreSQL URL)."""
    parsed = make_url(url)
    hosts = parsed.query.get("host")
    if isinstance(hosts, tuple) and len(hosts) > 1:
        return list(hosts)
    default = {"postgresql": 5432, "mysql": 3306}.get(parsed.get_backend_name())
    host = parsed.host or (hosts if isinstance(hosts, str) else None) or "localhost"
    return [f"{host}:{parsed.port or default}"]
