"""The periodic re-check of a profile's tenants, in one batch.

A timer per TenantQuota would wake 10,000 tasks a minute, each running kopf's handler
machinery and its own Redis round trips (about 6 ms of CPU per tenant per resync: a whole core
at 10,000 tenants). Instead one timer per profile observes all its tenants' records with one
pipelined HMGET and all its mirror rows with one SELECT, and only the tenants whose record,
mirror or status is not what the last reconcile reported (a Redis that lost its data, a
profile change, a failed tenant, a cache measurement that is due) get the full per-tenant
reconcile (``tenants.reconciler.reconcile_quota``, the entry point of the watch event
too), whose status this module writes itself. A converged tenant costs a few microseconds and
no API request. The same pass sweeps the profile's location for the tables of tenants that no
longer exist (``tenants.orphans``).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kopf
import psycopg
import pydantic
from kubernetes_asyncio.client.exceptions import ApiException
from redis.asyncio import Redis

from ..api.conditions import PAUSED, READY, TABLES_READY, condition_of, condition_reason
from ..handlers.profile_registry import ProfileLookup
from ..handlers.resources import TENANTS
from ..kube.objects import patch_status
from ..postgres.connect import DatabaseUnavailable, target_for_profile
from ..reconcile import TenantContext
from ..redis.connect import RedisTarget, with_client
from ..scrub import scrub
from ..secrets import SecretError
from ..targets import TargetRefused
from .mirror import MirrorRow, observe_mirrors
from .places import leftovers_pending
from .orphans import sweep_records, sweep_rows
from .reconciler import (reconcile_quota, resolved_profile, target_refusal, tenant_context,
                         tenant_lock)
from .records import (DesiredRecord, ObservedRecord, desired_record, observe_records,
                      plan_record, record_owner)
from .registry import TENANTS_BY_PROFILE, TenantEntry
from .usage import measurement_due

#: Tenants reconciled at once by a profile's re-check (each holds a Redis connection).
RESYNC_CONCURRENCY = 16
#: Tenants compared in one pipelined round trip, and how many such chunks all profiles'
#: re-checks hold at once (see :func:`tenants_to_reconcile`).
RECHECK_CHUNK = 50
CHUNKS_AT_ONCE = 4
_chunks = asyncio.Semaphore(CHUNKS_AT_ONCE)

logger = logging.getLogger(__name__)

#: The profile has no database: there is no mirror row to compare.
NO_MIRROR = object()
#: The mirror rows could not be read (no table yet, database down): the per-tenant reconcile
#: will find out and report it.
MIRROR_UNKNOWN = object()


@dataclass(frozen=True)
class TenantCheck:
    """One tenant, as the sweep sees it: what its record should be and what its status says."""

    name: str
    tenant_id: str
    desired: DesiredRecord
    #: status.table.version as last reported (0: never written)
    reported_version: int
    #: Ready and TablesReady are True for the current generation.
    settled: bool
    #: The status reports a former location with something left to delete (a move).
    moved: bool = False


def needs_reconcile(check: TenantCheck, record: ObservedRecord, mirror: MirrorRow | object | None,
                    measure_due: bool) -> bool:
    """Whether the tenant needs its full reconcile: anything but a settled tenant whose record
    (and mirror row, ``None`` when missing, or :data:`NO_MIRROR` / :data:`MIRROR_UNKNOWN`) is
    exactly what its status reports, with no cache measurement due and no former location
    left to clean up."""
    if not check.settled or check.moved or measure_due or mirror is MIRROR_UNKNOWN:
        return True
    if plan_record(check.desired, record, check.reported_version):
        return True
    if record.owner != check.desired.owner or record.version != check.reported_version:
        return True
    if mirror is NO_MIRROR:
        return False
    return (not isinstance(mirror, MirrorRow) or mirror.owner != check.desired.owner
            or mirror.version != record.version or mirror.digest != record.digest)


async def stale_tenants(redis: Redis, prefix: str, checks: Sequence[TenantCheck],
                        mirrors: dict[str, MirrorRow] | None | object) -> list[str]:
    """The names of the tenants that need their full reconcile. ``mirrors`` maps tenant ids to
    the profile's mirror rows; None when the profile has no database, :data:`MIRROR_UNKNOWN`
    when they could not be read."""
    records = await observe_records(redis, [check.desired.key for check in checks])
    stale = []
    for check, record in zip(checks, records):
        if mirrors is None:
            mirror: MirrorRow | object | None = NO_MIRROR
        elif mirrors is MIRROR_UNKNOWN:
            mirror = MIRROR_UNKNOWN
        else:
            assert isinstance(mirrors, dict)
            mirror = mirrors.get(check.tenant_id)
        if needs_reconcile(check, record, mirror, measurement_due(prefix, check.tenant_id)):
            stale.append(check.name)
    return stale


async def tenants_to_reconcile(profile_namespace: str, profile_name: str, profile: Any,
                               tenants: Sequence[TenantEntry], profiles: ProfileLookup
                               ) -> list[str]:
    """The names of the profile's tenants that need their full reconcile (see the module
    docstring); on the way, the records and mirror rows of deleted tenants at the profile's
    location are removed (``tenants.orphans``). Raises what reaching Redis raises: then every
    tenant should find out.

    The tenants are compared :data:`RECHECK_CHUNK` at a time, and at most
    :data:`CHUNKS_AT_ONCE` chunks of all profiles at once: the profiles' timers fire together,
    and each tenant's desired record (its parsed spec, merged limits and JSON document) held
    for all 10,000 bench tenants at once raised the operator's peak memory by about 60 MiB."""
    mirrors: dict[str, MirrorRow] | object | None = None
    target = None
    if profile.database is not None:
        try:
            target = await target_for_profile(profile_namespace, profile_name,
                                              profile.database.resolved_connection)
            mirrors = await observe_mirrors(target, profile_namespace, profile_name)
        except (SecretError, DatabaseUnavailable, psycopg.Error, OSError):
            mirrors = MIRROR_UNKNOWN
    spec = profile.redis

    async def recheck(redis: Redis) -> list[str]:
        stale: list[str] = []
        live: set[str] = set()
        for start in range(0, len(tenants), RECHECK_CHUNK):
            async with _chunks:
                checks = [check for entry in tenants[start:start + RECHECK_CHUNK]
                          if (check := _check(profile_namespace, entry, profiles,
                                              spec.key_prefix)) is not None]
                live.update(check.desired.key for check in checks)
                stale += await stale_tenants(redis, spec.key_prefix, checks, mirrors)
        await sweep_records(redis, profile_namespace, spec.key_prefix, live,
                            TENANTS_BY_PROFILE.get)
        return stale

    stale = await with_client(RedisTarget.from_spec(profile_namespace, spec.connection),
                              recheck)
    if target is not None and isinstance(mirrors, dict):
        try:
            await sweep_rows(target, profile_namespace, mirrors.values(),
                             TENANTS_BY_PROFILE.get)
        except (DatabaseUnavailable, psycopg.Error, OSError) as err:
            logger.warning("orphaned mirror rows of %s/%s not swept: %s", profile_namespace,
                           profile_name, scrub(err))
    return stale


