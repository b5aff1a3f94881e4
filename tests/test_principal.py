"""Row-level security: a Unit of Work runs as a ``Principal`` (role + JWT claims) on PostgreSQL.

The tests make their own roles and policies (not Archon's migration): a table whose policy lets a
role see the rows whose ``owner`` is the ``sub`` claim, read with
``current_setting('request.jwt.claims', true)`` as Supabase's policies read it. The login role of
the test servers is a superuser, which row-level security never restricts, so every row a
principal does not see proves the role and the claims were in force.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import sqlalchemy as sa

from app.domain import Project
from app.errors import DataLayerError, InvalidInputError, UnsupportedFeatureError
from app.security import Principal

pytestmark = pytest.mark.pooler
POSTGRES = ("pgvector", "postgres", "pgbouncer")
READER, EDITOR = "archon_rls_reader", "archon_rls_editor"
USERS = ("alice", "bob", "carol")
OWN_ROWS = "owner = current_setting('request.jwt.claims', true)::json->>'sub'"
WHO = sa.text(
    "SELECT current_user, current_setting('request.jwt.claims', true), "
    "current_setting('request.jwt.claim.role', true)"
)


async def _make_roles(sql) -> None:
    for role in (READER, EDITOR):
        # Roles belong to the server, which other test sessions share: made once, races ignored.
        await sql.execute(
            f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
        # SET ROLE needs membership (a superuser has it already: nothing to grant, nor to race).
        await sql.execute(
            f"DO $$ BEGIN IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN "
            f"GRANT {role} TO CURRENT_USER; END IF; END $$"
        )


@pytest.fixture
async def notes(sql):
    """``rls_notes``: two rows per user; readers may select their own, editors insert too."""
    await _make_roles(sql)
    await sql.execute("DROP TABLE IF EXISTS rls_notes")
    await sql.execute("CREATE TABLE rls_notes (id int PRIMARY KEY, owner text NOT NULL)")
    await sql.execute("ALTER TABLE rls_notes ENABLE ROW LEVEL SECURITY")
    await sql.execute(
        f"CREATE POLICY own ON rls_notes TO {READER}, {EDITOR} USING ({OWN_ROWS}) "
        f"WITH CHECK ({OWN_ROWS})"
    )
    await sql.execute(f"GRANT SELECT ON rls_notes TO {READER}, {EDITOR}")
    await sql.execute(f"GRANT INSERT ON rls_notes TO {EDITOR}")
    for n, user in enumerate(USERS * 2):
        await sql.execute("INSERT INTO rls_notes VALUES (:id, :owner)", id=n, owner=user)
    yield
    await sql.execute("DROP TABLE rls_notes")


def _owned(user: str) -> list[int]:
    return sorted(n for n, owner in enumerate(USERS * 2) if owner == user)


async def _who(uow) -> tuple[str, dict | None, str | None]:
    user, claims, role = (await uow.session.execute(WHO)).one()
    return user, json.loads(claims) if claims else None, role or None


async def _visible(uow) -> list[int]:
    return sorted((await uow.session.scalars(sa.text("SELECT id FROM rls_notes"))).all())


@pytest.mark.backends(*POSTGRES)
async def test_a_unit_of_work_runs_as_its_principal(layer, sql, notes) -> None:
    login = await sql.scalar("SELECT current_user")
    principal = Principal(EDITOR, {"sub": "alice", "email": "a@example.com"})
    async with layer.uow(principal=principal) as uow:
        assert await _who(uow) == (
            EDITOR,
            {"role": EDITOR, "sub": "alice", "email": "a@example.com"},
            EDITOR,
        )
        assert await _visible(uow) == _owned("alice")
        await uow.session.execute(sa.text("INSERT INTO rls_notes VALUES (100, 'alice')"))
        await uow.commit()
        # The Unit of Work goes on in a new transaction: still the principal.
        assert (await _who(uow))[0] == EDITOR
        with pytest.raises(DataLayerError, match="row-level security"):
            async with uow.savepoint():
                await uow.session.execute(sa.text("INSERT INTO rls_notes VALUES (101, 'bob')"))
        await uow.rollback()
        assert await _visible(uow) == [*_owned("alice"), 100]
    async with layer.uow(read_only=True, principal=Principal(READER, {"sub": "bob"})) as uow:
        assert (await _who(uow))[0] == READER
        assert await _visible(uow) == _owned("bob")
    async with layer.uow() as uow:  # no principal: the login role, no claims, every row
        assert await _who(uow) == (login, None, None)
        assert len(await _visible(uow)) == len(USERS) * 2 + 1
    assert await sql.scalar("SELECT owner FROM rls_notes WHERE id = 100") == "alice"


@pytest.mark.backends(*POSTGRES)
async def test_the_role_applies_to_what_the_role_may_not_do(layer, notes) -> None:
    async with layer.uow(principal=Principal(READER, {"sub": "alice"})) as uow:
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            await uow.session.execute(sa.text("INSERT INTO rls_notes VALUES (100, 'alice')"))
        await uow.rollback()
        with pytest.raises(DataLayerError, match="permission denied"):
            await uow.projects.count()  # no grant on Archon's tables to this role


@pytest.mark.backends(*POSTGRES)
async def test_a_role_that_does_not_exist_is_refused_by_the_server(layer) -> None:
    async with layer.uow(principal=Principal("archon_rls_nobody")) as uow:
        with pytest.raises(DataLayerError, match="archon_rls_nobody"):
            await uow.projects.count()


@pytest.mark.backends(*POSTGRES)
async def test_run_in_transaction_as_a_principal(layer, notes) -> None:
    async def work(uow) -> list[int]:
        await uow.session.execute(sa.text("INSERT INTO rls_notes VALUES (200, 'carol')"))
        return await _visible(uow)

    seen = await layer.run_in_transaction(work, principal=Principal(EDITOR, {"sub": "carol"}))
    assert seen == [*_owned("carol"), 200]


@pytest.mark.backends(*POSTGRES)
async def test_repositories_read_through_the_policies(layer, sql) -> None:
    """The repositories' own statements (the driver path included) run as the principal."""
    await _make_roles(sql)
    async with layer.uow() as uow:
        for user in USERS:
            await uow.projects.add(Project(title=f"{user}'s", description=user))
        await uow.commit()
    await sql.execute("ALTER TABLE archon_projects ENABLE ROW LEVEL SECURITY")
    await sql.execute(
        f"CREATE POLICY rls_test ON archon_projects TO {READER} USING "
        "(description = current_setting('request.jwt.claims', true)::json->>'sub')"
    )
    await sql.execute(f"GRANT SELECT ON archon_projects TO {READER}")
    try:
        for user in USERS:
            async with layer.uow(read_only=True, principal=Principal(READER, {"sub": user})) as uow:
                assert [p.title for p in await uow.projects.list()] == [f"{user}'s"]
                assert await uow.projects.count() == 1
        async with layer.uow(read_only=True) as uow:
            assert await uow.projects.count() == len(USERS)
    finally:
        await sql.execute("DROP POLICY rls_test ON archon_projects")
        await sql.execute("ALTER TABLE archon_projects DISABLE ROW LEVEL SECURITY")
        await sql.execute(f"REVOKE SELECT ON archon_projects FROM {READER}")


