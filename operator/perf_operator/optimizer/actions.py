"""The two actions that act at once instead of through an adjustment: cleaning tenants' caches
and pruning idle database connections. Both go through the packages that own those systems
(the Redis key layout, cache measurement and clients of ``redis``/``ratelimit``; the database
pools of ``postgres``), never a second path, and both are bounded per action.

The other actions (scaling floor, load shedding, circuit breaker, automatic indexes) only change
``status.optimization.enforced.adjustments``; the reconcilers that own the HPAs, the tenant
tables, the application config and the indexes read them (``state.adjustments``).
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from kubernetes_asyncio import client
from redis.asyncio import Redis

from .. import API_GROUP, API_VERSION
from ..api import TenantQuotaSpec, effective_limits
from ..kube.client import api_client
from ..postgres.connect import APPLICATION_NAME, one_row, target_for_profile
from ..ratelimit.layout import cache_prefix, glob_escape
from ..redis.connect import RedisTarget, with_client
from ..tenants.usage import measure_cache

#: The cache data types a cleanup empties: the seed's short-lived API responses and search
#: results (3-5 min TTL), cheap to recompute. Sessions, permissions and catalogs stay.
CLEANED_DATA_TYPES = ("apiResponses", "searchResults")
#: Bounds of one cleanup: keys unlinked, tenants walked (each walk is one SCAN over the
#: keyspace: a standalone Redis cannot scan one hash slot), keys per SCAN and per UNLINK.
MAX_KEYS_PER_CLEANUP = 100_000
MAX_TENANTS_PER_CLEANUP = 20
SCAN_COUNT = 2000
UNLINK_BATCH = 500
#: Tenants measured at the same time.
MEASURE_CONCURRENCY = 16
#: Connections one pruning terminates at most.
MAX_PRUNED_CONNECTIONS = 50


# ------------------------------------------------------------------------------ cache cleanup

@dataclass(frozen=True)
class TenantCache:
    """One tenant's cache use against its quota."""

    tenant: str
    memory_bytes: int
    keys: int
    quota_bytes: int
    max_keys: int

    @property
    def over_quota(self) -> bool:
        return self.memory_bytes > self.quota_bytes or self.keys > self.max_keys

    @property
    def excess(self) -> tuple[int, int]:
        """How far over quota: memory first, then keys (the sort key of the cleanup)."""
        return (self.memory_bytes - self.quota_bytes, self.keys - self.max_keys)


def plan_cache_cleanup(tenants: Sequence[TenantCache]) -> list[str]:
    """The tenants whose short-lived caches to empty: over quota, largest excess first, at
    most ``MAX_TENANTS_PER_CLEANUP``. Tenants within their quota are left alone: the pressure
    is not theirs."""
    over = sorted((t for t in tenants if t.over_quota), key=lambda t: t.excess, reverse=True)
    return [t.tenant for t in over[:MAX_TENANTS_PER_CLEANUP]]


def cleaned(key: str, prefix: str, tenant: str) -> bool:
    """Whether ``key`` is one of the tenant's keys a cleanup unlinks:
    ``<prefix>{<tenant>}:cache:<apiResponses|searchResults>:...``."""
    rest = key[len(cache_prefix(prefix, tenant)):]
    return any(rest.startswith(f"{data_type}:") for data_type in CLEANED_DATA_TYPES)


async def unlink_keys(redis: Redis, prefix: str, tenants: Sequence[str],
                      max_keys: int = MAX_KEYS_PER_CLEANUP) -> dict[str, int]:
    """Walk each tenant's cache namespace once (SCAN MATCH ``<prefix>{<tenant>}:cache:*``)
    and UNLINK its short-lived keys in batches, in the tenants' order, stopping after
    ``max_keys``; returns the keys unlinked per tenant. UNLINK frees the memory in the
    background, so a large tenant does not block Redis."""
    removed: dict[str, int] = {}
    budget = max_keys
    for tenant in tenants:
        match = glob_escape(cache_prefix(prefix, tenant)) + "*"
        cursor = 0
        while budget > 0:
            cursor, keys = await redis.scan(cursor, match=match, count=SCAN_COUNT)
            # str: the operator's clients decode replies (redis.connect)
            doomed = [key for key in keys if cleaned(str(key), prefix, tenant)][:budget]
            for start in range(0, len(doomed), UNLINK_BATCH):
                await redis.unlink(*doomed[start:start + UNLINK_BATCH])
            if doomed:
                removed[tenant] = removed.get(tenant, 0) + len(doomed)
                budget -= len(doomed)
            if cursor == 0:
                break
    return removed


