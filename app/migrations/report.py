"""What ``adopt`` reports: findings, each a blocker, a warning or a note."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    BLOCKER = "blocker"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """One difference between the live database and what the layer expects."""

    severity: Severity
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.subject}: {self.message}"


@dataclass
class AdoptReport:
    """Every difference found; ``adoptable`` when none is a blocker."""

    findings: list[Finding] = field(default_factory=list)
    revision: str | None = None
    stamped: bool = False

    def of(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity is severity]

    @property
    def blockers(self) -> list[Finding]:
        return self.of(Severity.BLOCKER)

    @property
    def warnings(self) -> list[Finding]:
        return self.of(Severity.WARNING)

    @property
    def adoptable(self) -> bool:
        return not self.blockers

    def lines(self) -> list[str]:
        order = list(Severity)
        return [str(f) for f in sorted(self.findings, key=lambda f: order.index(f.severity))]