UNITS = 50


@pytest.mark.backends(*POSTGRES)
async def test_interleaved_principals_never_leak_on_a_shared_pool(make_layer, sql, notes) -> None:
    """50 Units of Work of different principals (and none) on a pool of 2 connections: each
    sees its own role, claims and rows in every transaction, and never another's."""
    layer = await make_layer(database_pool_size=2)
    login = await sql.scalar("SELECT current_user")
    rng = random.Random(7)
    seen: list[int] = []

    async def unit(n: int) -> None:
        user = USERS[n % len(USERS)]
        principal = None if n % 5 == 0 else Principal((READER, EDITOR)[n % 2], {"sub": user})
        expected_user = login if principal is None else principal.role
        expected_rows = list(range(len(USERS) * 2)) if principal is None else _owned(user)
        async with layer.uow(read_only=n % 3 == 0, principal=principal) as uow:
            for step in range(3):
                await asyncio.sleep(rng.random() / 1000)  # let the others in between
                who, claims, _ = await _who(uow)
                assert who == expected_user, (n, step)
                assert (claims or {}).get("sub") == (user if principal else None), (n, step)
                assert await _visible(uow) == expected_rows, (n, step)
                if not uow.read_only:
                    # Commit, then roll back: the next transaction begins as the principal
                    # again, and what a commit keeps (session settings) must not be the role.
                    await (uow.commit() if step != 1 else uow.rollback())
        seen.append(n)

    await asyncio.gather(*(unit(n) for n in range(UNITS)))
    assert sorted(seen) == list(range(UNITS))
    # The pool's connections went back as the login role with no claims.
    for _ in range(4):
        async with layer.uow() as uow:
            assert await _who(uow) == (login, None, None)


@pytest.mark.backends("sqlite", "mariadb")
async def test_no_row_level_security_without_postgresql(layer, backend) -> None:
    with pytest.raises(UnsupportedFeatureError, match="row-level security"):
        layer.uow(principal=Principal("authenticated", {"sub": "alice"}))
    name = "SQLite" if backend.name == "sqlite" else "MySQL/MariaDB"
    with pytest.raises(UnsupportedFeatureError) as raised:
        layer.uow(read_only=True, principal=Principal("anon"))
    assert name in str(raised.value)


@pytest.mark.parametrize(
    "role",
    ["", "none", "NONE", "default", "public", "pg_read_all_data", "a b", 'x"; DROP', "a" * 64, 7],
)
def test_role_names_that_cannot_be_a_principal(role) -> None:
    with pytest.raises(InvalidInputError, match="Principal.role"):
        Principal(role)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": float("nan")},
        {"sub": object()},
        {"sub": "\ud800"},
        {"sub": "a\x00b"},
        {"role": "anon"},
        ["sub"],
    ],
)
def test_claims_that_cannot_be_sent(claims) -> None:
    with pytest.raises(InvalidInputError, match="Principal.claims"):
        Principal("authenticated", claims)


def test_a_principal_is_a_frozen_value() -> None:
    claims = {"sub": "alice", "app": {"tier": 2}}
    principal = Principal("authenticated", claims)
    claims["sub"] = "mallory"
    assert principal.claims["sub"] == "alice"
    assert json.loads(principal.claims_json) == {
        "role": "authenticated",
        "sub": "alice",
        "app": {"tier": 2},
    }
    assert principal == Principal("authenticated", {"app": {"tier": 2}, "sub": "alice"})
    assert len({principal, Principal("authenticated", {"sub": "alice", "app": {"tier": 2}})}) == 1
    assert Principal("anon").claims == {"role": "anon"}
    with pytest.raises(TypeError):
        principal.claims["sub"] = "mallory"  # type: ignore[index]
