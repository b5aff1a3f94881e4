"""``copy_database``: every table of one Archon database into another, any backend to any other.

The steps, each safe to run again: migrate the target to head; check it holds no data (unless
resuming); make room for every embedding length; copy table by table in foreign-key order, in
batches read by primary key and written in one target transaction each, skipping the keys the
target holds already; move the target's id counters past the copied ids; rebuild its vector index
(pgvector's HNSW, the exact index's caches, or the external store); verify counts and checksums.

An interrupted copy is resumed by running it again with ``resume=True``: every committed batch
is found by its keys and skipped, the batch that was cut off was rolled back and is written again.
The source should not be written to meanwhile: the checksums at the end would say so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import sqlite_file
from app.errors import ConflictError, DataLayerError, InvalidInputError, translate_errors
from app.transfer import index
from app.transfer.canonical import table_checksum
from app.transfer.read import batches, count_rows
from app.transfer.report import CopyReport, TableReport
from app.transfer.sameness import same_database
from app.transfer.selfref import copy_self_referencing
from app.transfer.sequences import continue_counters
from app.transfer.tables import TableSpec, table_columns, table_specs, vector_columns
from app.transfer.write import clear_table, write_batch

Progress = Callable[[str, int, int], Any]  # table (or stage), done, total
DEFAULT_BATCH = 500
MAX_BATCH = 10_000


def _check_batch(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InvalidInputError(f"batch_size is an integer, got {batch_size!r}")
    if not 1 <= batch_size <= MAX_BATCH:
        raise InvalidInputError(f"batch_size must be in 1..{MAX_BATCH}, got {batch_size}")
    return batch_size


def _check_arguments(**given: Any) -> None:
    """InvalidInputError naming the first argument of ``copy_database`` of the wrong kind."""
    from app.bootstrap import DataLayer  # the layer imports nothing of the copy's

    for name, value in given.items():
        if name.endswith("_layer"):
            if not isinstance(value, DataLayer):
                raise InvalidInputError(f"{name} must be a DataLayer, got {type(value).__name__}")
        elif name == "on_progress":
            if value is not None and not callable(value):
                raise InvalidInputError(f"on_progress must be callable, got {value!r}")
        elif not isinstance(value, bool):
            raise InvalidInputError(f"{name} must be True or False, got {value!r}")


async def copy_database(
    source_layer: Any,
    target_layer: Any,
    *,
    resume: bool = False,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    verify: bool = True,
    on_progress: Progress | None = None,
) -> CopyReport:
    """Copy every table of ``source_layer``'s database into ``target_layer``'s (see module).

    ``resume``: the target may hold rows of an earlier run (without it a target holding data is
    a ``ConflictError``). ``dry_run``: only count what would be copied. ``on_progress(table,
    done, total)`` after every batch. Raises only ``DataLayerError`` subclasses.
    """
    size = _check_batch(batch_size)
    _check_arguments(
        source_layer=source_layer, target_layer=target_layer, resume=resume, dry_run=dry_run,
        verify=verify, on_progress=on_progress,
    )  # fmt: skip
    if await same_database(source_layer, target_layer):
        raise InvalidInputError(
            "the source and the target are the same database (or one is a clone of the other: "
            "they share its identity)"
        )
    started = time.monotonic()
    specs, report = await _plan(source_layer, target_layer, dry_run)
    if dry_run:
        await _describe_target(target_layer, specs, report)
        return report
    await target_layer.migrate()
    report.migrated = True
    report.vector_index = await index.index_name(target_layer)
    if not resume:
        await _require_empty(target_layer.engine, specs)
    kinds = {spec.name: await index.target_vectors(target_layer, spec) for spec in specs}
    await index.drop_hnsw(target_layer)
    for spec, table in zip(specs, report.tables, strict=True):
        await _copy_table(
            source_layer.engine, target_layer.engine, spec, kinds[spec.name], table, size,
            on_progress,
        )  # fmt: skip
    await continue_counters(target_layer.engine, specs)
    await _rebuild_index(target_layer, report, on_progress)
    if verify:
        await _verify(source_layer.engine, target_layer.engine, specs, report, size)
    report.seconds = time.monotonic() - started
    return report


async def _plan(source: Any, target: Any, dry_run: bool) -> tuple[list[TableSpec], CopyReport]:
    """What the source holds: the tables to copy, their rows and vectors."""
    async with AsyncSession(source.engine) as session:
        specs = await table_specs(session)
    if not specs:
        raise DataLayerError(
            f"{source.settings.safe_database_url} holds no Archon table: nothing to copy"
        )
    tables = []
    for spec in specs:
        table = TableReport(spec.name, await count_rows(source.engine, spec.table))
        table.vectors = await count_vectors(source.engine, spec)
        tables.append(table)
    report = CopyReport(
        source=source.settings.safe_database_url,
        target=target.settings.safe_database_url,
        tables=tables,
        vector_index="",
        dry_run=dry_run,
    )
    return specs, report


async def _rebuild_index(target: Any, report: CopyReport, on_progress: Progress | None) -> None:
    """pgvector's HNSW indexes, the exact index's versions, an external store's records."""
    report.hnsw_indexes = await index.build_hnsw(target)
    await index.renew_versions(target)
    store_progress = None
    if on_progress is not None:
        store_progress = partial(_relabelled, on_progress, "store ")
    report.store_records = await index.rebuild_store(target, store_progress)


