"""The TenantQuota reconciler: one typed entry point per job, called by the kopf handlers
(``handlers/tenants.py``) and by the profiles' re-check (``tenants.recheck``) alike.

* :func:`quota_event`: what a TenantQuota's watch event asks for (register it, and reconcile a
  spec the status does not report on yet);
* :func:`reconcile_quota`: make one tenant true and put its status changes into a patch;
* :func:`delete_quota`: remove what a deleted tenant configured (or defer it to the ledger),
  called on its DELETED watch event (TenantQuotas have no finalizer: see ``tenants.orphans``
  for what a missed event leaves and who removes it);
* :func:`replay_deletion`: a deferred deletion, replayed from the cleanup ledger.

Each takes the tenant as the registry remembers it (:class:`TenantEntry`, built from a kopf
body with ``TenantEntry.from_body``), so the re-check reconciles a tenant exactly as its change
handler does, without kopf's keyword arguments.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

import kopf
import pydantic

from .. import API_GROUP, API_VERSION
from ..api import PerformanceProfileSpec, TenantQuotaSpec, effective_limits
from ..api.conditions import (PAUSED, PROFILE_FOUND, PROFILE_NOT_FOUND, PROFILE_RESOLVED, REJECTED,
                              RULE_SHADOWED, TABLES_READY, TARGET_RESOLVED)
from ..api.optimization import Adjustments
from ..handlers.profile_registry import ProfileLookup
from ..handlers.reconciliation import Cleanup, run_cleanups, run_part, write_status
from ..ratelimit.layout import record_key
from ..reconcile import EventRecorder, Outcome, TenantContext
from ..targets import TargetRefused, resolve_profile
from ..validation import describe_validation_error, tenant_rule_errors
from .cleanup import remove_tenant
from .places import RecordPlace
from .records import record_owner, seniority
from .registry import TENANTS_BY_PROFILE, TenantEntry
from .tables import reconcile_tenant as reconcile_tables

Logger = logging.Logger | logging.LoggerAdapter

#: What deleting a tenant removes (its tables), each ``async fn(ctx) -> None``.
TENANT_CLEANUPS: tuple[Cleanup, ...] = (
    remove_tenant,
)


class ProfileEntry(NamedTuple):
    """A profile as its tenants need it, parsed once per profile event rather than once per
    tenant reconcile (10,000 tenants share 50 profiles)."""

    spec: dict
    #: None when the spec does not validate (the tenant then reports the profile's error).
    profile: PerformanceProfileSpec | None
    #: The optimizer's adjustments in force (load shedding lowers the tenants' limits).
    adjustments: Adjustments


#: The profile of a tenant whose profile is gone: it desires nothing (no Redis, no database).
PROFILE_GONE = ProfileEntry({}, PerformanceProfileSpec(), Adjustments())


def tenant_profile(namespace: str, name: str, spec: dict, status: dict, **_: Any) -> dict:
    """The indexer of the profiles by (namespace, name), so a tenant resolves its defaults
    without an API call (registered by the handlers as ``profile_specs``)."""
    enforced = (status.get("optimization") or {}).get("enforced") or {}
    try:
        profile: PerformanceProfileSpec | None = PerformanceProfileSpec.model_validate(
            dict(spec))
    except pydantic.ValidationError:
        profile = None
    return {(namespace, name): ProfileEntry(
        dict(spec), profile, Adjustments.model_validate(enforced.get("adjustments") or {}))}


#: One lock per tenant, held by every reconcile and cleanup of it. kopf never runs two handlers
#: of one object at once, but the profiles' re-checks reconcile tenants outside kopf: without
#: the lock, a re-check that read a tenant just before its deletion wrote its record and mirror
#: row back after the deletion handler had removed them (seen in the chaos run).
_TENANT_LOCKS: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary())


def tenant_lock(namespace: str, name: str) -> asyncio.Lock:
    lock = _TENANT_LOCKS.get((namespace, name))
    if lock is None:
        lock = _TENANT_LOCKS[(namespace, name)] = asyncio.Lock()
    return lock


#: The finalizer kopf put on every TenantQuota before they had none (kopf's
#: ``settings.persistence.finalizer``, still on profiles): taken off when seen.
LEGACY_FINALIZER = "perf.idp.io/finalizer"


async def quota_event(namespace: str, body: Mapping[str, Any], profiles: ProfileLookup,
                      patch: kopf.Patch, logger: Logger) -> None:
    """A TenantQuota's ADDED or MODIFIED watch event. TenantQuotas use kopf's low-level event
    handler, not its create/update/resume handlers: those cost every tenant kopf's diff-base
    (its spec again, in ``status.kopf``, parsed on every event) and progress bookkeeping. The
    spec's ``generation`` against ``status.observedGeneration`` says the same: a tenant whose
    status reports on its current spec is left to the profiles' re-check (drift, a profile
    change), any other is reconciled now, its status changes put into kopf's ``patch`` (one
    write, with the registration's). What kopf put on TenantQuotas before (its finalizer) is
    taken off; the stale ``status.kopf`` is ignored."""
    tenant = TENANTS_BY_PROFILE.put(namespace, body)
    finalizers = list(body["metadata"].get("finalizers") or [])
    if LEGACY_FINALIZER in finalizers:
        finalizers.remove(LEGACY_FINALIZER)
        patch.setdefault("metadata", {})["finalizers"] = finalizers
    if tenant.deleting or tenant.observed_generation == tenant.generation:
        return
    async with tenant_lock(namespace, tenant.name):
        await reconcile_quota(namespace, tenant, profiles, patch, logger)


async def reconcile_quota(namespace: str, tenant: TenantEntry, profiles: ProfileLookup,
                          patch: kopf.Patch, logger: Logger) -> None:
    """Make one TenantQuota true and put what its status should say (and does not yet) into
    ``patch``: its watch event hands kopf's patch, the re-check writes it itself."""
    generation = tenant.generation
    current = tenant.status
    events = EventRecorder(_event_body(namespace, tenant), logger)
    try:
        ctx = tenant_context(namespace, tenant, profiles, logger)
    except pydantic.ValidationError as err:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, ready_override=(REJECTED, describe_validation_error(err)))
        return
    except TargetRefused as err:
        refused = Outcome(TARGET_RESOLVED, False, err.reason, f"its profile: {err}")
        write_status(patch=patch, current=current, generation=generation,
                     results=[(TARGET_RESOLVED, refused)], events=events)
        return
    if ctx is None:
        profile = (tenant.spec.get("profileRef") or {}).get("name")
        missing = Outcome(condition=PROFILE_RESOLVED, ready=False, reason=PROFILE_NOT_FOUND,
                          message=f"PerformanceProfile {profile!r} does not exist in namespace "
                                  f"{namespace}")
        write_status(patch=patch, current=current, generation=generation,
                     results=[(PROFILE_RESOLVED, missing)], events=events)
        return
    shadowed = tenant_rule_errors(ctx.spec)
    if shadowed:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, ready_override=(RULE_SHADOWED, "; ".join(shadowed)))
        return
    resolved = Outcome(condition=PROFILE_RESOLVED, ready=True, reason=PROFILE_FOUND,
                       message=f"limits merged with PerformanceProfile {ctx.profile_name}")
    if ctx.profile.paused:
        write_status(patch=patch, current=current, generation=generation,
                     results=[(PROFILE_RESOLVED, resolved)], events=events,
                     ready_override=(PAUSED, f"profile {ctx.profile_name} is paused"))
        return
    # A tenant configures one target system: its tables (the Redis record and the mirror row).
    tables = await run_part("TenantQuota", TABLES_READY, reconcile_tables, ctx)
    write_status(patch=patch, current=current, generation=generation,
                 results=[(TABLES_READY, tables), (PROFILE_RESOLVED, resolved)],
                 events=ctx.events)


