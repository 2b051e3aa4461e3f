"""TenantQuota handlers: registration and delegation only."""
from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, NamedTuple

import kopf
import pydantic
from kubernetes_asyncio.client.exceptions import ApiException

from ..api import PerformanceProfileSpec, TenantQuotaSpec, effective_limits
from ..api.optimization import Adjustments
from ..config import CONFIG
from ..kube.objects import patch_status
from ..reconcile import EventRecorder, Outcome, TenantContext
from ..ratelimit.layout import record_key
from ..tenants.cleanup import remove_tenant as remove_redis_tables
from ..tenants.places import RecordPlace, leftovers_pending
from ..tenants.recheck import TenantCheck, tenants_to_reconcile
from ..tenants.records import desired_record, record_owner, seniority
from ..tenants.registry import TENANTS_BY_PROFILE, TenantEntry
from ..tenants.tables import reconcile_tenant as redis_tables
from ..scrub import scrub
from ..targets import TARGET_RESOLVED, TargetRefused, resolve_profile
from ..validation import RULE_SHADOWED, describe_validation_error, tenant_rule_errors
from . import deferred
from .reconciliation import Cleanup, Part, run_cleanups, run_parts, write_status
from .profile_registry import ProfileLookup, forget_profile, profile_index
from .resources import PROFILES, TENANTS

#: The target systems a tenant configures, each with the condition type it reports.
TENANT_PARTS: tuple[tuple[str, Part], ...] = (
    ("TablesReady", redis_tables),
)

#: What deleting a tenant removes (its tables), each ``async fn(ctx) -> None``.
TENANT_CLEANUPS: tuple[Cleanup, ...] = (
    remove_redis_tables,
)

#: Tenants reconciled at once by a profile's re-check (each holds a Redis connection).
RESYNC_CONCURRENCY = 16

logger = logging.getLogger(__name__)


@kopf.on.event(*TENANTS)
async def track_tenant(*, event: dict, body: kopf.Body, namespace: str, name: str, **_) -> None:
    """Keep the registry of tenants by profile (see tenants.registry: not a kopf index)."""
    if event.get("type") == "DELETED":
        TENANTS_BY_PROFILE.forget(namespace, name)
    else:
        TENANTS_BY_PROFILE.put(namespace, body)


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


@profile_index
def profile_specs(namespace: str, name: str, spec: dict, status: dict, **_) -> dict:
    """The profiles, so a tenant resolves its defaults without an API call."""
    enforced = (status.get("optimization") or {}).get("enforced") or {}
    try:
        profile: PerformanceProfileSpec | None = PerformanceProfileSpec.model_validate(
            dict(spec))
    except pydantic.ValidationError:
        profile = None
    return {(namespace, name): ProfileEntry(
        dict(spec), profile, Adjustments.model_validate(enforced.get("adjustments") or {}))}


@kopf.on.resume(*TENANTS)
@kopf.on.create(*TENANTS)
@kopf.on.update(*TENANTS, field="spec")
async def tenant_changed(**kwargs: Any) -> None:
    async with _tenant_lock(kwargs["namespace"], kwargs["name"]):
        await reconcile(profile_specs=profile_specs, **kwargs)


#: One lock per tenant, held by every reconcile and cleanup of it. kopf never runs two handlers
#: of one object at once, but the profiles' re-checks reconcile tenants outside kopf: without
#: the lock, a re-check that read a tenant just before its deletion wrote its record and mirror
#: row back after the deletion handler had removed them (seen in the chaos run).
_TENANT_LOCKS: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary())


def _tenant_lock(namespace: str, name: str) -> asyncio.Lock:
    lock = _TENANT_LOCKS.get((namespace, name))
    if lock is None:
        lock = _TENANT_LOCKS[(namespace, name)] = asyncio.Lock()
    return lock


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


