"""What a Unit of Work's session remembers about itself: read-only, and a write that failed.

Repositories send a single-statement write without a savepoint (a savepoint costs two round
trips). On PostgreSQL a failed statement aborts the whole transaction, so after such a failure
the only way on is a rollback; the Unit of Work behaves that way on every backend, so code that
works on one works on all. Work that must survive its own failure goes in ``uow.savepoint()``.
"""

from __future__ import annotations

from typing import Any

from app.errors import DataLayerError

FAILED = "archon_failed"
# Chunk rows were deleted or changed (or a source, whose chunks go with it, was deleted): an
# external vector store has operations queued by the database's triggers to apply after commit.
ROWS_CHANGED = "archon_rows_changed"
VECTOR_TABLES = frozenset({"archon_sources", "archon_crawled_pages", "archon_code_examples"})


def note_changed(session: Any, table: str) -> None:
    """Remember that rows of ``table`` were deleted or changed, if a store's copy may differ."""
    if table in VECTOR_TABLES:
        session.info[ROWS_CHANGED] = True


def failed_message(action: str) -> str:
    """Why the Unit of Work cannot go on, and what to do."""
    return (
        f"an earlier write failed ({action}) and the transaction cannot continue; "
        "call `await uow.rollback()` to start over, and put writes that may fail inside "
        "`async with uow.savepoint():` to keep the rest of the Unit of Work"
    )


def check_usable(session: Any) -> None:
    """DataLayerError when an earlier write of this session failed outside a savepoint."""
    failed = session.info.get(FAILED)
    if failed is not None:
        raise DataLayerError(f"this Unit of Work is unusable: {failed_message(failed)}")


def mark_failed(session: Any, action: str) -> None:
    """Remember that a write failed outside any savepoint (the transaction is lost)."""
    if not session.in_nested_transaction():
        session.info[FAILED] = action
