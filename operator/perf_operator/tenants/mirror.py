"""The PostgreSQL mirror of the tenants' limits records: ``perf_operator.tenant_limits``, one
row per (profile namespace, profile, tenant), created by the operator's own migrations
(``migrations/``, linked from ``sql/migrations`` in the repository) and written only when the
Redis record's version or digest moved on.

Only rows the TenantQuota owns (column ``owner``) are updated or deleted.

The schema is used only when the operator's login owns it (:func:`check_schema_owner`, before
every statement): a ``perf_operator`` schema someone else created first could hold a view or a
trigger that runs their code with the operator's rights. Such a schema is refused and the
tenant's status says so (``MirrorSchemaNotOwned``).
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any

import psycopg

from ..postgres.connect import DatabaseTarget
from .records import DesiredRecord, ObservedRecord

MIGRATIONS_LOCK = "perf_operator.migrations"
_migrated: set[tuple[str, int, str]] = set()


class MirrorSchemaRefused(psycopg.Error):
    """The schema perf_operator exists and belongs to another role."""


async def check_schema_owner(conn: psycopg.AsyncConnection) -> None:
    """Raise MirrorSchemaRefused when schema perf_operator exists and the operator's login
    (``session_user``) does not own it."""
    cursor = await conn.execute(
        "SELECT pg_get_userbyid(n.nspowner), session_user::text FROM pg_namespace n "
        "WHERE n.nspname = 'perf_operator' AND n.nspowner <> "
        "(SELECT oid FROM pg_roles WHERE rolname = session_user)")
    found = await cursor.fetchone()
    if found is not None:
        owner, login = found
        raise MirrorSchemaRefused(
            f"schema perf_operator belongs to role {owner}, not to the operator's login "
            f"{login}: the operator does not use a schema someone else controls (drop it, or "
            f"ALTER SCHEMA perf_operator OWNER TO {login} after checking what it holds)")


def migrations() -> list[Traversable]:
    """The operator's own migrations, in order. They ship inside the package (an image
    installs only the wheel); ``sql/migrations`` in the repository links to them."""
    folder = importlib.resources.files(__package__).joinpath("migrations")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


@dataclass(frozen=True)
class MirrorRow:
    profile_namespace: str
    profile_name: str
    tenant_id: str
    owner: str
    version: int
    digest: str


@dataclass(frozen=True)
class UpsertMirror:
    row: MirrorRow
    document: str
    written_at: str


def plan_mirror(desired: MirrorRow, observed: MirrorRow | None, document: str,
                written_at: str) -> list[UpsertMirror]:
    """An upsert of the whole row, unless it already mirrors this version and digest or
    belongs to another TenantQuota (a conflict the caller reports)."""
    if observed is not None and observed.owner != desired.owner:
        return []
    if observed == desired:
        return []
    return [UpsertMirror(desired, document, written_at)]


async def migrate(target: DatabaseTarget) -> None:
    """Apply the migrations this database has not seen, once per process and database, under
    an advisory lock so that two operator processes never run one twice."""
    if target.key.database in _migrated:
        async with target.connection() as conn:
            await check_schema_owner(conn)
        return
    async with target.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (MIGRATIONS_LOCK,))
        await conn.execute("CREATE SCHEMA IF NOT EXISTS perf_operator")
        await check_schema_owner(conn)
        await conn.execute("CREATE TABLE IF NOT EXISTS perf_operator.schema_migrations ("
                           "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        cursor = await conn.execute("SELECT name FROM perf_operator.schema_migrations")
        applied = {name for (name,) in await cursor.fetchall()}
        for migration in migrations():
            if migration.name not in applied:
                await conn.execute(migration.read_text())
                await conn.execute("INSERT INTO perf_operator.schema_migrations (name) "
                                   "VALUES (%s)", (migration.name,))
    _migrated.add(target.key.database)


async def observe_mirror(target: DatabaseTarget, row: MirrorRow) -> MirrorRow | None:
    async with target.connection() as conn:
        cursor = await conn.execute(
            "SELECT owner, version, digest FROM perf_operator.tenant_limits "
            "WHERE profile_namespace = %s AND profile_name = %s AND tenant_id = %s",
            (row.profile_namespace, row.profile_name, row.tenant_id))
        found = await cursor.fetchone()
    if found is None:
        return None
    owner, version, digest = found
    return MirrorRow(row.profile_namespace, row.profile_name, row.tenant_id, owner, version,
                     digest)


async def upsert_mirror(target: DatabaseTarget, step: UpsertMirror) -> None:
    row = step.row
    async with target.connection() as conn:
        await conn.execute(
            "INSERT INTO perf_operator.tenant_limits AS t (profile_namespace, profile_name, "
            "tenant_id, owner, version, digest, limits, written_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::timestamptz) "
            "ON CONFLICT (profile_namespace, profile_name, tenant_id) DO UPDATE SET "
            "version = excluded.version, digest = excluded.digest, limits = excluded.limits, "
            "written_at = excluded.written_at WHERE t.owner = excluded.owner",
            (row.profile_namespace, row.profile_name, row.tenant_id, row.owner, row.version,
             row.digest, step.document, step.written_at))


async def delete_profile_mirrors(target: DatabaseTarget, profile_namespace: str,
                                 profile_name: str) -> None:
    """Delete every mirror row filed under a profile (its namespace is gone, and with it every
    TenantQuota that could own one)."""
    try:
        async with target.connection() as conn:
            await conn.execute(
                "DELETE FROM perf_operator.tenant_limits WHERE profile_namespace = %s AND "
                "profile_name = %s", (profile_namespace, profile_name))
    except psycopg.errors.UndefinedTable:
        return  # no tenant was ever mirrored in this database


async def delete_owned_row(target: DatabaseTarget, profile_namespace: str, profile_name: str,
                           tenant_id: str, owner: str) -> str | None:
    """Delete the mirror row of ``tenant_id`` filed under the profile if ``owner`` owns it; the
    row's owner before (None: no row; another owner's row is left alone)."""
    key = (profile_namespace, profile_name, tenant_id)
    try:
        async with target.connection() as conn:
            await check_schema_owner(conn)
            cursor = await conn.execute(
                "WITH found AS (SELECT owner FROM perf_operator.tenant_limits WHERE "
                "profile_namespace = %s AND profile_name = %s AND tenant_id = %s), "
                "gone AS (DELETE FROM perf_operator.tenant_limits WHERE profile_namespace = %s "
                "AND profile_name = %s AND tenant_id = %s AND owner = %s) "
                "SELECT owner FROM found", (*key, *key, owner))
            found = await cursor.fetchone()
    except psycopg.errors.UndefinedTable:
        return None  # never mirrored there
    return found[0] if found else None


async def sync_mirror(target: DatabaseTarget, row: MirrorRow, desired: DesiredRecord,
                      record: ObservedRecord) -> str | None:
    """Make the mirror row match the Redis record ``record``. Returns the owner of a row that
    belongs to another TenantQuota (left alone), else None."""
    await migrate(target)
    try:
        observed = await observe_mirror(target, row)
    except psycopg.errors.UndefinedTable:
        _migrated.discard(target.key.database)  # dropped behind our back: migrate again
        raise
    for step in plan_mirror(row, observed, desired.document, record.written_at or ""):
        await upsert_mirror(target, step)
    return observed.owner if observed and observed.owner != row.owner else None


async def observe_mirrors(target: DatabaseTarget, profile_namespace: str, profile_name: str
                          ) -> dict[str, MirrorRow]:
    """Every mirror row of one profile, by tenant id, in one query (the periodic re-check)."""
    async with target.connection() as conn:
        await check_schema_owner(conn)
        cursor = await conn.execute(
            "SELECT tenant_id, owner, version, digest FROM perf_operator.tenant_limits "
            "WHERE profile_namespace = %s AND profile_name = %s",
            (profile_namespace, profile_name))
        rows = await cursor.fetchall()
    return {tenant: MirrorRow(profile_namespace, profile_name, tenant, owner, version, digest)
            for tenant, owner, version, digest in rows}
