"""The example FastAPI service, end to end over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from examples.fastapi_app import create_app

pytestmark = pytest.mark.backends("sqlite", "postgres", "pgvector")


@pytest.fixture
async def client(layer) -> AsyncIterator[httpx.AsyncClient]:
    api = create_app(Settings(database_url=layer.settings.database_url), migrate=False)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def _tasks_in_db(layer, project_id: str) -> list[tuple[str, int, bool]]:
    async with layer.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT title, task_order, archived FROM archon_tasks "
                "WHERE project_id = :p ORDER BY task_order, title"
            ),
            {
                "p": project_id
                if layer.dialect_name == "postgresql"
                else project_id.replace("-", "")
            },
        )
        return [(r[0], r[1], bool(r[2])) for r in rows]


async def test_create_list_move_archive(client: httpx.AsyncClient, layer) -> None:
    created = await client.post("/projects", json={"title": "Search"})
    assert created.status_code == 201
    project_id = created.json()["id"]
    for title in ("a", "b", "c"):
        response = await client.post(f"/projects/{project_id}/tasks", json={"title": title})
        assert response.status_code == 201, response.text
    tasks = (await client.get(f"/projects/{project_id}/tasks")).json()
    assert [t["title"] for t in tasks] == ["a", "b", "c"]

    c_id = tasks[2]["id"]
    moved = await client.post(f"/tasks/{c_id}/move", json={"position": 0})
    assert moved.status_code == 200 and moved.json()["task_order"] == 0
    assert [t[0] for t in await _tasks_in_db(layer, project_id)] == ["c", "a", "b"]

    archived = await client.post(f"/tasks/{tasks[0]['id']}/archive")
    assert archived.json() == {"archived": 1}
    visible = (await client.get(f"/projects/{project_id}/tasks")).json()
    assert [t["title"] for t in visible] == ["c", "b"]
    everything = (await client.get(f"/projects/{project_id}/tasks?include_archived=true")).json()
    assert len(everything) == 3


async def test_errors_map_to_statuses_and_roll_back(client: httpx.AsyncClient, layer) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    response = await client.post(f"/projects/{missing}/tasks", json={"title": "x"})
    assert response.status_code == 404
    assert response.json()["error"] == "NotFoundError"

    project_id = (await client.post("/projects", json={"title": "P"})).json()["id"]
    bad = await client.post(f"/projects/{project_id}/tasks", json={"title": "x", "assignee": ""})
    assert bad.status_code in (409, 422)
    assert await _tasks_in_db(layer, project_id) == []


async def test_audited_writes_name_the_requests_actor(layer) -> None:
    settings = Settings(database_url=layer.settings.database_url, enable_audit_log=True)
    api = create_app(settings, migrate=False)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            made = await http.post(
                "/projects", json={"title": "A"}, headers={"X-Archon-Actor": "ann"}
            )
            anonymous = await http.post("/projects", json={"title": "B"})
            too_long = await http.post(
                "/projects", json={"title": "C"}, headers={"X-Archon-Actor": "x" * 300}
            )
    assert made.status_code == anonymous.status_code == 201
    assert too_long.status_code == 422 and "actor" in too_long.json()["detail"]
    async with layer.engine.connect() as conn:
        rows = await conn.execute(text("SELECT actor, entity_id FROM archon_audit_log ORDER BY id"))
        assert [tuple(r) for r in rows] == [
            ("ann", made.json()["id"]),
            ("system", anonymous.json()["id"]),
        ]
