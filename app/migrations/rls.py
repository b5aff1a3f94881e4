"""Row-level security as Archon sets it up on Supabase, for migrations to apply table by table.

Supabase's REST API serves every table of ``public`` to anyone holding the project's anon key,
as the role ``anon`` (``authenticated`` with a user's token, ``service_role`` with the service
key); only row-level security stands between those roles and the rows. Archon's setup enables it
on every table with these policies (names as Archon spells them):

- ``private``: service role full access only (the layer's own tables);
- ``authenticated``: service role full access, authenticated users read and write
  (settings, projects, tasks, project sources);
- ``authenticated_read``: service role full access, authenticated users read
  (document versions, prompts, migrations);
- ``public_read``: anyone reads, nobody but the service role writes (sources, crawled pages,
  code examples);
- ``public_read_authenticated_write``: anyone reads, authenticated users and the service role
  write (page metadata, as Archon's upgrade 011 grants it, without that upgrade's policy that
  let every role write).

On a plain PostgreSQL server the migration creates what Supabase provides when it is missing:
NOLOGIN roles ``anon``, ``authenticated`` and ``service_role`` (the last with BYPASSRLS, as on
Supabase, when the migrating user is a superuser; otherwise a full-access policy stands in) and
``auth.role()`` reading the request's JWT claims as Supabase's does; each object it creates
carries the comment :data:`MARK`, so the downgrade removes exactly those. The table owner, the
layer's own connection, bypasses row-level security (it is never FORCEd).

Every function here emits DDL through ``alembic.op`` and does nothing on other dialects.
"""

from __future__ import annotations

from alembic import op
from app.errors import InvalidInputError

MARK = "archon-db: Supabase stand-in"
ROLES = ("anon", "authenticated", "service_role")
_SERVICE = "service"
_SERVICE_ROLE = "service_role"  # only where service_role cannot bypass row-level security
_AUTH_ALL = "authenticated_all"
_AUTH_READ = "authenticated_read"
_PUBLIC_READ = "public_read"
POLICY_KINDS: dict[str, tuple[str, ...]] = {
    "private": (_SERVICE,),
    "authenticated": (_SERVICE, _AUTH_ALL),
    "authenticated_read": (_SERVICE, _AUTH_READ),
    "public_read": (_PUBLIC_READ,),
    "public_read_authenticated_write": (_SERVICE, _AUTH_ALL, _PUBLIC_READ),
}
# Archon names the settings table's policies without the table's name.
_SHORT_NAMES = {"archon_settings"}

SUPABASE_AUTH_ROLE = """
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$
"""


def _postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def query_scalar(sql: str, **params: object) -> object:
    """The first value of a query run on the migration's connection."""
    import sqlalchemy as sa

    return op.get_bind().execute(sa.text(sql), params).scalar()


def _policy_name(table: str, policy: str) -> str:
    suffix = "" if table in _SHORT_NAMES else f" to {table}"
    names = {
        _SERVICE: "Allow service role full access",
        _SERVICE_ROLE: "Allow the service_role role full access",
        _AUTH_ALL: "Allow authenticated users to read and update",
        _AUTH_READ: "Allow authenticated users to read",
        _PUBLIC_READ: "Allow public read access",
    }
    # PostgreSQL keeps the first 63 bytes of a longer name, as it did with Archon's own.
    return (names[policy] + suffix)[:63]


def _policy_sql(table: str, policy: str, name: str) -> str:
    body = {
        _SERVICE: "FOR ALL USING (auth.role() = 'service_role')",
        _SERVICE_ROLE: "FOR ALL TO service_role USING (true) WITH CHECK (true)",
        _AUTH_ALL: "FOR ALL TO authenticated USING (true)",
        _AUTH_READ: "FOR SELECT TO authenticated USING (true)",
        _PUBLIC_READ: "FOR SELECT TO public USING (true)",
    }[policy]
    return f'CREATE POLICY "{name}" ON {table} {body}'


