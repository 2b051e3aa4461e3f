"""A tenant's tables (condition ``TablesReady``): its limits record in Redis, the mirror row in
PostgreSQL when its profile has a database, and its cache usage; after a move, what it left at
the former location is deleted (``tenants.cleanup``).

Each reconcile is level-based: it observes, plans and writes only what differs, so the re-check
(``tenants.recheck``) is also what restores the tables after a Redis that lost its data.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..api.conditions import (MIRROR_CONFLICT, MIRROR_FAILED, MIRROR_SCHEMA_NOT_OWNED, NO_TABLES,
                              REDIS_UNAVAILABLE, TABLES_READY, TABLES_WRITTEN, TABLE_CONFLICT)
from ..postgres.connect import DatabaseUnavailable, target_for_profile
from ..reconcile import Outcome, TenantContext
from ..redis.connect import RedisTarget, with_client
from ..scrub import scrub
from ..secrets import SecretError
from .cleanup import delete_leftovers, stale_note
from .mirror import MirrorRow, MirrorSchemaRefused, sync_mirror
from .places import RecordPlace, RowPlace, record_place
from .records import (DesiredRecord, ObservedRecord, WriteRecord, desired_record, observe_record,
                      plan_record, record_owner, write_record)
from .usage import measure_cache, measurement_due

MIRROR_TABLE = "perf_operator.tenant_limits"


async def reconcile_tenant(ctx: TenantContext) -> Outcome | None:
    """Write the tenant's limits record (and its PostgreSQL mirror when the profile has a
    database), and report the record and where it is in ``status.table`` and the cache use in
    ``status.cache``. When the tenant has moved (another profile, keyPrefix, Redis or
    database), delete what it left at the location the status reports, if this TenantQuota
    owns it."""
    spec = ctx.profile.redis
    table = ctx.status.get("table") or {}
    if spec is None:
        return await _leave_tables(ctx, table)
    desired = desired_record(spec.key_prefix, ctx.limits, _owner(ctx), ctx.created)
    if ctx.senior_claimant is not None:
        return _conflict(ctx, desired, ctx.senior_claimant, {})
    reported_version = int(table.get("version") or 0)
    previous_cache = ctx.status.get("cache")

    async def sync(redis: Redis) -> tuple[ObservedRecord, WriteRecord | None, dict[str, Any]]:
        record = await observe_record(redis, desired.key)
        writes = plan_record(desired, record, reported_version)
        for step in writes:
            record = await write_record(redis, desired, step)
        if previous_cache and not measurement_due(spec.key_prefix, ctx.limits.tenant_id):
            cache = previous_cache
        else:
            usage = await measure_cache(redis, spec.key_prefix, ctx.limits.tenant_id)
            cache = {"keys": usage.keys, "memoryBytes": usage.memory_bytes,
                     "sampled": usage.sampled}
        return record, (writes[0] if writes else None), cache

    try:
        record, write, cache_use = await with_client(
            RedisTarget.from_spec(ctx.namespace, spec.connection), sync)
    except SecretError as err:
        return Outcome(TABLES_READY, False, err.reason, str(err))
    except RedisError as err:
        return Outcome(TABLES_READY, False, REDIS_UNAVAILABLE, scrub(err))
    cache = {"cache": {**cache_use, "quotaBytes": ctx.limits.cache.quota_bytes}}
    if record.owner != desired.owner:
        return _conflict(ctx, desired, record.owner, cache)
    here = RecordPlace(desired.key, spec.resolved_connection)
    reported = record_place(table)
    # A record missing at a new location is a move (reported by TableMoved), not a restore.
    _report_write(ctx, desired, write, record,
                  reported_version if reported is None or reported.spot == here.spot else 0)
    message = f"limits record {desired.key} at version {record.version}"
    problem = None
    row: RowPlace | None = None
    if ctx.profile.database is not None:
        row = RowPlace(ctx.profile_name, ctx.profile.database.resolved_connection)
        problem = await _mirror(ctx, row, desired, record)
        if not problem:
            message += f", mirrored in {MIRROR_TABLE}"
    # The old mirror row goes only once the new one is written: until then it stays reported.
    mirror = (row.status() if row else None) if not problem else table.get("mirror")
    moved, stale = await delete_leftovers(ctx, table, here, row, row_settled=not problem)
    status = {"table": {"version": record.version, "writtenAt": record.written_at,
                        "hash": record.digest, "profile": ctx.profile_name, **here.status(),
                        "mirror": mirror, "staleRecords": stale or None}, **cache}
    if moved:
        ctx.events.normal("TableMoved", f"the tenant's limits are now in {here.describe()} "
                                        f"(profile {ctx.profile_name}); " + "; ".join(moved))
    message += "".join(f"; {stale_note(entry)}" for entry in stale)
    if problem:
        return Outcome(TABLES_READY, False, problem[0], f"{message}; {problem[1]}", status)
    return Outcome(TABLES_READY, True, TABLES_WRITTEN, message, status)



async def _leave_tables(ctx: TenantContext, table: Mapping[str, Any]) -> Outcome | None:
    """The tenant's profile has no Redis section (any more): delete what the status reports.
    None once there is nothing left, so the condition goes away."""
    if not table:
        return None
    moved, stale = await delete_leftovers(ctx, table, None, None, row_settled=True)
    note = f"profile {ctx.profile_name} has no redis section: no limits record"
    if moved:
        ctx.events.normal("TableMoved", f"{note}; " + "; ".join(moved))
    if not stale:
        return Outcome(TABLES_READY, True, NO_TABLES, note, {"table": None})
    status = {"table": {**table, "profile": None, "key": None, "redis": None, "mirror": None,
                        "staleRecords": stale}}
    return Outcome(TABLES_READY, True, NO_TABLES,
                   note + "".join(f"; {stale_note(entry)}" for entry in stale), status)


def _conflict(ctx: TenantContext, desired: DesiredRecord, owner: str | None,
              status: dict[str, Any]) -> Outcome:
    """This TenantQuota is not the oldest claiming the record: it writes nothing."""
    return Outcome(TABLES_READY, False, TABLE_CONFLICT,
                   f"{desired.key} belongs to TenantQuota {owner}, the oldest TenantQuota "
                   f"giving tenantId {ctx.limits.tenant_id!r} under this key prefix on this "
                   f"Redis; this one writes nothing", status)


def _owner(ctx: TenantContext) -> str:
    return record_owner(ctx.namespace, ctx.name)


def _mirror_row(ctx: TenantContext, desired: DesiredRecord, version: int) -> MirrorRow:
    return MirrorRow(ctx.namespace, ctx.profile_name, ctx.limits.tenant_id, desired.owner,
                     version, desired.digest)


async def _mirror(ctx: TenantContext, row: RowPlace, desired: DesiredRecord,
                  record: ObservedRecord) -> tuple[str, str] | None:
    """Sync the mirror row at ``row``; (reason, message) when that failed."""
    try:
        target = await target_for_profile(ctx.namespace, row.profile, row.connection)
        other_owner = await sync_mirror(target, _mirror_row(ctx, desired, record.version),
                                        desired, record)
    except SecretError as err:
        return err.reason, str(err)
    except MirrorSchemaRefused as err:
        return MIRROR_SCHEMA_NOT_OWNED, f"mirror in {MIRROR_TABLE} not written: {err}"
    except (DatabaseUnavailable, psycopg.Error) as err:
        return MIRROR_FAILED, f"mirror in {MIRROR_TABLE} not written: {scrub(err)}"
    if other_owner:
        return MIRROR_CONFLICT, (f"the row of tenant {ctx.limits.tenant_id!r} in {MIRROR_TABLE} "
                                 f"belongs to TenantQuota {other_owner}")
    return None


def _report_write(ctx: TenantContext, desired: DesiredRecord, write: WriteRecord | None,
                  record: ObservedRecord, reported_version: int) -> None:
    """Events for a restored or changed record. The first write of a new tenant has none: its
    status says it, and an Event per tenant would be one more API write each for 10,000."""
    if write is None:
        return
    if write.reason == "Missing" and reported_version:
        ctx.events.warning("TableRestored",
                           f"limits record {desired.key} was missing (Redis lost its data?); "
                           f"restored as version {record.version}")
    elif write.reason == "TakenOver":
        ctx.events.warning("TableTakenOver",
                           f"limits record {desired.key} was written by a younger TenantQuota "
                           f"with the same tenantId; this one is older and owns it (version "
                           f"{record.version})")
    elif write.reason == "Changed":
        ctx.events.normal("TableUpdated",
                          f"limits record {desired.key} updated to version {record.version}")
