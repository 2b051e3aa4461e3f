"""The periodic re-check of a profile's tenants, in one batch.

A timer per TenantQuota would wake 10,000 tasks a minute, each running kopf's handler
machinery and its own Redis round trips (about 6 ms of CPU per tenant per resync: a whole core
at 10,000 tenants). Instead one timer per profile observes all its tenants' records with one
pipelined HMGET and all its mirror rows with one SELECT, and only the tenants whose record,
mirror or status is not what the last reconcile reported (a Redis that lost its data, a
profile change, a failed tenant, a cache measurement that is due) get the full per-tenant
reconcile. A converged tenant costs a few microseconds and no API request.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from redis.asyncio import Redis

from ..postgres.connect import DatabaseUnavailable
from ..secrets import SecretError
from ..redis.connect import RedisTarget, with_client
from .mirror import MirrorRow, mirror_target, observe_mirrors
from .records import DesiredRecord, ObservedRecord, observe_records, plan_record
from .usage import measurement_due

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
            mirror = mirrors.get(check.tenant_id)  # type: ignore[union-attr]
        if needs_reconcile(check, record, mirror, measurement_due(prefix, check.tenant_id)):
            stale.append(check.name)
    return stale


async def tenants_to_reconcile(profile_namespace: str, profile_name: str, profile: Any,
                               checks: Sequence[TenantCheck]) -> list[str]:
    """The names of the profile's tenants that need their full reconcile (see the module
    docstring). Raises what reaching Redis raises: then every tenant should find out."""
    mirrors: dict[str, MirrorRow] | object | None = None
    if profile.database is not None:
        try:
            target = await mirror_target(profile_namespace, profile_name,
                                         profile.database.connection)
            mirrors = await observe_mirrors(target, profile_namespace, profile_name)
        except (SecretError, DatabaseUnavailable, psycopg.Error, OSError):
            mirrors = MIRROR_UNKNOWN
    spec = profile.redis
    return await with_client(RedisTarget.from_spec(profile_namespace, spec.connection),
                             lambda redis: stale_tenants(redis, spec.key_prefix, checks, mirrors))
