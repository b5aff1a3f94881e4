"""Contract tests of ``uow.migrations`` and the agent work order repositories, on every backend,
checked with plain SQL."""

from __future__ import annotations

from typing import Any

import pytest

from app.archon_defaults import archon_migration_keys
from app.bootstrap import DataLayer
from app.domain import ConfiguredRepository
from app.errors import ConflictError, InvalidInputError, NotFoundError
from app.testing import (
    AgentWorkOrderFactory,
    AgentWorkOrderStepFactory,
    ConfiguredRepositoryFactory,
    save,
)
from tests.support import Sql
from tests.test_entity_repositories import statements

# The whole suite also runs behind pgbouncer in transaction mode (supabase mode): see conftest.
pytestmark = pytest.mark.pooler


async def seed(layer: DataLayer, *items: Any) -> list[Any]:
    async with layer.uow() as uow:
        saved = await save(uow, *items)
        await uow.commit()
    return saved


class TestMigrationRecords:
    async def test_a_migrated_database_has_nothing_pending(self, layer: DataLayer) -> None:
        archon = archon_migration_keys()
        async with layer.uow(read_only=True) as uow:
            assert await uow.migrations.pending(archon) == []
            later = [*archon, ("0.1.0", "012_next_upgrade"), ("0.2.0", "001_first")]
            assert await uow.migrations.pending(later) == later[-2:]
            applied = await uow.migrations.applied()
        assert {(r.version, r.migration_name) for r in applied} == set(archon)
        stamps = [r.applied_at for r in applied]
        assert stamps == sorted(stamps, reverse=True)

    async def test_record_is_idempotent(self, layer: DataLayer, sql: Sql) -> None:
        async with layer.uow() as uow:
            assert await uow.migrations.record("0.1.0", "012_next_upgrade", "a" * 32) is True
            assert await uow.migrations.record("0.1.0", "012_next_upgrade", "b" * 32) is False
            assert await uow.migrations.record(*archon_migration_keys()[0]) is False
            await uow.commit()
        rows = await sql.all(
            "SELECT checksum FROM archon_migrations WHERE migration_name = '012_next_upgrade'"
        )
        assert [r[0] for r in rows] == ["a" * 32]  # the first record is kept as it was
        assert await sql.scalar("SELECT COUNT(*) FROM archon_migrations") == 12
        async with layer.uow(read_only=True) as uow:
            assert await uow.migrations.pending([("0.1.0", "012_next_upgrade")]) == []

    async def test_bad_pairs_are_refused_before_any_sql(self, layer: DataLayer) -> None:
        async with layer.uow() as uow:
            with statements(layer) as sent:
                for bad in (("0.1.0",), ("0.1.0", ""), ["0.1.0", "x"], ("0.1.0", 7)):
                    with pytest.raises(InvalidInputError, match="migration_name"):
                        await uow.migrations.pending([bad])
                with pytest.raises(InvalidInputError, match="migration_name"):
                    await uow.migrations.record("0.1.0", "")
            assert sent == []
            assert await uow.migrations.pending([]) == []


class TestConfiguredRepositories:
    async def test_add_get_by_url_and_defaults(self, layer: DataLayer, sql: Sql) -> None:
        url = "https://github.com/acme/service"
        (repo,) = await seed(layer, ConfiguredRepository(repository_url=url, owner="acme"))
        async with layer.uow(read_only=True) as uow:
            found = await uow.configured_repositories.get_by_url(url)
            assert found is not None and found.id == repo.id
            assert found.default_commands == [
                "create-branch",
                "planning",
                "execute",
                "commit",
                "create-pr",
            ]
            assert await uow.configured_repositories.get_by_url("https://github.com/x/y") is None
        row = await sql.all(
            "SELECT owner, default_sandbox_type FROM archon_configured_repositories"
        )
        assert [tuple(r) for r in row] == [("acme", "git_worktree")]

    async def test_rules_hold_before_any_sql(self, layer: DataLayer) -> None:
        (repo,) = await seed(layer, ConfiguredRepositoryFactory.build())
        async with layer.uow() as uow:
            repos = uow.configured_repositories
            with statements(layer) as sent:
                bad_url = ConfiguredRepositoryFactory.build(repository_url="https://gitlab.com/a/b")
                with pytest.raises(InvalidInputError, match="repository_url"):
                    await repos.add(bad_url)
                with pytest.raises(InvalidInputError, match="default_sandbox_type"):
                    await repos.update(repo.id, {"default_sandbox_type": "e2b"})
                with pytest.raises(InvalidInputError, match="repository_url"):
                    await repos.upsert_many(
                        [ConfiguredRepositoryFactory.build(repository_url="github.com/a/b")],
                        on=["repository_url"],
                    )
                with pytest.raises(InvalidInputError, match="default_sandbox_type"):
                    await repos.update_where({"id": repo.id}, {"default_sandbox_type": "e2b"})
                with pytest.raises(InvalidInputError, match="repository_url"):
                    await repos.update_all({"repository_url": "https://gitlab.com/a/b"})
                with pytest.raises(InvalidInputError, match="repository_url"):
                    await repos.upsert_many(
                        [ConfiguredRepositoryFactory.build(repository_url="github.com/a/b")],
                        on=["repository_url"],
                        returning=True,
                    )
            assert sent == []

    async def test_a_url_is_configured_once(self, layer: DataLayer) -> None:
        (repo,) = await seed(layer, ConfiguredRepositoryFactory.build())
        twin = ConfiguredRepositoryFactory.build(repository_url=repo.repository_url)
        async with layer.uow() as uow:
            with pytest.raises(ConflictError):
                await uow.configured_repositories.add(twin)