def _relabelled(on_progress: Progress, prefix: str, name: str, done: int, total: int) -> None:
    on_progress(prefix + name, done, total)


async def count_vectors(engine: AsyncEngine, spec: TableSpec) -> dict[int, int]:
    """Per embedding column of the table: how many rows hold a vector."""
    if not spec.vectors:
        return {}
    counts = [sa.func.count(sa.literal_column(column)) for column in spec.vectors.values()]
    async with AsyncSession(engine) as session:
        with translate_errors(f"counting the vectors of {spec.name}"):
            row = (await session.execute(sa.select(*counts).select_from(spec.table))).one()
    return {dim: int(n) for dim, n in zip(spec.vectors, row, strict=True) if n}


async def _describe_target(target: Any, specs: list[TableSpec], report: CopyReport) -> None:
    """For a dry run: the target's rows per table (0 where it is not migrated yet)."""
    from app import migrations

    path = sqlite_file(target.settings.database_url)
    if path is not None and not os.path.exists(path):
        report.vector_index = "(after migrating)"  # a dry run creates no database file
        return
    report.migrated = await migrations.current(target.engine) == migrations.head()
    for spec, table in zip(specs, report.tables, strict=True):
        async with AsyncSession(target.engine) as session:
            exists = bool(await table_columns(session, spec.name))
        table.target_rows = await count_rows(target.engine, spec.table) if exists else 0
    report.vector_index = await index.index_name(target) if report.migrated else "(after migrating)"


async def _require_empty(engine: AsyncEngine, specs: list[TableSpec]) -> None:
    """A ConflictError naming the first table of the target that holds data."""
    for spec in specs:
        if spec.setup:
            continue  # what the target's own setup wrote; the source's rows replace it
        held = await count_rows(engine, spec.table)
        if held:
            raise ConflictError(
                f"the target already holds {held} row(s) in {spec.name}: copy into an empty "
                "database, or pass resume (--resume) to continue an interrupted copy"
            )


async def _copy_table(
    source: AsyncEngine,
    target: AsyncEngine,
    spec: TableSpec,
    kinds: dict[int, str],
    report: TableReport,
    size: int,
    on_progress: Progress | None,
) -> None:
    """One table, batch by batch, each batch in one target transaction."""
    if spec.setup:
        await clear_table(target, spec)
    if spec.deferred:
        await copy_self_referencing(source, target, spec, kinds, report, size, on_progress)
        return
    done = 0
    async for rows in batches(source, spec, size):
        written = await write_batch(target, spec, kinds, rows)
        report.copied += written
        report.skipped += len(rows) - written
        done += len(rows)
        if on_progress is not None:
            on_progress(spec.name, done, report.source_rows)
    if on_progress is not None and not done:
        on_progress(spec.name, 0, 0)


async def _verify(
    source: AsyncEngine,
    target: AsyncEngine,
    specs: list[TableSpec],
    report: CopyReport,
    size: int,
) -> None:
    """Counts and canonical checksums of every table, on both sides."""
    for spec, table in zip(specs, report.tables, strict=True):
        table.source_rows, table.source_checksum = await table_checksum(source, spec, size)
        async with AsyncSession(target) as session:
            present = vector_columns(await table_columns(session, spec.name))
        mirror = TableSpec(spec.table, spec.columns, present, spec.deferred)
        table.target_rows, table.target_checksum = await table_checksum(target, mirror, size)