async def profile_tenants(namespace: str, profile: str) -> list[TenantQuotaSpec]:
    """The TenantQuotas of the profile's namespace that reference it (invalid ones skipped)."""
    api = client.CustomObjectsApi(await api_client())
    listing = await api.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                      "tenantquotas")
    tenants = []
    for item in listing.get("items", []):
        try:
            tenant = TenantQuotaSpec.model_validate(item.get("spec") or {})
        except pydantic.ValidationError:
            continue
        if tenant.profile_ref.name == profile:
            tenants.append(tenant)
    return tenants


async def clean_caches(namespace: str, profile: str, spec: Any) -> str:
    """Memory pressure: measure every tenant of the profile (bounded per tenant), then unlink
    the short-lived caches of the over-quota ones, largest first."""
    tenants = await profile_tenants(namespace, profile)
    prefix = spec.redis.key_prefix
    limits = [effective_limits(spec, tenant) for tenant in tenants]

    async def work(redis: Redis) -> tuple[list[TenantCache], dict[str, int]]:
        gate = asyncio.Semaphore(MEASURE_CONCURRENCY)

        async def measure(limit: Any) -> TenantCache:
            async with gate:
                usage = await measure_cache(redis, prefix, limit.tenant_id)
            return TenantCache(limit.tenant_id, usage.memory_bytes, usage.keys,
                               limit.cache.quota_bytes, limit.cache.max_keys)

        measured = list(await asyncio.gather(*(measure(limit) for limit in limits)))
        return measured, await unlink_keys(redis, prefix, plan_cache_cleanup(measured))

    measured, removed = await with_client(RedisTarget.from_spec(namespace,
                                                                spec.redis.connection), work)
    over = sum(t.over_quota for t in measured)
    if not removed:
        return f"no keys to unlink ({over} of {len(measured)} tenants over quota)"
    return (f"unlinked {sum(removed.values())} keys of {len(removed)} over-quota tenants ("
            + ", ".join(f"{t}: {n}" for t, n in removed.items()) + f"); {len(measured)} "
            f"tenants measured")


# ------------------------------------------------------------------------ connection pruning

_PRUNE = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (
  SELECT pid FROM pg_stat_activity
  WHERE datname = current_database() AND usename = %(role)s AND state = 'idle'
    AND backend_type = 'client backend' AND pid <> pg_backend_pid()
    AND application_name IS DISTINCT FROM %(operator)s
    AND state_change < now() - make_interval(secs => %(idle)s)
  ORDER BY state_change
  LIMIT %(limit)s) AS idle
"""


async def prune_connections(connection: Any, namespace: str, profile: str, role: str,
                            idle_seconds: int) -> str:
    """Terminate connections of the application's ``role`` to the profile's database that have
    been idle for ``idle_seconds``, oldest first and at most ``MAX_PRUNED_CONNECTIONS``. The
    operator's own sessions and other roles' are never touched; a pool in the application
    reopens what it needs."""
    target = await target_for_profile(namespace, profile, connection)
    async with target.connection() as conn:
        cur = await conn.execute(_PRUNE, {"role": role, "idle": idle_seconds,
                                          "operator": APPLICATION_NAME,
                                          "limit": MAX_PRUNED_CONNECTIONS})
        (terminated,) = await one_row(cur)
    return (f"terminated {terminated} connections of role {role} idle for more than "
            f"{idle_seconds}s")
