"""The benchmark cannot rot: a tiny variant of every scenario, both sides, data compared.

Correctness only (both sides wrote the same rows and vectors, read the same rows, found the same
top-k ids), never timing: the machine running the tests is not quiet enough for that.
"""

from __future__ import annotations

import os

import pytest
from rich.console import Console

from benchmarks.__main__ import run
from benchmarks.context import SCENARIOS, Bench, Options
from benchmarks.raw.common import Digest
from benchmarks.report import Result, render
from tests.support import selected_backends

pytestmark = pytest.mark.slow

# The test suite's backend names, mapped to the benchmark's (chroma rides on SQLite).
_BACKENDS = {"pgvector": "pg", "mariadb": "mariadb", "sqlite": "sqlite"}


def _backends() -> list[str]:
    chosen = [_BACKENDS[name] for name in selected_backends() if name in _BACKENDS]
    if "sqlite" in chosen:
        chosen.append("chroma")
    return chosen


def tiny() -> Options:
    return Options.small(
        rows=240,
        chroma_rows=240,
        queries=5,
        batch=120,
        clients=2,
        transactions=3,
        memory_rows=240,
        check=True,
    )


@pytest.mark.parametrize("backend", _backends())
async def test_every_scenario_agrees_with_the_raw_driver(backend: str) -> None:
    results = await run(Bench(tiny()), [backend], list(SCENARIOS))

    unavailable = [r for r in results if r.scenario == "(backend)"]
    if unavailable:
        message = "; ".join(unavailable[0].problems)
        if os.environ.get("REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    problems = [f"{r.scenario}: {p}" for r in results for p in r.problems]
    assert problems == []
    assert results, "no scenario ran"
    for result in results:
        assert result.layer and result.raw, f"{result.scenario}: a side did not run"
    expected = {"pg": 9, "mariadb": 4, "sqlite": 4, "chroma": 1}[backend]
    assert len(results) == expected


def test_digests_name_what_differs() -> None:
    layer = Digest(rows=10, vectors=9, sources=1, checksum="a")
    raw = Digest(rows=10, vectors=10, sources=1, checksum="b")

    assert layer.differences(raw) == ["vectors: layer 9 != raw 10", "checksum: layer a != raw b"]
    assert raw.differences(raw) == []


def test_the_report_shows_ratio_goal_and_failures(capsys: pytest.CaptureFixture[str]) -> None:
    fast = Result("pg", "get", "ms p50", False, 2.0, layer=[1.0, 3.0, 2.0], raw=[1.0])
    slow = Result("pg", "ingest", "rows/s", True, 0.9, layer=[50.0], raw=[100.0])
    slow.problems.append("rows: layer 1 != raw 2")

    render([fast, slow], title="t")

    out = capsys.readouterr().out
    assert fast.ratio == 2.0 and fast.meets_goal is True
    assert slow.ratio == 0.5 and slow.meets_goal is False
    assert "FAILED" in out and "rows: layer 1 != raw 2" in out


@pytest.mark.parametrize("backend", [b for b in _backends() if b != "chroma"])
async def test_load_runs_clean(backend: str) -> None:
    from benchmarks.load import KINDS, run_backend

    result = await run_backend(
        backend, clients=3, seconds=3, warmup=1, margin=0.10, console=Console(quiet=True),
        seed_chunks=1000,
    )  # fmt: skip
    assert not result.errors, result.first_errors
    assert result.checked_out_end == 0
    assert set(result.operations) == set(KINDS)
    assert result.rss_after_warmup > 0 and result.rss_end > 0