async def delete_quota(namespace: str, tenant: TenantEntry, profiles: ProfileLookup,
                       logger: Logger) -> None:
    """Remove the deleted tenant's tables (or write them down in the ledger: see
    run_cleanups). When its profile was deleted first, nothing is desired any more: what its
    status reports (and this TenantQuota owns) is removed."""
    ref = (namespace, (tenant.spec.get("profileRef") or {}).get("name"))
    lookup: ProfileLookup = profiles if profiles.get(ref) else {ref: [PROFILE_GONE]}
    try:
        ctx = tenant_context(namespace, tenant, lookup, logger)
    except TargetRefused:
        return  # its profile may not use its servers: the operator reaches nothing to clean
    assert ctx is not None  # the lookup has its profile
    profile = lookup[ref][0]
    entry = {"kind": "TenantQuota", "namespace": ctx.namespace, "name": ctx.name,
             "uid": ctx.uid, "spec": dict(tenant.spec), "status": ctx.status,
             "profile": {"spec": profile.spec,
                         "adjustments": profile.adjustments.model_dump(mode="json")}}
    await run_cleanups(TENANT_CLEANUPS, ctx, None, entry, tenant_lock(ctx.namespace, ctx.name))


async def replay_deletion(entry: dict[str, Any], events: EventRecorder, logger: Logger
                          ) -> None:
    """A deferred tenant cleanup (see handlers/deferred): its record and mirror row, found
    with the profile as it was when the tenant was deleted."""
    namespace = entry["namespace"]
    profile_name = TenantQuotaSpec.model_validate(entry["spec"]).profile_ref.name
    profile = ProfileEntry(entry["profile"]["spec"], None,
                           Adjustments.model_validate(entry["profile"]["adjustments"]))
    tenant = TenantEntry.of(entry["name"], entry["uid"], 0, entry["spec"], entry["status"])
    ctx = tenant_context(namespace, tenant, {(namespace, profile_name): [profile]}, logger)
    assert ctx is not None  # the profile is given
    ctx.events = events
    for cleanup in TENANT_CLEANUPS:
        await cleanup(ctx)


