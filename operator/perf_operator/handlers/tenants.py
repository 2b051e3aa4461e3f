"""TenantQuota handlers: registration and delegation only (the work is in ``tenants``)."""
from __future__ import annotations

from typing import Any

import kopf

from ..config import CONFIG
from ..reconcile import EventRecorder
from ..tenants.recheck import reconcile_tenants, resync_tenants
from ..tenants.reconciler import delete_quota, reconcile_quota, replay_deletion, tenant_profile
from ..tenants.registry import TENANTS_BY_PROFILE, TenantEntry
from . import deferred
from .profile_registry import forget_profile, profile_index
from .resources import PROFILES, TENANTS

#: The profiles, so a tenant resolves its defaults without an API call.
profile_specs = profile_index(tenant_profile)


@kopf.on.event(*TENANTS)
async def track_tenant(*, event: dict, body: kopf.Body, namespace: str, name: str, logger,
                       **_) -> None:
    """Keep the registry of tenants by profile (see tenants.registry: not a kopf index), and
    remove a deleted tenant's tables when it is gone: TenantQuotas have no finalizer (one write
    and one watch event less per tenant), what a missed DELETED event leaves behind is the
    profiles' orphan sweep's (tenants.orphans)."""
    if event.get("type") == "DELETED":
        TENANTS_BY_PROFILE.forget(namespace, name)
        await delete_quota(namespace, TenantEntry.from_body(body)[1], profile_specs, logger)
    else:
        TENANTS_BY_PROFILE.put(namespace, body)


@kopf.on.resume(*TENANTS)
@kopf.on.create(*TENANTS)
@kopf.on.update(*TENANTS, field="spec")
async def tenant_changed(*, body: kopf.Body, patch: kopf.Patch, namespace: str, logger,
                         **_) -> None:
    await reconcile_quota(namespace, TenantEntry.from_body(body)[1], profile_specs, patch,
                          logger)


@kopf.timer(*PROFILES, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def tenants_resync(*, namespace: str, name: str, **_) -> None:
    """Re-check every tenant of this profile in one batch: a timer per profile, not per
    tenant (see tenants.recheck)."""
    await resync_tenants(namespace, name, profile_specs)


@kopf.on.update(*PROFILES, field="spec")
async def tenants_follow_profile(*, namespace: str, name: str, **_) -> None:
    """A changed profile changes its tenants' effective limits: re-check them now rather than
    at the next resync."""
    await resync_tenants(namespace, name, profile_specs)


@kopf.on.event(*PROFILES)
async def tenants_lose_profile(*, event: dict, namespace: str, name: str, **_) -> None:
    """A deleted profile's tenants report ProfileNotFound now rather than at their next change
    (their tables stay until they are deleted: see track_tenant)."""
    if event.get("type") != "DELETED":
        return
    forget_profile(namespace, name)  # whichever watching handler kopf runs first
    await reconcile_tenants(namespace, TENANTS_BY_PROFILE.of_profile(namespace, name),
                            profile_specs)


@deferred.replayer("TenantQuota")
async def replay_tenant_cleanup(entry: dict[str, Any], events: EventRecorder) -> None:
    await replay_deletion(entry, events, deferred.logger)