async def resync_tenants(namespace: str, name: str, profile_specs: ProfileLookup) -> None:
    """Fully reconcile only the tenants whose tables or status are not what they should be,
    writing their status directly (no kopf handler call carries a patch for them)."""
    # A tenant the operator has never reported on is its create handler's: reconciling it here
    # too would write its status twice while kopf works through a backlog.
    entries = {entry.name: entry for entry in TENANTS_BY_PROFILE.of_profile(namespace, name)
               if "observedGeneration" in entry.status and not entry.deleting}
    checks = [(entry, ctx) for entry in entries.values()
              if (ctx := _entry_context(namespace, entry, profile_specs)) is not None]
    refusal = _target_refusal(namespace, name, profile_specs) if entries else None
    if not checks and refusal is None:
        return
    profile = checks[0][1].profile if checks else None
    if refusal is not None:
        # The profile may not use its target (any more): the tenants say so.
        stale = [entry.name for entry in entries.values()
                 if not _reports(entry, "Ready", refusal.reason)]
    elif profile.paused or profile.redis is None:
        # Nothing to look at in Redis: only statuses that do not say so yet need a reconcile.
        stale = [entry.name for entry, _ in checks
                 if _reports(entry, "Ready", "Paused") != profile.paused
                 or (profile.redis is None and _condition(entry, "TablesReady") is not None)]
    else:
        try:
            stale = await tenants_to_reconcile(
                namespace, name, profile, [_check(entry, ctx) for entry, ctx in checks])
        except Exception as err:  # noqa: BLE001 - every tenant finds out and reports it
            logger.warning("re-check of the tenants of %s/%s failed: %s", namespace, name,
                           scrub(err))
            stale = [entry.name for entry, _ in checks]
    await _reconcile_entries(namespace, [entries[tenant] for tenant in stale])


@kopf.on.event(*PROFILES)
async def tenants_lose_profile(*, event: dict, namespace: str, name: str, **_) -> None:
    """A deleted profile's tenants report ProfileNotFound now rather than at their next change
    (their tables stay until they are deleted: see tenant_deleted)."""
    if event.get("type") != "DELETED":
        return
    forget_profile(namespace, name)  # whichever watching handler kopf runs first
    await _reconcile_entries(namespace, TENANTS_BY_PROFILE.of_profile(namespace, name))


async def _reconcile_entries(namespace: str, entries: list[TenantEntry]) -> None:
    """Fully reconcile these tenants, a bounded number at once, writing their status."""
    gate = asyncio.Semaphore(RESYNC_CONCURRENCY)

    async def one(entry: TenantEntry) -> None:
        async with gate, _tenant_lock(namespace, entry.name):
            current = TENANTS_BY_PROFILE.get(namespace, entry.name)
            if current is None or current.deleting:
                return  # its deletion handler has it
            try:
                await _reconcile_entry(namespace, current, profile_specs)
            except ApiException as err:
                if err.status != 404:  # deleted meanwhile: nothing to report on
                    logger.warning("status of TenantQuota %s/%s not written: %s", namespace,
                                   entry.name, scrub(err.reason))

    await asyncio.gather(*(one(entry) for entry in entries))


@kopf.on.delete(*TENANTS)
async def tenant_deleted(*, retry: int, **kwargs: Any) -> None:
    """Remove the tenant's tables (bounded retries, then released: see run_cleanups). When its
    profile was deleted first, nothing is desired any more: what its status reports (and this
    TenantQuota owns) is removed."""
    ref = (kwargs["namespace"], (kwargs["spec"].get("profileRef") or {}).get("name"))
    lookup: ProfileLookup = profile_specs if profile_specs.get(ref) else {ref: [PROFILE_GONE]}
    try:
        ctx = _context(profile_specs=lookup, **kwargs)
    except TargetRefused:
        return  # its profile may not use its servers: the operator reaches nothing to clean
    assert ctx is not None  # the lookup has its profile
    profile = lookup[ref][0]
    entry = {"kind": "TenantQuota", "namespace": ctx.namespace, "name": ctx.name,
             "uid": ctx.uid, "spec": dict(kwargs["spec"]), "status": ctx.status,
             "profile": {"spec": profile.spec,
                         "adjustments": profile.adjustments.model_dump(mode="json")}}
    async with _tenant_lock(ctx.namespace, ctx.name):
        await run_cleanups(TENANT_CLEANUPS, ctx, retry, entry)