def tenant_context(namespace: str, tenant: TenantEntry, profiles: ProfileLookup,
                   logger: Logger) -> TenantContext | None:
    """The tenant with its profile's defaults merged in; None when the profile is missing.
    Raises the tenant's or its profile's validation error, or its profile's TargetRefused."""
    spec = TenantQuotaSpec.model_validate(dict(tenant.spec))
    profile_name = spec.profile_ref.name
    stored = list(profiles.get((namespace, profile_name), ()))
    if not stored:
        return None
    entry: ProfileEntry = stored[0]
    # an invalid profile raises its own validation error, which the tenant reports, and a
    # target it may not use its TargetRefused
    profile = resolve_profile(
        namespace, profile_name,
        entry.profile or PerformanceProfileSpec.model_validate(entry.spec)).spec
    limits = effective_limits(profile, spec, entry.adjustments.load_shedding)
    return TenantContext(
        name=tenant.name, namespace=namespace, uid=tenant.uid, generation=tenant.generation,
        spec=spec, profile_name=profile_name, profile=profile,
        limits=limits, status=dict(tenant.status),
        events=EventRecorder(_event_body(namespace, tenant), logger), logger=logger,
        created=tenant.created,
        senior_claimant=_senior_claimant(namespace, tenant.name, tenant.created, profile,
                                         limits.tenant_id, profiles))


def target_refusal(namespace: str, profile_name: str, profiles: ProfileLookup
                   ) -> TargetRefused | None:
    """Why the profile may not use the servers it names (None: it may, or it is not valid)."""
    stored = list(profiles.get((namespace, profile_name), ()))
    if not stored or stored[0].profile is None:
        return None
    try:
        resolve_profile(namespace, profile_name, stored[0].profile)
    except TargetRefused as err:
        return err
    return None


def _event_body(namespace: str, tenant: TenantEntry) -> dict[str, Any]:
    """What an Event names the TenantQuota by."""
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "TenantQuota",
            "metadata": {"name": tenant.name, "namespace": namespace, "uid": tenant.uid}}


def _senior_claimant(namespace: str, name: str, created: str | None,
                     profile: PerformanceProfileSpec, tenant_id: str, profiles: ProfileLookup
                     ) -> str | None:
    """The oldest other TenantQuota the operator knows of that writes the same record (same
    tenant ID and key prefix on the same Redis), if it is older than this one: then this one
    writes nothing, also into a record a data loss emptied (the record's ``ownerSince`` settles
    what this cannot see, e.g. one Redis under two host names)."""
    if profile.redis is None:
        return None
    mine = RecordPlace(record_key(profile.redis.key_prefix, tenant_id),
                       profile.redis.resolved_connection)
    rank = seniority(created, record_owner(namespace, name))
    best: tuple[tuple[bool, str, str], str] | None = None
    for other_namespace, other_profile, entry in TENANTS_BY_PROFILE.claimants(tenant_id):
        owner = record_owner(other_namespace, entry.name)
        other_rank = seniority(entry.created, owner)
        if other_rank >= rank or (best is not None and other_rank >= best[0]):
            continue
        other = resolved_profile(other_namespace, other_profile, profiles)
        if other is None or other.paused or other.redis is None:
            continue
        place = RecordPlace(record_key(other.redis.key_prefix, tenant_id),
                            other.redis.resolved_connection)
        if place.spot == mine.spot:
            best = (other_rank, owner)
    return best[1] if best else None


def resolved_profile(namespace: str, name: str | None, profiles: ProfileLookup
                      ) -> PerformanceProfileSpec | None:
    """A profile's effective spec (its target's connections filled in); None when it is
    missing, invalid or refused its target."""
    stored = list(profiles.get((namespace, name), ()))
    if name is None or not stored or stored[0].profile is None:
        return None
    try:
        return resolve_profile(namespace, name, stored[0].profile).spec
    except TargetRefused:
        return None
