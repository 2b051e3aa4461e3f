"""The orphan sweep: records and mirror rows of TenantQuotas that no longer exist.

TenantQuotas have no finalizer: a finalizer costs every new tenant a write and a watch event
(a third of the API server's work per tenant at 10,000), and it cannot promise what it is for
anyway, since a tenant deleted while the operator is stopped (or whose finalizer was removed by
hand) leaves its tables behind. A deleted tenant's tables are removed on its DELETED watch
event (``tenants.reconciler.delete_quota``, from what its last status says); whatever that
missed is found by each profile's periodic re-check (``tenants.recheck``), which looks at every
limits record under the profile's key prefix and every mirror row filed under the profile and
removes those whose owner (``<namespace>/<name>``) is a TenantQuota of the profile's namespace
that the registry no longer holds, or an earlier TenantQuota of that name (the record's
``ownerSince`` is not the creationTimestamp of the one that exists now). Nothing else is
touched: a record or row without an owner, owned by a TenantQuota of another namespace (its own
profiles sweep it) or by one that exists, stays; the delete itself re-checks the owner
atomically (``records.delete_record``, ``mirror.delete_owned_row``).

The registry is complete before the first re-check (one LIST at startup, then the watch), so
a tenant deleted while the operator was down is swept within one re-check after it starts.
A profile being deleted sweeps its location one last time (:func:`sweep_deleted_profile`, one
of its cleanups): a tenant deleted while no leader ran (a leader's SIGKILL, seen in the short
chaos run) whose profile is deleted before the next leader's first re-check is not left behind.
What the sweep cannot see: a tenant whose profile was deleted before it and that is then deleted
while no operator leads (no profile, no re-check of its location); a deletion the operator sees
removes it from the location its status names.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import psycopg
from redis.asyncio import Redis

from ..handlers.escrow import REGISTRY_SEEDED
from ..postgres.connect import DatabaseGone, DatabaseTarget, target_for_profile
from ..ratelimit.layout import OWNER_FIELD, OWNER_SINCE_FIELD, glob_escape, record_key
from ..reconcile import ProfileContext
from ..redis.connect import RedisTarget, with_client
from .mirror import MirrorRow, delete_owned_row, observe_mirrors
from .records import delete_record
from .registry import TENANTS_BY_PROFILE, TenantEntry
from .usage import forget

#: Keys a SCAN asks for per round trip.
SCAN_COUNT = 1000

#: Finds a TenantQuota the operator knows of: (namespace, name) -> entry, or None.
Lookup = Callable[[str, str], TenantEntry | None]

logger = logging.getLogger(__name__)


def orphaned(owner: str | None, since: str | None, namespace: str, lookup: Lookup) -> bool:
    """Whether a record or row owned by ``owner`` (``ownerSince`` ``since``; None for a mirror
    row, which does not keep it) belongs to a TenantQuota of ``namespace`` that no longer
    exists (see the module docstring)."""
    if not owner:
        return False
    owner_namespace, _, name = owner.partition("/")
    if owner_namespace != namespace or not name:
        return False
    entry = lookup(owner_namespace, name)
    if entry is None:
        return True
    return since is not None and entry.created is not None and since != entry.created


def tenant_of_key(prefix: str, key: str) -> str | None:
    """The tenant ID in a limits record key ``<prefix>{<tenant>}:limits``; None for any other
    key the pattern matched."""
    head, tail = prefix + "{", "}:limits"
    if not (key.startswith(head) and key.endswith(tail)) or len(key) <= len(head) + len(tail):
        return None
    tenant = key[len(head):-len(tail)]
    return tenant if record_key(prefix, tenant) == key and "{" not in tenant else None


async def sweep_records(redis: Redis, namespace: str, prefix: str, live_keys: set[str],
                        lookup: Lookup) -> list[str]:
    """Delete the limits records under ``prefix`` that belong to TenantQuotas of ``namespace``
    that no longer exist; ``live_keys`` (the records the profile's tenants desire) are not even
    read. Returns the keys deleted."""
    candidates: list[tuple[str, str]] = []
    async for key in redis.scan_iter(match=glob_escape(prefix) + "{*}:limits",
                                     count=SCAN_COUNT):
        if key not in live_keys and (tenant := tenant_of_key(prefix, key)) is not None:
            candidates.append((key, tenant))
    if not candidates:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key, _ in candidates:
            pipe.hmget(key, [OWNER_FIELD, OWNER_SINCE_FIELD])
        replies = await pipe.execute()
    deleted = []
    for (key, tenant), (owner, since) in zip(candidates, replies):
        if orphaned(owner, since, namespace, lookup) and await delete_record(redis, key, owner):
            forget(prefix, tenant)
            logger.info("deleted the limits record %s of TenantQuota %s, which no longer "
                        "exists", key, owner, extra={"reason": "OrphanDeleted"})
            deleted.append(key)
    return deleted


async def sweep_rows(target: DatabaseTarget, namespace: str, rows: Iterable[MirrorRow],
                     lookup: Lookup) -> Sequence[MirrorRow]:
    """Delete the mirror rows among ``rows`` (a profile's, as the re-check read them) that
    belong to TenantQuotas of ``namespace`` that no longer exist. Returns the rows deleted."""
    deleted = []
    for row in rows:
        if not orphaned(row.owner, None, namespace, lookup):
            continue
        found = await delete_owned_row(target, row.profile_namespace, row.profile_name,
                                       row.tenant_id, row.owner)
        if found == row.owner:
            logger.info("deleted the mirror row of tenant %s (profile %s/%s) of TenantQuota "
                        "%s, which no longer exists", row.tenant_id, row.profile_namespace,
                        row.profile_name, row.owner, extra={"reason": "OrphanDeleted"})
            deleted.append(row)
    return deleted


async def sweep_deleted_profile(ctx: ProfileContext) -> None:
    """The profile is being deleted (or its deferred cleanup replayed): sweep its key prefix
    and its mirror rows once more, since no re-check will. Its tenants that still exist keep
    their tables (their own deletion removes them, from their status). Waits for the tenant
    registry (a replay may start before it is seeded: every owner would look gone). Raises
    when a server cannot be reached, so that the sweep is deferred with the other cleanups."""
    await REGISTRY_SEEDED.wait()
    redis_spec = ctx.spec.redis
    if redis_spec is not None:
        async def sweep(redis: Redis) -> None:
            await sweep_records(redis, ctx.namespace, redis_spec.key_prefix, set(),
                                TENANTS_BY_PROFILE.get)
        await with_client(RedisTarget.from_spec(ctx.namespace,
                                                redis_spec.resolved_connection), sweep)
    database = ctx.spec.database
    if database is None:
        return
    try:
        target = await target_for_profile(ctx.namespace, ctx.name,
                                          database.resolved_connection)
        rows = await observe_mirrors(target, ctx.namespace, ctx.name)
    except DatabaseGone:
        return  # the rows went with the database
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return  # no tenant was ever mirrored there
    await sweep_rows(target, ctx.namespace, rows.values(), TENANTS_BY_PROFILE.get)