@deferred.replayer("TenantQuota")
async def replay_tenant_cleanup(entry: dict[str, Any], events: EventRecorder) -> None:
    """A deferred tenant cleanup (see handlers/deferred): its record and mirror row, found
    with the profile as it was when the tenant was deleted."""
    tenant = TenantQuotaSpec.model_validate(entry["spec"])
    profile = ProfileEntry(entry["profile"]["spec"], None,
                           Adjustments.model_validate(entry["profile"]["adjustments"]))
    meta = {"name": entry["name"], "namespace": entry["namespace"], "uid": entry["uid"]}
    ctx = _context(body={"metadata": meta}, spec=entry["spec"], meta=meta,
                   status=entry["status"], name=entry["name"], namespace=entry["namespace"],
                   logger=deferred.logger,
                   profile_specs={(entry["namespace"], tenant.profile_ref.name): [profile]})
    assert ctx is not None  # the profile is given
    ctx.events = events
    for cleanup in TENANT_CLEANUPS:
        await cleanup(ctx)


async def reconcile(*, patch: kopf.Patch, status: kopf.Status, meta: kopf.Meta, **kwargs: Any
                    ) -> None:
    generation = meta.get("generation", 0)
    current = dict(status)
    events = EventRecorder(kwargs["body"], kwargs["logger"])
    try:
        ctx = _context(meta=meta, status=status, **kwargs)
    except pydantic.ValidationError as err:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, ready_override=("Rejected", describe_validation_error(err)))
        return
    except TargetRefused as err:
        refused = Outcome(TARGET_RESOLVED, False, err.reason, f"its profile: {err}")
        write_status(patch=patch, current=current, generation=generation,
                     results=[(TARGET_RESOLVED, refused)], events=events)
        return
    if ctx is None:
        profile = (kwargs["spec"].get("profileRef") or {}).get("name")
        missing = Outcome(condition="ProfileResolved", ready=False, reason="ProfileNotFound",
                          message=f"PerformanceProfile {profile!r} does not exist in namespace "
                                  f"{kwargs['namespace']}")
        write_status(patch=patch, current=current, generation=generation,
                     results=[("ProfileResolved", missing)], events=events)
        return
    shadowed = tenant_rule_errors(ctx.spec)
    if shadowed:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, ready_override=(RULE_SHADOWED, "; ".join(shadowed)))
        return
    resolved = Outcome(condition="ProfileResolved", ready=True, reason="ProfileFound",
                       message=f"limits merged with PerformanceProfile {ctx.profile_name}")
    if ctx.profile.paused:
        write_status(patch=patch, current=current, generation=generation,
                     results=[("ProfileResolved", resolved)], events=events,
                     ready_override=("Paused", f"profile {ctx.profile_name} is paused"))
        return
    results = await run_parts("TenantQuota", TENANT_PARTS, ctx)
    results.append(("ProfileResolved", resolved))
    write_status(patch=patch, current=current, generation=generation, results=results,
                 events=ctx.events)


def _context(*, body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status,
             name: str, namespace: str, logger, profile_specs: ProfileLookup, **_
             ) -> TenantContext | None:
    """The tenant with its profile's defaults merged in; None when the profile is missing."""
    tenant = TenantQuotaSpec.model_validate(dict(spec))
    profile_name = tenant.profile_ref.name
    stored = list(profile_specs.get((namespace, profile_name), ()))
    if not stored:
        return None
    entry: ProfileEntry = stored[0]
    # an invalid profile raises its own validation error, which the tenant reports, and a
    # target it may not use its TargetRefused
    profile = resolve_profile(
        namespace, profile_name,
        entry.profile or PerformanceProfileSpec.model_validate(entry.spec)).spec
    limits = entry.adjustments.shed_limits(effective_limits(profile, tenant))
    created = meta.get("creationTimestamp")
    return TenantContext(
        name=name, namespace=namespace, uid=meta["uid"], generation=meta.get("generation", 0),
        spec=tenant, profile_name=profile_name, profile=profile,
        limits=limits, status=dict(status),
        events=EventRecorder(body, logger), logger=logger, created=created,
        senior_claimant=_senior_claimant(namespace, name, created, profile, limits.tenant_id,
                                         profile_specs))


