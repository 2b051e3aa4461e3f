"""A tenant's effective limits as one versioned record in Redis (what the application reads at
request time) and a mirror row in PostgreSQL (for applications that load limits from their
database). The layout is documented in docs/rate-limit-tables.md.

The record is a hash at ``<prefix>{<tenantId>}:limits`` with fields ``version``, ``digest``,
``owner`` (the TenantQuota, ``<namespace>/<name>``), ``ownerSince`` (its creationTimestamp),
``writtenAt`` and ``limits`` (the JSON document). Of two TenantQuotas claiming one key, the
oldest owns it (:func:`seniority`), whichever wrote first: also after a Redis that lost its
data, where the younger may get there first, the older takes the record back. It is replaced whole by one Lua script, so readers never see half a table, and its
version only goes up: the operator passes the last version it reported as a floor, so a Redis
that lost its data gets a higher version than any reader may have cached.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from ..clock import timestamp
from ..ratelimit.layout import (DIGEST_FIELD, OWNER_FIELD, OWNER_SINCE_FIELD, RECORD_SCHEMA,
                                VERSION_FIELD, WRITTEN_AT_FIELD, cache_prefix, record_key)

_REPLACE = importlib.resources.files(__package__).joinpath("replace_record.lua").read_text()
_DELETE_IF_OWNED = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class DesiredRecord:
    key: str
    owner: str
    digest: str
    #: The limits document, serialised canonically (sorted keys, no spaces): the digest's input.
    document: str
    #: The owner's metadata.creationTimestamp; None: unknown (a tool that does not write).
    since: str | None = None


@dataclass(frozen=True)
class ObservedRecord:
    owner: str | None
    digest: str | None
    version: int
    written_at: str | None
    since: str | None = None

    @property
    def exists(self) -> bool:
        return self.digest is not None


@dataclass(frozen=True)
class WriteRecord:
    """Replace the whole record; ``floor`` keeps versions rising across a Redis data loss."""

    reason: Literal["Missing", "Changed", "TakenOver"]
    floor: int


def record_owner(namespace: str, name: str) -> str:
    """The record's ``owner`` field: the TenantQuota that wrote it."""
    return f"{namespace}/{name}"


def seniority(since: str | None, owner: str) -> tuple[bool, str, str]:
    """Sorts the oldest claimant of a record first: creationTimestamp (RFC 3339 in UTC, as the
    API server writes it, compares as text), then ``<namespace>/<name>``; unknown last."""
    return since is None, since or "", owner


def limits_document(prefix: str, limits: Any) -> dict[str, Any]:
    """The JSON document applications read: the tenant's effective limits as the API names them
    (``EffectiveTenantLimits``), plus the schema version and the tenant's cache key prefix."""
    document = limits.model_dump(mode="json", by_alias=True)
    document["schemaVersion"] = RECORD_SCHEMA
    document["cache"]["keyPrefix"] = cache_prefix(prefix, limits.tenant_id)
    return document


def desired_record(prefix: str, limits: Any, owner: str, since: str | None = None
                   ) -> DesiredRecord:
    document = json.dumps(limits_document(prefix, limits), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(document.encode()).hexdigest()[:16]
    return DesiredRecord(key=record_key(prefix, limits.tenant_id), owner=owner, digest=digest,
                         document=document, since=since)


def plan_record(desired: DesiredRecord, observed: ObservedRecord, reported_version: int
                ) -> list[WriteRecord]:
    """One whole-record write, unless the record is current or belongs to an older TenantQuota
    (the same tenantId under the same prefix: a conflict the caller reports). A record of a
    younger one is taken over; one without ``ownerSince`` (written before it existed) is left
    to its owner, which adds it at its next write."""
    if observed.owner is not None and observed.owner != desired.owner:
        if (observed.since is None or desired.since is None
                or seniority(observed.since, observed.owner)
                < seniority(desired.since, desired.owner)):
            return []
        return [WriteRecord("TakenOver", max(reported_version, observed.version))]
    if observed.digest == desired.digest and (desired.since is None
                                              or observed.since == desired.since):
        return []
    reason: Literal["Changed", "Missing"] = "Changed" if observed.exists else "Missing"
    return [WriteRecord(reason, max(reported_version, observed.version))]


#: The record's fields an observation reads, in the order ``_observed`` takes them.
_OBSERVED_FIELDS = [OWNER_FIELD, DIGEST_FIELD, VERSION_FIELD, WRITTEN_AT_FIELD, OWNER_SINCE_FIELD]


def _observed(reply: list[str | None]) -> ObservedRecord:
    owner, digest, version, written_at, since = reply
    return ObservedRecord(owner, digest, int(version or 0), written_at, since)


async def observe_record(redis: Redis, key: str) -> ObservedRecord:
    return _observed(await redis.hmget(key, _OBSERVED_FIELDS))


async def observe_records(redis: Redis, keys: Sequence[str]) -> list[ObservedRecord]:
    """The records at ``keys``, in one pipelined round trip (the batched re-check)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, _OBSERVED_FIELDS)
        replies = await pipe.execute()
    return [_observed(reply) for reply in replies]


async def write_record(redis: Redis, desired: DesiredRecord, step: WriteRecord
                       ) -> ObservedRecord:
    """Execute ``step``; the record as it is afterwards (the script re-checks owner and digest,
    so a concurrent writer cannot be overwritten by a stale plan)."""
    written_at = timestamp()
    reply = await redis.register_script(_REPLACE)(
        keys=[desired.key], args=[desired.owner, desired.digest, desired.document, written_at,
                                  step.floor, desired.since or ""])
    if reply[0] == "conflict":
        return ObservedRecord(reply[1], None, 0, None)
    return ObservedRecord(desired.owner, desired.digest, int(reply[1]), reply[2], desired.since)


async def delete_record(redis: Redis, key: str, owner: str) -> bool:
    """Delete the record if ``owner`` owns it; another TenantQuota's record is left alone."""
    return bool(await redis.register_script(_DELETE_IF_OWNED)(keys=[key], args=[owner]))
