"""TenantQuota handlers: registration and delegation only (the work is in ``tenants``)."""
from __future__ import annotations

from typing import Any

import kopf

from ..config import CONFIG
from ..reconcile import EventRecorder
from ..tenants.orphans import TENANT_TABLES, watch_location
from ..tenants.recheck import reconcile_tenants, resync_tenants
from ..tenants.reconciler import delete_quota, quota_event, replay_deletion, tenant_profile
from ..tenants.registry import TENANTS_BY_PROFILE, TenantEntry
from . import deferred
from .profile_registry import forget_profile, profile_index
from .resources import PROFILES, TENANTS
from .tenant_summary import summary_follows

#: The profiles, so a tenant resolves its defaults without an API call.
profile_specs = profile_index(tenant_profile)


@profile_index
def profile_uids(namespace: str, name: str, meta: dict, **_: Any) -> dict:
    """The uid of each profile by (namespace, name): a new profile from a deleted one."""
    return {(namespace, name): meta.get("uid")}


@kopf.on.event(*TENANTS)  # type: ignore[arg-type]
async def tenant_event(*, event: dict, body: kopf.Body, patch: kopf.Patch, namespace: str,
                       name: str, logger, **_) -> None:
    """Every TenantQuota event: kopf's low-level handler is all tenants use (see
    tenants.reconciler.quota_event), and a deleted tenant's tables are removed when it is gone:
    TenantQuotas have no finalizer, what a missed DELETED event leaves behind is the profiles'
    orphan sweep's (tenants.orphans). The tenant's profile's summary follows (one handler per
    event: kopf's invocation of each handler costs as much as a tenant's own work)."""
    summary_follows(namespace, body)
    if event.get("type") == "DELETED":
        TENANTS_BY_PROFILE.forget(namespace, name)
        await delete_quota(namespace, TenantEntry.from_body(body)[1], profile_specs, logger)
    else:
        await quota_event(namespace, body, profile_specs, patch, logger)


@kopf.timer(  # type: ignore[arg-type]
    *PROFILES, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def tenants_resync(*, namespace: str, name: str, **_) -> None:
    """Re-check every tenant of this profile in one batch: a timer per profile, not per
    tenant (see tenants.recheck)."""
    await resync_tenants(namespace, name, profile_specs)


@kopf.on.update(*PROFILES, field="spec")  # type: ignore[arg-type]
async def tenants_follow_profile(*, namespace: str, name: str, **_) -> None:
    """A changed profile changes its tenants' effective limits: re-check them now rather than
    at the next resync."""
    await resync_tenants(namespace, name, profile_specs)


@kopf.on.event(*PROFILES)  # type: ignore[arg-type]
async def tenants_lose_profile(*, event: dict, namespace: str, name: str, **_) -> None:
    """A deleted profile's tenants report ProfileNotFound now rather than at their next change
    (their tables stay until they are deleted: see tenant_event)."""
    if event.get("type") != "DELETED":
        return
    forget_profile(namespace, name)  # whichever watching handler kopf runs first
    await reconcile_tenants(namespace, TENANTS_BY_PROFILE.of_profile(namespace, name),
                            profile_specs)


@deferred.replayer("TenantQuota")
async def replay_tenant_cleanup(entry: dict[str, Any], events: EventRecorder) -> None:
    await replay_deletion(entry, events, deferred.logger)


@deferred.replayer(TENANT_TABLES)
async def watch_tenant_tables(entry: dict[str, Any], events: EventRecorder) -> None:
    """A deleted profile's location that its tenants still name (see tenants.orphans)."""
    found = profile_uids.get((entry["namespace"], entry["name"]))
    await watch_location(entry, found[0] if found else None)