class TestWorkOrders:
    async def test_list_by_status_newest_first(self, layer: DataLayer) -> None:
        orders = AgentWorkOrderFactory.build_batch(4, status="running")
        orders[1].status = "failed"
        await seed(layer, *orders)
        async with layer.uow(read_only=True) as uow:
            running = await uow.work_orders.list_by_status("running")
            everything = await uow.work_orders.list_by_status()
            with pytest.raises(InvalidInputError, match="status"):
                await uow.work_orders.list_by_status("paused")
        assert {o.agent_work_order_id for o in running} == {
            orders[i].agent_work_order_id for i in (0, 2, 3)
        }
        stamps = [o.created_at for o in everything]
        assert len(everything) == 4 and stamps == sorted(stamps, reverse=True)

    async def test_set_status_merges_metadata(self, layer: DataLayer, sql: Sql) -> None:
        (order,) = await seed(layer, AgentWorkOrderFactory.build(status="pending"))
        async with layer.uow() as uow:
            updated = await uow.work_orders.set_status(
                order.agent_work_order_id, "failed", error_message="branch exists"
            )
            await uow.work_orders.set_status(order.agent_work_order_id, "running")
            await uow.commit()
        assert updated.metadata_ == {**order.metadata_, "error_message": "branch exists"}
        async with layer.uow(read_only=True) as uow:
            stored = await uow.work_orders.get(order.agent_work_order_id)
        assert stored is not None and stored.status == "running"
        assert stored.metadata_ == {**order.metadata_, "error_message": "branch exists"}
        status = await sql.scalar("SELECT status FROM archon_agent_work_orders")
        assert status == "running"

    async def test_set_status_refuses_bad_input_and_missing_rows(self, layer: DataLayer) -> None:
        (order,) = await seed(layer, AgentWorkOrderFactory.build(status="pending"))
        async with layer.uow() as uow:
            with statements(layer) as sent:
                with pytest.raises(InvalidInputError, match="status"):
                    await uow.work_orders.set_status(order.agent_work_order_id, "paused")
                with pytest.raises(InvalidInputError, match="status"):
                    await uow.work_orders.add(AgentWorkOrderFactory.build(status="done"))
            assert sent == []
            with pytest.raises(NotFoundError):
                await uow.work_orders.set_status("wo-missing", "running", note="x")
            with pytest.raises(NotFoundError):
                await uow.work_orders.set_status("wo-missing", "running")


class TestWorkOrderSteps:
    async def test_replace_history_numbers_steps_and_history_reads_them(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        (order,) = await seed(layer, AgentWorkOrderFactory.build())
        wo = order.agent_work_order_id
        async with layer.uow() as uow:
            steps = AgentWorkOrderStepFactory.build_batch(3, work_order=order, step_order=9)
            await uow.work_order_steps.replace_history(wo, steps)
            await uow.commit()
        async with layer.uow(read_only=True) as uow:
            history = await uow.work_order_steps.history(wo)
        assert [s.step_order for s in history] == [0, 1, 2]
        assert [s.id for s in history] == [s.id for s in steps]

        again = AgentWorkOrderStepFactory.build_batch(2, agent_work_order_id="elsewhere")
        async with layer.uow() as uow:
            await uow.work_order_steps.replace_history(wo, again)
            await uow.commit()
        rows = await sql.all(
            "SELECT agent_work_order_id, step_order FROM archon_agent_work_order_steps "
            "ORDER BY step_order"
        )
        assert [tuple(r) for r in rows] == [(wo, 0), (wo, 1)]

    async def test_a_bad_step_leaves_the_history_as_it_was(
        self, layer: DataLayer, sql: Sql
    ) -> None:
        (order,) = await seed(layer, AgentWorkOrderFactory.build())
        await seed(layer, *AgentWorkOrderStepFactory.build_batch(2, work_order=order))
        bad = AgentWorkOrderStepFactory.build_batch(2, work_order=order)
        bad[1].agent_name = None  # type: ignore[assignment]
        async with layer.uow() as uow:
            with pytest.raises(InvalidInputError, match="agent_name"):
                await uow.work_order_steps.replace_history(order.agent_work_order_id, bad)
            await uow.commit()
        assert await sql.scalar("SELECT COUNT(*) FROM archon_agent_work_order_steps") == 2

    async def test_steps_go_with_their_work_order(self, layer: DataLayer, sql: Sql) -> None:
        kept, gone = await seed(layer, *AgentWorkOrderFactory.build_batch(2))
        await seed(
            layer,
            *AgentWorkOrderStepFactory.build_batch(2, work_order=kept),
            *AgentWorkOrderStepFactory.build_batch(3, work_order=gone),
        )
        async with layer.uow() as uow:
            assert await uow.work_orders.delete(gone.agent_work_order_id)
            await uow.commit()
        rows = await sql.all(
            "SELECT DISTINCT agent_work_order_id FROM archon_agent_work_order_steps"
        )
        assert [r[0] for r in rows] == [kept.agent_work_order_id]
        with pytest.raises(ConflictError):
            await seed(layer, AgentWorkOrderStepFactory.build(agent_work_order_id="wo-none"))
