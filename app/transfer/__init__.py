"""Copying an Archon database to another, any supported backend to any other.

``await copy_database(source_layer, target_layer)`` copies every table of the schema, vectors
included, in foreign-key order and in batches, keeps the ids, resumes by key after an
interruption, continues the target's id counters, rebuilds its vector index and verifies counts
and canonical checksums per table. ``archon-db copy --from URL --to URL`` is the command.
"""

from app.transfer.copy import DEFAULT_BATCH, copy_database
from app.transfer.report import CopyReport, TableReport

__all__ = ["DEFAULT_BATCH", "CopyReport", "TableReport", "copy_database"]
