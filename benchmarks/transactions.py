"""Transactions per second: ``--clients`` concurrent clients, each running ``--transactions``
times "insert a task, touch its project" (one project per client, so clients do not queue on
one row lock). The layer: a Unit of Work per transaction, ``tasks.add`` + ``projects.update``;
raw: an asyncpg pool of ``--clients`` connections, ``INSERT`` + ``UPDATE`` in
``conn.transaction()`` on a connection acquired per transaction."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from benchmarks.context import Bench, layer_for, raw_side
from benchmarks.measure import median, timed
from benchmarks.report import Result
from benchmarks.servers import Target


async def layer_client(layer: Any, project_id: uuid.UUID, client: int, count: int) -> None:
    from app.domain import Task

    for n in range(count):
        async with layer.uow() as uow:
            await uow.tasks.add(Task(project_id=project_id, title=f"task {client}.{n}"))
            await uow.projects.update(project_id, {})
            await uow.commit()


async def raw_client(raw: Any, project_id: uuid.UUID, client: int, count: int) -> None:
    # Each transaction takes a connection from the pool and gives it back, as a UoW does.
    for n in range(count):
        await raw.task_transaction(project_id, f"task {client}.{n}")


async def run_transactions(bench: Bench, target: Target) -> Result:
    options = bench.options
    clients, each = options.clients, options.transactions
    total = clients * each
    result = Result(target.backend, f"tx: task + touch, {clients} clients", "tx/s", True, 0.80)
    admin = await raw_side(target, pool_size=clients).open()
    try:
        async with layer_for(target) as layer:
            # Warm up: the layer's pool grows to one connection per client before the clock.
            projects = await admin.create_projects(clients)
            await asyncio.gather(*(layer_client(layer, p, i, 1) for i, p in enumerate(projects)))
            for repeat in range(options.repeat):
                for side in ("layer", "raw") if repeat % 2 == 0 else ("raw", "layer"):
                    await admin.clear_tasks()
                    projects = await admin.create_projects(clients)
                    if side == "layer":
                        work = [layer_client(layer, p, i, each) for i, p in enumerate(projects)]
                    else:
                        work = [raw_client(admin, p, i, each) for i, p in enumerate(projects)]
                    run = await timed(lambda work=work: asyncio.gather(*work))  # type: ignore[misc]
                    tasks = await admin.count_tasks()
                    if tasks != total:
                        result.problems.append(f"{side}: {tasks} tasks written, not {total}")
                    values = result.layer if side == "layer" else result.raw
                    values.append(total / run.seconds)
                    if side == "layer":
                        result.layer_peak = max(result.layer_peak, run.peak)
                    else:
                        result.raw_peak = max(result.raw_peak, run.peak)
                    bench.say(f"{target.backend} tx {side}: {total / run.seconds:,.0f} tx/s")
            if options.profile is not None:
                await admin.clear_tasks()
                projects = await admin.create_projects(clients)
                async with bench.profiler.profile(f"{target.backend}-tx"):
                    await asyncio.gather(
                        *(layer_client(layer, p, i, each) for i, p in enumerate(projects))
                    )
    finally:
        await admin.clear_tasks()
        await admin.close()
    return result


async def run_audit_overhead(bench: Bench, target: Target) -> Result:
    """The tx scenario with ``ENABLE_AUDIT_LOG`` on ("layer") against the same layer with it
    off ("raw"): what recording who wrote what costs a small transaction (goal: <= 10%)."""
    options = bench.options
    clients, each = options.clients, options.transactions
    total = clients * each
    result = Result(target.backend, f"tx audited / not, {clients} clients", "tx/s", True, 0.90)
    result.notes.append("tx-audit: 'raw' is the same layer with ENABLE_AUDIT_LOG off")
    cpu: dict[str, list[float]] = {"audited": [], "plain": []}  # client CPU ms per transaction
    admin = await raw_side(target, pool_size=clients).open()
    try:
        async with layer_for(target) as plain, layer_for(target, enable_audit_log=True) as audited:
            projects = await admin.create_projects(clients)
            for layer in (plain, audited):  # warm up: each pool grows to one connection a client
                await asyncio.gather(
                    *(layer_client(layer, p, i, 1) for i, p in enumerate(projects))
                )
            for repeat in range(options.repeat):
                for side in ("audited", "plain") if repeat % 2 == 0 else ("plain", "audited"):
                    layer = audited if side == "audited" else plain
                    await admin.clear_tasks()
                    await _clear_audit(audited)
                    projects = await admin.create_projects(clients)
                    work = [layer_client(layer, p, i, each) for i, p in enumerate(projects)]
                    started = time.process_time()
                    run = await timed(lambda work=work: asyncio.gather(*work))  # type: ignore[misc]
                    cpu[side].append((time.process_time() - started) / total * 1000)
                    entries = await _clear_audit(audited)
                    expected = 2 * total if side == "audited" else 0  # task insert + project update
                    if entries != expected:
                        result.problems.append(f"{side}: {entries} audit rows, not {expected}")
                    (result.layer if side == "audited" else result.raw).append(total / run.seconds)
                    bench.say(f"{target.backend} tx {side}: {total / run.seconds:,.0f} tx/s")
    finally:
        await admin.clear_tasks()
        await admin.close()
    if cpu["plain"] and cpu["audited"]:
        on, off = median(cpu["audited"]), median(cpu["plain"])
        result.notes.append(
            f"client CPU per transaction (robust to other processes' load): audited {on:.3f} ms, "
            f"plain {off:.3f} ms ({(on / off - 1) * 100:+.1f}%)"
        )
    return result


async def _clear_audit(layer: Any) -> int:
    """Empty the audit log; how many entries it held."""
    import sqlalchemy as sa

    async with layer.engine.begin() as conn:
        found = (await conn.execute(sa.text("SELECT count(*) FROM archon_audit_log"))).scalar()
        await conn.execute(sa.text("DELETE FROM archon_audit_log"))
    return int(found or 0)
