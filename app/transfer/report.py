"""What a copy reports: per table, rows read, written, skipped, and both sides' checksums."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TableReport:
    """One table's copy: ``copied`` rows written now, ``skipped`` found in the target already
    (an earlier, interrupted run wrote them); counts and checksums of both sides after it."""

    name: str
    source_rows: int
    target_rows: int = 0
    copied: int = 0
    skipped: int = 0
    vectors: dict[int, int] = field(default_factory=dict)  # dimension -> rows holding one
    source_checksum: str | None = None
    target_checksum: str | None = None

    @property
    def verified(self) -> bool:
        """Same count and same checksum on both sides (False before verification)."""
        return (
            self.source_checksum is not None
            and self.source_rows == self.target_rows
            and self.source_checksum == self.target_checksum
        )


@dataclass
class CopyReport:
    """The whole copy: tables in the order copied, the target's index and what was rebuilt."""

    source: str  # masked URLs
    target: str
    tables: list[TableReport]
    vector_index: str
    dry_run: bool = False
    migrated: bool = False
    hnsw_indexes: list[str] = field(default_factory=list)
    store_records: int | None = None  # records written to an external store by the rebuild
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        """Every table verified (a dry run verifies nothing)."""
        return not self.dry_run and all(table.verified for table in self.tables)

    @property
    def mismatched(self) -> list[str]:
        return [table.name for table in self.tables if not table.verified]