async def resync_tenants(namespace: str, name: str, profiles: ProfileLookup) -> None:
    """Fully reconcile only the tenants of profile ``name`` whose tables or status are not what
    they should be, writing their status directly (no kopf handler call carries a patch for
    them), and sweep the profile's location for deleted tenants' tables, also when it has no
    tenant left."""
    # A tenant the operator has never reported on is its watch event's: reconciling it here
    # too would write its status twice while kopf works through a backlog.
    entries = {entry.name: entry for entry in TENANTS_BY_PROFILE.of_profile(namespace, name)
               if entry.observed_generation is not None and not entry.deleting}
    refusal = target_refusal(namespace, name, profiles)
    profile = resolved_profile(namespace, name, profiles)
    if refusal is not None:
        # The profile may not use its target (any more): the tenants say so.
        stale = [entry.name for entry in entries.values()
                 if not _reports(entry, READY, refusal.reason)]
    elif profile is None:
        return  # missing or invalid: its tenants report that from their own reconcile
    elif profile.paused or profile.redis is None:
        # Nothing to look at in Redis: only statuses that do not say so yet need a reconcile.
        stale = [entry.name for entry in entries.values()
                 if _valid_context(namespace, entry, profiles) is not None
                 and (_reports(entry, READY, PAUSED) != profile.paused
                      or (profile.redis is None
                          and condition_of(entry.status, TABLES_READY) is not None))]
    else:
        try:
            stale = await tenants_to_reconcile(namespace, name, profile,
                                               list(entries.values()), profiles)
        except Exception as err:  # noqa: BLE001 - every tenant finds out and reports it
            logger.warning("re-check of the tenants of %s/%s failed: %s", namespace, name,
                           scrub(err))
            stale = [entry.name for entry in entries.values()
                     if _valid_context(namespace, entry, profiles) is not None]
    await reconcile_tenants(namespace, [entries[tenant] for tenant in stale], profiles)


