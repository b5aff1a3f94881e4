"""The ``examples/env`` files: each names every setting of the README's configuration table, and
what each sets is a configuration the layer accepts (read the way ``.env`` is read)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import DatabaseType, Settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "env").glob("*.env.example"))
README = (ROOT / "README.md").read_text()
ASSIGNMENT = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=", re.MULTILINE)


def backend_of(path: Path) -> str:
    return path.name.removesuffix(".env.example")


def readme_settings() -> set[str]:
    """The variables of the README's configuration table."""
    table = README.split("## Configuration", 1)[1].split("\n\n| variable |", 1)[1]
    rows = table.split("\n\n", 1)[0].splitlines()
    return {m.group(1) for row in rows if (m := re.match(r"\| `([A-Z0-9_]+)` \|", row))}


def test_there_is_an_example_per_backend() -> None:
    backends = [backend_of(path) for path in EXAMPLES]
    assert backends == ["mariadb", "postgresql", "sqlite", "supabase"]
    assert all(f"examples/env/{path.name}" in README for path in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: backend_of(path))
def test_every_setting_is_named(path: Path) -> None:
    wanted = readme_settings()
    assert len(wanted) >= 20
    assert wanted <= set(ASSIGNMENT.findall(path.read_text())), path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: backend_of(path))
def test_what_it_sets_is_accepted(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in readme_settings():
        monkeypatch.delenv(name, raising=False)

    settings = Settings(_env_file=path)  # type: ignore[call-arg]

    expected = {"sqlite": DatabaseType.SQLITE, "postgresql": DatabaseType.POSTGRESQL,
                "supabase": DatabaseType.SUPABASE, "mariadb": DatabaseType.MYSQL}  # fmt: skip
    assert settings.database_type is expected[backend_of(path)]
    assert "CHANGE-ME" not in repr(settings)  # the placeholder password is masked like any other
