"""Redis: the profile's server settings (condition ``RedisReady``) and each tenant's limits
record, its PostgreSQL mirror and its cache usage (condition ``TablesReady``).

Each reconcile is level-based: it observes, plans and writes only what differs, so the resync
timer is also what restores the tables after a Redis that lost its data and corrects settings
changed behind the operator's back.
"""
from __future__ import annotations

from typing import Any

import psycopg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..postgres.connect import DatabaseUnavailable
from ..reconcile import Outcome, ProfileContext, TenantContext
from ..scrub import scrub
from ..secrets import SecretError
from .connect import RedisTarget, with_client
from .mirror import MirrorRow, delete_mirror, mirror_target, sync_mirror
from .settings import DRIFTED, REJECTED, apply_settings
from .tables import (DesiredRecord, ObservedRecord, WriteRecord, delete_record, desired_record,
                     observe_record, plan_record, write_record)
from .usage import forget, measure_cache, measurement_due

REDIS_READY = "RedisReady"
TABLES_READY = "TablesReady"
MIRROR_TABLE = "perf_operator.tenant_limits"
#: The RedisReady reason once the settings are in Redis's config file too: a profile whose
#: last pass ended otherwise gets one CONFIG REWRITE even when no value changed.
SETTINGS_PERSISTED = "SettingsPersisted"


async def reconcile_profile(ctx: ProfileContext) -> Outcome | None:
    """Apply ``spec.redis.settings`` and report each parameter in ``status.redis.settings``."""
    spec = ctx.spec.redis
    if spec is None:
        return None
    previous = (ctx.status.get("redis") or {}).get("settings") or []
    persisted_before = _condition_reason(ctx.status, REDIS_READY) == SETTINGS_PERSISTED
    try:
        result = await with_client(
            RedisTarget.from_spec(ctx.namespace, spec.connection),
            lambda redis: apply_settings(redis, dict(spec.settings), previous,
                                         persist=spec.persist_settings,
                                         persisted_before=persisted_before, events=ctx.events))
    except SecretError as err:
        return Outcome(REDIS_READY, False, err.reason, str(err))
    except RedisError as err:
        return Outcome(REDIS_READY, False, "RedisUnavailable", scrub(err))
    status = {"redis": {"settings": result.statuses}}
    if result.rewrite_error:
        return Outcome(REDIS_READY, False, "ConfigRewriteFailed", result.rewrite_error, status)
    rejected = [s["message"] for s in result.statuses if s["state"] == REJECTED]
    if rejected:
        return Outcome(REDIS_READY, False, "SettingsRejected", "; ".join(rejected), status)
    drifted = [s["message"] for s in result.statuses if s["state"] == DRIFTED]
    if drifted:
        return Outcome(REDIS_READY, False, "SettingsDrifted", "; ".join(drifted), status)
    if spec.persist_settings:
        return Outcome(REDIS_READY, True, SETTINGS_PERSISTED,
                       f"{len(result.statuses)} Redis settings applied and persisted with "
                       f"CONFIG REWRITE", status)
    return Outcome(REDIS_READY, True, "SettingsApplied",
                   f"{len(result.statuses)} Redis settings applied", status)


async def reconcile_tenant(ctx: TenantContext) -> Outcome | None:
    """Write the tenant's limits record (and its PostgreSQL mirror when the profile has a
    database), and report the record in ``status.table`` and the cache use in
    ``status.cache``."""
    spec = ctx.profile.redis
    if spec is None:
        return None
    desired = desired_record(spec.key_prefix, ctx.limits, _owner(ctx))
    reported_version = int((ctx.status.get("table") or {}).get("version") or 0)
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
        return Outcome(TABLES_READY, False, "RedisUnavailable", scrub(err))
    cache = {"cache": {**cache_use, "quotaBytes": ctx.limits.cache.quota_bytes}}
    if record.owner != desired.owner:
        return Outcome(TABLES_READY, False, "TableConflict",
                       f"{desired.key} holds the table of TenantQuota {record.owner}: two "
                       f"TenantQuotas give tenantId {ctx.limits.tenant_id!r} under the same "
                       f"key prefix",
                       cache)
    _report_write(ctx, desired, write, record, reported_version)
    status = {"table": {"version": record.version, "writtenAt": record.written_at,
                        "hash": record.digest}, **cache}
    message = f"limits record {desired.key} at version {record.version}"
    if ctx.profile.database is not None:
        problem = await _mirror(ctx, desired, record)
        if problem:
            return Outcome(TABLES_READY, False, problem[0], f"{message}; {problem[1]}", status)
        message += f", mirrored in {MIRROR_TABLE}"
    return Outcome(TABLES_READY, True, "TablesWritten", message, status)


async def remove_tenant(ctx: TenantContext) -> None:
    """Delete the tenant's record and mirror row, if this TenantQuota owns them. The limiter's
    buckets expire on their own; the application's cache keys are the application's."""
    spec = ctx.profile.redis
    if spec is None:
        return
    desired = desired_record(spec.key_prefix, ctx.limits, _owner(ctx))
    await with_client(RedisTarget.from_spec(ctx.namespace, spec.connection),
                      lambda redis: delete_record(redis, desired.key, desired.owner))
    forget(spec.key_prefix, ctx.limits.tenant_id)
    if ctx.profile.database is not None:
        target = await mirror_target(ctx.namespace, ctx.profile_name,
                                     ctx.profile.database.connection)
        try:
            await delete_mirror(target, _mirror_row(ctx, desired, 0))
        except psycopg.errors.UndefinedTable:
            pass  # never mirrored: nothing to delete


def _owner(ctx: TenantContext) -> str:
    return f"{ctx.namespace}/{ctx.name}"


def _mirror_row(ctx: TenantContext, desired: DesiredRecord, version: int) -> MirrorRow:
    return MirrorRow(ctx.namespace, ctx.profile_name, ctx.limits.tenant_id, desired.owner,
                     version, desired.digest)


async def _mirror(ctx: TenantContext, desired: DesiredRecord, record: ObservedRecord
                  ) -> tuple[str, str] | None:
    """Sync the mirror row; (reason, message) when that failed."""
    try:
        target = await mirror_target(ctx.namespace, ctx.profile_name,
                                     ctx.profile.database.connection)
        other_owner = await sync_mirror(target, _mirror_row(ctx, desired, record.version),
                                        desired, record)
    except SecretError as err:
        return err.reason, str(err)
    except (DatabaseUnavailable, psycopg.Error) as err:
        return "MirrorFailed", f"mirror in {MIRROR_TABLE} not written: {scrub(err)}"
    if other_owner:
        return "MirrorConflict", (f"the row of tenant {ctx.limits.tenant_id!r} in {MIRROR_TABLE} "
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
    elif write.reason == "Changed":
        ctx.events.normal("TableUpdated",
                          f"limits record {desired.key} updated to version {record.version}")


def _condition_reason(status: dict[str, Any], type_: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_:
            return condition.get("reason")
    return None