async def reconcile_tenants(namespace: str, entries: list[TenantEntry], profiles: ProfileLookup
                            ) -> None:
    """Fully reconcile these tenants, a bounded number at once, writing their status."""
    gate = asyncio.Semaphore(RESYNC_CONCURRENCY)

    async def one(entry: TenantEntry) -> None:
        async with gate, tenant_lock(namespace, entry.name):
            current = TENANTS_BY_PROFILE.get(namespace, entry.name)
            if current is None or current.deleting:
                return  # its deletion handler has it
            patch = kopf.Patch()
            try:
                await reconcile_quota(namespace, current, profiles, patch, logger)
                if patch:
                    await patch_status(TENANTS[2], namespace, current.name, dict(patch))
            except ApiException as err:
                if err.status != 404:  # deleted meanwhile: nothing to report on
                    logger.warning("status of TenantQuota %s/%s not written: %s", namespace,
                                   entry.name, scrub(err.reason))

    await asyncio.gather(*(one(entry) for entry in entries))


def _valid_context(namespace: str, entry: TenantEntry, profiles: ProfileLookup
                   ) -> TenantContext | None:
    """The tenant's context; None when its spec does not validate (its watch event reported
    that, and only a spec change can fix it) or its profile is gone."""
    try:
        return tenant_context(namespace, entry, profiles, logger)
    except (pydantic.ValidationError, TargetRefused):
        return None


def _reports(entry: TenantEntry, type_: str, reason: str) -> bool:
    return condition_reason(entry.status, type_) == reason


def _check(namespace: str, entry: TenantEntry, profiles: ProfileLookup, key_prefix: str
           ) -> TenantCheck | None:
    """What the re-check compares for one tenant (see :func:`needs_reconcile`); None when its
    spec does not validate or its profile is gone (see :func:`_valid_context`)."""
    ctx = _valid_context(namespace, entry, profiles)
    if ctx is None:
        return None
    status = ctx.status
    settled = (entry.observed_generation == entry.generation
               and all((condition_of(status, type_) or {}).get("status") == "True"
                       for type_ in (READY, TABLES_READY)))
    desired = desired_record(key_prefix, ctx.limits,
                             record_owner(ctx.namespace, entry.name), ctx.created)
    table = status.get("table")
    reported = int((table or {}).get("version") or 0)
    moved = leftovers_pending(table, ctx.profile_name, ctx.profile, ctx.limits.tenant_id)
    return TenantCheck(entry.name, ctx.limits.tenant_id, desired, reported, settled, moved)
