"""Every Python snippet of the README runs as written, in order, on the embedded default."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
pytestmark = pytest.mark.backends("sqlite")


def snippets() -> list[str]:
    return SNIPPET.findall(README.read_text())


async def test_the_readme_snippets_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "DATABASE_TYPE", "VECTOR_DATABASE", "CHROMA_PATH", "CHROMA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the snippets make archon.db in the working directory
    found = snippets()
    assert len(found) >= 3
    namespace: dict[str, Any] = {}
    for number, source in enumerate(found, 1):
        code = compile(source, f"README snippet {number}", "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # fmt: skip
        result = eval(code, namespace)  # noqa: S307 - the README's own code
        if inspect.isawaitable(result):
            await result
    assert [task.title for task in namespace["todo"]] == ["Index the docs"]
    assert namespace["report"].vectors == 2
    assert namespace["hits"][0].entity.content == namespace["texts"][1]
