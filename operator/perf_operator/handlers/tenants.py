"""TenantQuota handlers: registration and delegation only."""
from __future__ import annotations

from typing import Any

import kopf
import pydantic

from ..api import PerformanceProfileSpec, TenantQuotaSpec, effective_limits
from ..api.optimization import Adjustments
from ..config import CONFIG
from ..reconcile import EventRecorder, Outcome, TenantContext
from ..redis import reconcile_tenant as redis_tables
from ..redis import remove_tenant as remove_redis_tables
from ..validation import describe_validation_error
from .reconciliation import Cleanup, Part, run_cleanups, run_parts, write_status
from .resources import PROFILES, TENANTS

#: The target systems a tenant configures, each with the condition type it reports.
TENANT_PARTS: tuple[tuple[str, Part], ...] = (
    ("TablesReady", redis_tables),
)

#: What deleting a tenant removes (its tables), each ``async fn(ctx) -> None``.
TENANT_CLEANUPS: tuple[Cleanup, ...] = (
    remove_redis_tables,
)


@kopf.index(*PROFILES)
def profile_specs(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_
                  ) -> dict:
    """The profiles' specs, so a tenant resolves its defaults without an API call, with the
    optimizer's adjustments in force (load shedding lowers the tenants' limits)."""
    enforced = (status.get("optimization") or {}).get("enforced") or {}
    return {(namespace, name): {"spec": dict(spec), "adjustments": enforced.get("adjustments")}}


@kopf.on.resume(*TENANTS)
@kopf.on.create(*TENANTS)
@kopf.on.update(*TENANTS, field="spec")
async def tenant_changed(**kwargs: Any) -> None:
    await reconcile(**kwargs)


@kopf.timer(*TENANTS, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def tenant_resync(**kwargs: Any) -> None:
    await reconcile(**kwargs)


@kopf.on.delete(*TENANTS)
async def tenant_deleted(*, retry: int, **kwargs: Any) -> None:
    """Remove the tenant's tables (bounded retries, then released: see run_cleanups)."""
    ctx = _context(**kwargs)
    if ctx is not None:
        await run_cleanups(TENANT_CLEANUPS, ctx, retry)


async def reconcile(*, patch: kopf.Patch, status: kopf.Status, meta: kopf.Meta, **kwargs: Any
                    ) -> None:
    generation = meta.get("generation", 0)
    current = dict(status)
    try:
        ctx = _context(meta=meta, status=status, **kwargs)
    except pydantic.ValidationError as err:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     ready_override=("Rejected", describe_validation_error(err)))
        return
    if ctx is None:
        profile = (kwargs["spec"].get("profileRef") or {}).get("name")
        missing = Outcome(condition="ProfileResolved", ready=False, reason="ProfileNotFound",
                          message=f"PerformanceProfile {profile!r} does not exist in namespace "
                                  f"{kwargs['namespace']}")
        write_status(patch=patch, current=current, generation=generation,
                     results=[("ProfileResolved", missing)])
        return
    resolved = Outcome(condition="ProfileResolved", ready=True, reason="ProfileFound",
                       message=f"limits merged with PerformanceProfile {ctx.profile_name}")
    if ctx.profile.paused:
        write_status(patch=patch, current=current, generation=generation,
                     results=[("ProfileResolved", resolved)],
                     ready_override=("Paused", f"profile {ctx.profile_name} is paused"))
        return
    results = await run_parts("TenantQuota", TENANT_PARTS, ctx)
    results.append(("ProfileResolved", resolved))
    write_status(patch=patch, current=current, generation=generation, results=results)


def _context(*, body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status,
             name: str, namespace: str, logger, profile_specs: kopf.Index, **_
             ) -> TenantContext | None:
    """The tenant with its profile's defaults merged in; None when the profile is missing."""
    tenant = TenantQuotaSpec.model_validate(dict(spec))
    profile_name = tenant.profile_ref.name
    stored = list(profile_specs.get((namespace, profile_name), ()))
    if not stored:
        return None
    profile = PerformanceProfileSpec.model_validate(stored[0]["spec"])
    limits = Adjustments.model_validate(stored[0]["adjustments"] or {}).shed_limits(
        effective_limits(profile, tenant))
    return TenantContext(
        name=name, namespace=namespace, uid=meta["uid"], generation=meta.get("generation", 0),
        spec=tenant, profile_name=profile_name, profile=profile,
        limits=limits, status=dict(status),
        events=EventRecorder(body, logger), logger=logger)