def _senior_claimant(namespace: str, name: str, created: str | None, profile: Any,
                     tenant_id: str, profile_specs: ProfileLookup) -> str | None:
    """The oldest other TenantQuota the operator knows of that writes the same record (same
    tenant ID and key prefix on the same Redis), if it is older than this one: then this one
    writes nothing, also into a record a data loss emptied (the record's ``ownerSince`` settles
    what this cannot see, e.g. one Redis under two host names)."""
    if profile.redis is None:
        return None
    mine = RecordPlace(record_key(profile.redis.key_prefix, tenant_id), profile.redis.connection)
    rank = seniority(created, record_owner(namespace, name))
    best: tuple[tuple[bool, str, str], str] | None = None
    for other_namespace, other_profile, entry in TENANTS_BY_PROFILE.claimants(tenant_id):
        owner = record_owner(other_namespace, entry.name)
        other_rank = seniority(entry.created, owner)
        if other_rank >= rank or (best is not None and other_rank >= best[0]):
            continue
        other = _resolved_profile(other_namespace, other_profile, profile_specs)
        if other is None or other.paused or other.redis is None:
            continue
        place = RecordPlace(record_key(other.redis.key_prefix, tenant_id),
                            other.redis.connection)
        if place.spot == mine.spot:
            best = (other_rank, owner)
    return best[1] if best else None


def _resolved_profile(namespace: str, name: str | None, profile_specs: ProfileLookup
                      ) -> PerformanceProfileSpec | None:
    """A profile's effective spec (its target's connections filled in); None when it is
    missing, invalid or refused its target."""
    stored = list(profile_specs.get((namespace, name), ()))
    if not stored or stored[0].profile is None:
        return None
    try:
        return resolve_profile(namespace, name, stored[0].profile).spec
    except TargetRefused:
        return None


def _entry_kwargs(namespace: str, entry: TenantEntry, profile_specs: ProfileLookup) -> dict:
    """The handler arguments ``reconcile`` and ``_context`` read, rebuilt from an index entry."""
    meta = {"name": entry.name, "namespace": namespace, "uid": entry.uid,
            "generation": entry.generation, "creationTimestamp": entry.created}
    body = {"apiVersion": "/".join(TENANTS[:2]), "kind": "TenantQuota", "metadata": meta}
    return {"body": body, "spec": entry.spec, "meta": meta, "status": entry.status,
            "name": entry.name, "namespace": namespace, "logger": logger,
            "profile_specs": profile_specs}


def _entry_context(namespace: str, entry: TenantEntry, profile_specs: ProfileLookup
                   ) -> TenantContext | None:
    """The tenant's context; None when its spec does not validate (its change handler reported
    that, and only a spec change can fix it) or its profile is gone."""
    try:
        return _context(**_entry_kwargs(namespace, entry, profile_specs))
    except (pydantic.ValidationError, TargetRefused):
        return None


def _target_refusal(namespace: str, profile_name: str, profile_specs: ProfileLookup
                    ) -> TargetRefused | None:
    """Why the profile may not use the servers it names (None: it may, or it is not valid)."""
    stored = list(profile_specs.get((namespace, profile_name), ()))
    if not stored or stored[0].profile is None:
        return None
    try:
        resolve_profile(namespace, profile_name, stored[0].profile)
    except TargetRefused as err:
        return err
    return None


def _condition(entry: TenantEntry, type_: str) -> dict | None:
    return next((c for c in entry.status.get("conditions") or [] if c.get("type") == type_),
                None)


def _reports(entry: TenantEntry, type_: str, reason: str) -> bool:
    return (_condition(entry, type_) or {}).get("reason") == reason


def _check(entry: TenantEntry, ctx: TenantContext) -> TenantCheck:
    """What the re-check compares for one tenant (see tenants.recheck.needs_reconcile)."""
    settled = (entry.status.get("observedGeneration") == entry.generation
               and all((_condition(entry, type_) or {}).get("status") == "True"
                       for type_ in ("Ready", "TablesReady")))
    desired = desired_record(ctx.profile.redis.key_prefix, ctx.limits,
                             record_owner(ctx.namespace, entry.name), ctx.created)
    table = entry.status.get("table")
    reported = int((table or {}).get("version") or 0)
    moved = leftovers_pending(table, ctx.profile_name, ctx.profile, ctx.limits.tenant_id)
    return TenantCheck(entry.name, ctx.limits.tenant_id, desired, reported, settled, moved)


async def _reconcile_entry(namespace: str, entry: TenantEntry, profile_specs: ProfileLookup
                           ) -> None:
    patch = kopf.Patch()
    await reconcile(patch=patch, **_entry_kwargs(namespace, entry, profile_specs))
    if patch:
        await patch_status(TENANTS[2], namespace, entry.name, dict(patch))
