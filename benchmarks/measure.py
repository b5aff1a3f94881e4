"""Timing and memory: medians of repeated runs, latency percentiles, peak resident memory.

Peak memory is the process's peak resident set size (``VmHWM``). On Linux it is reset before each
measured run (writing ``5`` to ``/proc/self/clear_refs``), so each figure is that run's own peak,
everything the process holds included (interpreter, libraries, embedded Chroma). Elsewhere the
peak cannot be reset and ``resource.getrusage``'s ``ru_maxrss`` (peak since start) is reported.
tracemalloc is not used: it slows allocation-heavy code several times over, timings with it
would be meaningless.
"""

from __future__ import annotations

import cProfile
import gc
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Start a new peak-RSS window; False where the platform cannot (then the peak is global)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """Peak resident set size in bytes (since the last ``reset_peak`` where supported)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def current_rss() -> int:
    kib = _status_kib("VmRSS")
    return (kib or 0) * 1024


MEMORY_METHOD = (
    "peak RSS (VmHWM, reset per run)" if _STATUS.exists() else "peak RSS (getrusage ru_maxrss)"
)


@dataclass
class Run:
    """One measured run: elapsed seconds, its own peak RSS, and what it returned."""

    seconds: float
    peak: int
    result: Any = None


@asynccontextmanager
async def window() -> AsyncIterator[dict[str, float]]:
    """Measure the body: ``seconds`` and ``peak`` (bytes) are filled in on exit."""
    gc.collect()
    reset_peak()
    out: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - started
        out["peak"] = float(peak_rss())


async def timed(work: Callable[[], Awaitable[Any]]) -> Run:
    async with window() as out:
        result = await work()
    return Run(out["seconds"], int(out["peak"]), result)


async def latencies(call: Callable[[int], Awaitable[Any]], count: int) -> tuple[list[float], list]:
    """Seconds per call for ``call(0) .. call(count - 1)``, and what each returned."""
    times, results = [], []
    clock = time.perf_counter
    for i in range(count):
        started = clock()
        results.append(await call(i))
        times.append(clock() - started)
    return times, results


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Profiler:
    """cProfile around the layer's runs when ``--profile DIR`` is given."""

    directory: Path | None
    profiles: dict[str, cProfile.Profile] = field(default_factory=dict)

    @asynccontextmanager
    async def profile(self, name: str) -> AsyncIterator[None]:
        if self.directory is None:
            yield
            return
        profiler = self.profiles.setdefault(name, cProfile.Profile())
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()

    def dump(self) -> list[Path]:
        if self.directory is None:
            return []
        self.directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, profiler in self.profiles.items():
            path = self.directory / f"{name}.prof"
            profiler.dump_stats(path)
            written.append(path)
        return written
