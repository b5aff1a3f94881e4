"""Results and the table that shows them: both figures, their ratio, the goal, peak memory."""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.measure import MEMORY_METHOD, MIB, median


@dataclass
class Result:
    """One scenario on one backend: each repeat's figure for both sides, and what was checked.

    ``ratio`` is layer / raw for the scenario's unit: above 1 is better for throughputs (goal
    ``>=``), worse for latencies (goal ``<=``).
    """

    backend: str
    scenario: str
    unit: str
    higher_is_better: bool
    goal: float | None
    layer: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    layer_peak: int = 0
    raw_peak: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # --check mismatches and failures
    peak_limit: int | None = None  # a goal on the layer's peak memory instead of a ratio

    @property
    def layer_value(self) -> float:
        return median(self.layer)

    @property
    def raw_value(self) -> float:
        return median(self.raw)

    @property
    def ratio(self) -> float:
        if not self.layer or not self.raw or self.raw_value == 0:
            return math.nan
        return self.layer_value / self.raw_value

    @property
    def meets_goal(self) -> bool | None:
        if self.peak_limit is not None:
            return self.layer_peak < self.peak_limit if self.layer_peak else None
        if self.goal is None or math.isnan(self.ratio):
            return None
        return self.ratio >= self.goal if self.higher_is_better else self.ratio <= self.goal

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ratio=self.ratio, meets_goal=self.meets_goal)
        data.update(layer_median=self.layer_value, raw_median=self.raw_value)
        return data


def _figure(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit.startswith("ms"):
        return f"{value:.2f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _goal(result: Result) -> str:
    verdict = {True: "[green]ok[/]", False: "[red]missed[/]", None: ""}[result.meets_goal]
    if result.peak_limit is not None:
        return f"peak < {result.peak_limit / MIB:,.0f} MiB {verdict}"
    if result.goal is None:
        return "-"
    sign = ">=" if result.higher_is_better else "<="
    return f"{sign} {result.goal:.2f} {verdict}"


def render(results: list[Result], *, title: str, console: Console | None = None) -> None:
    """Print the table, then each scenario's notes and problems."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: wide enough for every column
            console = Console(width=160)
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("backend", "left"),
        ("scenario", "left"),
        ("unit", "left"),
        ("layer", "right"),
        ("raw", "right"),
        ("layer/raw", "right"),
        ("goal", "left"),
        ("peak MiB layer", "right"),
        ("peak MiB raw", "right"),
        ("check", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        ratio = "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}"
        check = "[red]FAILED[/]" if r.problems else "[green]ok[/]"
        table.add_row(
            r.backend,
            r.scenario,
            r.unit,
            _figure(r.layer_value, r.unit),
            _figure(r.raw_value, r.unit),
            ratio,
            _goal(r),
            f"{r.layer_peak / MIB:,.0f}" if r.layer_peak else "-",
            f"{r.raw_peak / MIB:,.0f}" if r.raw_peak else "-",
            check,
        )
    console.print(table)
    console.print(
        f"figures: medians over repeats (latencies: median of each repeat's p50); "
        f"memory: {MEMORY_METHOD}, max over repeats; {machine()}"
    )
    for r in results:
        for note in r.notes:
            console.print(f"  {r.backend} {r.scenario}: {note}")
        for problem in r.problems:
            console.print(f"  [red]{r.backend} {r.scenario}: {problem}[/]")


def machine() -> str:
    import os

    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}{load}"


def write_json(results: list[Result], path: Path, options: dict[str, Any]) -> None:
    payload = {
        "machine": machine(),
        "memory": MEMORY_METHOD,
        "options": options,
        "results": [r.as_dict() for r in results],
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
