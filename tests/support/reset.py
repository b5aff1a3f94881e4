"""Empty the Archon tables between tests, keeping the schema and the rows the migrations seeded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, MetaData, Table, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.domain import metadata

# A content= option makes an FTS5 table external-content or contentless: it has no rows of its own
# to DELETE, and its index is emptied with the 'delete-all' command instead.
_FTS5_WITHOUT_OWN_ROWS = re.compile(r"using\s+fts5\s*\(.*\bcontent\s*=", re.IGNORECASE | re.DOTALL)


def _archon_tables(conn: Connection) -> list[tuple[str, str]]:
    """(name, kind) of every table to empty, children before parents; kind: table | virtual."""
    if conn.dialect.name == "sqlite":
        # PRAGMA table_list tells FTS5's shadow tables apart: writing to them corrupts the index.
        rows = conn.exec_driver_sql("PRAGMA main.table_list").all()
        present = {row[1]: row[2] for row in rows if row[2] in ("table", "virtual")}
    else:
        present = dict.fromkeys(inspect(conn).get_table_names(), "table")
    known = [table.name for table in reversed(metadata.sorted_tables)]
    # Tables a migration added outside the entities (outbox, FTS) go first: they may point at
    # the entities' tables, never the other way round.
    added = sorted(name for name in present if name.startswith("archon_") and name not in known)
    return [(name, present[name]) for name in added + known if name in present]


def _has_rows(conn: Connection, name: str) -> bool:
    quoted = conn.dialect.identifier_preparer.quote(name)
    return conn.exec_driver_sql(f"SELECT 1 FROM {quoted} LIMIT 1").first() is not None


def _empty_postgres(conn: Connection, names: list[str], restart_ids: bool) -> None:
    quote = conn.dialect.identifier_preparer.quote
    # A transaction a test left open would otherwise make TRUNCATE wait forever for its lock.
    conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
    identity = "RESTART IDENTITY" if restart_ids else "CONTINUE IDENTITY"
    conn.exec_driver_sql(f"TRUNCATE {', '.join(map(quote, names))} {identity} CASCADE")


def _empty_mysql(conn: Connection, names: list[str]) -> None:
    # DELETE, not TRUNCATE: InnoDB's TRUNCATE recreates the table, far slower on small tables.
    # AUTO_INCREMENT counters are therefore not reset.
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
    for name in names:
        conn.exec_driver_sql(f"DELETE FROM {quote(name)}")
    conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


def _empty_sqlite(conn: Connection, tables: list[tuple[str, str]], restart_ids: bool) -> None:
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # checked at commit, once all are empty
    for name, kind in tables:
        if kind == "table":
            conn.exec_driver_sql(f"DELETE FROM {quote(name)}")
    # After the content tables: their triggers may still write to the FTS index while emptied.
    for name, kind in tables:
        if kind == "virtual":
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
            ).scalar_one()
            if _FTS5_WITHOUT_OWN_ROWS.search(sql or ""):
                conn.exec_driver_sql(
                    f"INSERT INTO {quote(name)}({quote(name)}) VALUES ('delete-all')"
                )
            else:
                conn.exec_driver_sql(f"DELETE FROM {quote(name)}")
    has_sequences = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
    ).first()
    if restart_ids and has_sequences:
        conn.exec_driver_sql("DELETE FROM sqlite_sequence")


@dataclass
class TableReset:
    """How to bring one migrated database back to its just-migrated state."""

    url: str
    seeds: list[tuple[Table, list[dict[str, Any]]]] = field(default_factory=list)

    @classmethod
    async def capture(cls, url: str) -> TableReset:
        """Remember the rows the migrations seeded (settings, prompts...) to restore them."""
        reset = cls(url)
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                reset.seeds = await conn.run_sync(_read_seeds)
        finally:
            await engine.dispose()
        return reset

    async def run(self) -> None:
        """Empty every Archon table (the tables' list is read now) and put the seeds back."""
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(self._run)
        finally:
            await engine.dispose()

    def _run(self, conn: Connection) -> None:
        tables = _archon_tables(conn)
        if not tables:
            return
        # Seeded rows keep their ids, so sequences must keep counting past them.
        restart_ids = not self.seeds
        dialect = conn.dialect.name
        if dialect == "postgresql":
            _empty_postgres(conn, [name for name, _ in tables], restart_ids)
        elif dialect in ("mysql", "mariadb"):
            _empty_mysql(conn, [name for name, _ in tables])
        else:
            _empty_sqlite(conn, tables, restart_ids)
        for table, rows in reversed(self.seeds):  # parents first
            conn.execute(table.insert(), rows)


def _read_seeds(conn: Connection) -> list[tuple[Table, list[dict[str, Any]]]]:
    seeds = []
    for name, kind in _archon_tables(conn):
        if kind == "table" and _has_rows(conn, name):
            table = Table(name, MetaData(), autoload_with=conn)
            rows = [dict(row) for row in conn.execute(select(table)).mappings()]
            seeds.append((table, rows))
    return seeds