def _role_exists(role: str) -> bool:
    return bool(query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = :r", r=role))


def stand_ins() -> list[str]:
    """The Supabase roles this server has only because a migration created them."""
    rows = op.get_bind().exec_driver_sql(
        "SELECT r.rolname FROM pg_roles r JOIN pg_shdescription d ON d.objoid = r.oid "
        "AND d.classoid = 'pg_authid'::regclass "
        f"WHERE r.rolname IN {ROLES} AND d.description = '{MARK}' ORDER BY r.rolname"
    )
    return [str(row[0]) for row in rows]


def ensure_supabase_roles() -> None:
    """Create the Supabase roles and ``auth.role()`` where missing (plain PostgreSQL)."""
    if not _postgresql():
        return
    can_create = query_scalar(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
    )
    superuser = query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    for role in ROLES if can_create else ():
        extra = " BYPASSRLS" if role == "service_role" and superuser else ""
        # Roles belong to the whole server: another database may create it at the same moment.
        op.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {role} NOLOGIN{extra}; COMMENT ON ROLE {role} IS '{MARK}'; END IF; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    if query_scalar("SELECT to_regnamespace('auth') IS NULL"):
        op.execute("CREATE SCHEMA auth")
        op.execute(f"COMMENT ON SCHEMA auth IS '{MARK}'")
        op.execute(SUPABASE_AUTH_ROLE)
    elif query_scalar("SELECT to_regprocedure('auth.role()') IS NULL"):
        op.execute(SUPABASE_AUTH_ROLE)
        op.execute(f"COMMENT ON FUNCTION auth.role() IS '{MARK}'")
    roles = stand_ins()
    if roles:
        # What Supabase grants by default, so that only row-level security decides.
        op.execute(f"GRANT USAGE ON SCHEMA public, auth TO {', '.join(roles)}")
        op.execute(f"GRANT EXECUTE ON FUNCTION auth.role() TO {', '.join(roles)}")


def remove_supabase_roles() -> None:
    """Undo :func:`ensure_supabase_roles`: the stand-in ``auth`` and roles nothing else uses."""
    if not _postgresql():
        return
    roles = stand_ins()
    if roles:
        op.execute(f"REVOKE USAGE ON SCHEMA public FROM {', '.join(roles)}")
    if (
        query_scalar(
            "SELECT d.description FROM pg_description d WHERE d.objoid = to_regnamespace('auth') "
            "AND d.classoid = 'pg_namespace'::regclass"
        )
        == MARK
    ):
        op.execute("DROP SCHEMA auth CASCADE")
    elif query_scalar("SELECT obj_description(to_regprocedure('auth.role()'), 'pg_proc')") == MARK:
        op.execute("DROP FUNCTION auth.role()")
    for role in roles:
        # Still granted something in another database of the server: it stays for that one.
        op.execute(
            f"DO $$ BEGIN DROP ROLE IF EXISTS {role}; "
            "EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$"
        )


def enable_archon_rls(table: str, policy_kind: str) -> None:
    """Enable row-level security on ``table`` with the policies of ``policy_kind``.

    Policies already present under Archon's names are left as they are (a database set up by
    Archon's scripts keeps its own); the ones created here carry :data:`MARK`. A policy for a
    role the server lacks is skipped (nothing is granted to a missing role); a ``service_role``
    without BYPASSRLS gets a full-access policy of its own. Where the Supabase
    roles are stand-ins, they get Supabase's default table grants, so that denials come from the
    policies. Call :func:`ensure_supabase_roles` first; undo with :func:`disable_archon_rls`.
    """
    if policy_kind not in POLICY_KINDS:
        raise InvalidInputError(
            f"policy_kind must be one of {', '.join(POLICY_KINDS)}, not {policy_kind!r}"
        )
    if not _postgresql():
        return
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    has_auth = bool(query_scalar("SELECT to_regprocedure('auth.role()') IS NOT NULL"))
    policies = POLICY_KINDS[policy_kind]
    if query_scalar("SELECT NOT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'"):
        # Created by a user who could not grant BYPASSRLS: a policy gives what Supabase's has.
        policies = (*policies, _SERVICE_ROLE)
    for policy in policies:
        if policy == _SERVICE and not has_auth:
            continue
        if policy in (_AUTH_ALL, _AUTH_READ) and not _role_exists("authenticated"):
            continue
        name = _policy_name(table, policy)
        if query_scalar(
            "SELECT count(*) FROM pg_policy WHERE polrelid = to_regclass(:t) AND polname = :n",
            t=table,
            n=name,
        ):
            continue
        op.execute(_policy_sql(table, policy, name))
        op.execute(f"COMMENT ON POLICY \"{name}\" ON {table} IS '{MARK}'")
    roles = stand_ins()
    if roles:
        op.execute(f"GRANT ALL ON TABLE {table} TO {', '.join(roles)}")
        for sequence in _sequences(table):
            op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {', '.join(roles)}")


def disable_archon_rls(table: str) -> None:
    """Undo :func:`enable_archon_rls`: drop the marked policies, revoke the stand-ins' grants,
    and disable row-level security where no policy remains (Archon's own keep it on)."""
    if not _postgresql() or query_scalar("SELECT to_regclass(:t) IS NULL", t=table):
        return
    rows = op.get_bind().exec_driver_sql(
        "SELECT p.polname FROM pg_policy p JOIN pg_description d ON d.objoid = p.oid "
        f"AND d.classoid = 'pg_policy'::regclass WHERE p.polrelid = '{table}'::regclass "
        f"AND d.description = '{MARK}'"
    )
    for (name,) in list(rows):
        op.execute(f'DROP POLICY "{name}" ON {table}')
    roles = stand_ins()
    if roles:
        op.execute(f"REVOKE ALL ON TABLE {table} FROM {', '.join(roles)}")
        for sequence in _sequences(table):
            op.execute(f"REVOKE ALL ON SEQUENCE {sequence} FROM {', '.join(roles)}")
    if not query_scalar("SELECT count(*) FROM pg_policy WHERE polrelid = to_regclass(:t)", t=table):
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def _sequences(table: str) -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
        f"WHERE s.relkind = 'S' AND d.refobjid = '{table}'::regclass AND d.deptype IN ('a', 'i')"
    )
    return [str(row[0]) for row in rows]
