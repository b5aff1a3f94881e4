"""Importing the domain loads no driver and no vector SDK; nothing connects at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import app

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


def _imports(root: Path) -> dict[str, set[str]]:
    """Module -> the app modules it imports, at any level (top, in functions, TYPE_CHECKING)."""
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    found.add(target)
        graph[name] = found
    return graph


def test_no_import_circles_between_modules() -> None:
    graph = _imports(Path(app.__file__).parent)
    circles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert circles == []
