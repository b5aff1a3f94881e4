"""Importing the domain loads no driver and no vector SDK; nothing connects at import time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("asyncpg", "aiomysql", "pymysql", "aiosqlite", "chromadb", "weaviate", "numpy", "pgvector")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.strip().split(","))
    return {name for name in HEAVY if name in loaded}


def test_domain_imports_no_driver_or_sdk() -> None:
    assert _loaded_after("import app.domain") == set()


def test_port_modules_import_no_sdk() -> None:
    assert _loaded_after("import app.vector, app.uow, app.errors, app.filters") & {
        "chromadb",
        "weaviate",
        "asyncpg",
        "aiomysql",
    } == set()
