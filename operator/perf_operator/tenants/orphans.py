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
Tenants that outlive their profile keep their tables, and no re-check looks at that location
any more; one of them deleted while no operator leads would leave its record and row for ever
(no DELETED event is seen, seen in the short chaos run too). So while any TenantQuota's status
still names the deleted profile's location, the location is written down in the cleanup
ledger (handlers/deferred.py, kind ``TenantTables``, with copies of its credentials) and
:func:`watch_location` sweeps it on the ledger passes of whichever process leads: once in each
process, then whenever a tenant naming it goes. The entry is finished when no tenant names the
location any more, or a new profile of that name has taken it over (its re-check sweeps it).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from redis.asyncio import Redis

from ..api.profile import PerformanceProfileSpec, PostgresConnection, RedisConnection
from ..handlers import deferred
from ..handlers.escrow import REGISTRY_SEEDED
from ..postgres.connect import DatabaseGone, DatabaseTarget, target_for_profile
from ..ratelimit.layout import OWNER_FIELD, OWNER_SINCE_FIELD, glob_escape, record_key
from ..reconcile import ProfileContext
from ..redis.connect import RedisTarget, with_client
from ..secrets import SecretNeverUsed
from .mirror import MirrorRow, delete_owned_row, observe_mirrors
from .places import RecordPlace, RowPlace, dump, record_place, row_place
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


Connection = TypeVar("Connection", RedisConnection, PostgresConnection)

#: The ledger kind of a deleted profile's location that tenants still name.
TENANT_TABLES = "TenantTables"

#: The TenantQuotas naming each watched location (by ledger key) when this process last swept
#: it: a location is swept again only when one of them went.
_swept_for: dict[str, frozenset[str]] = {}


@dataclass(frozen=True)
class Location:
    """Where a profile's tenants keep their tables: limits records under its key prefix on its
    Redis, mirror rows filed under its name in its database."""

    namespace: str
    profile: str
    key_prefix: str | None = None
    redis: RedisConnection | None = None
    database: PostgresConnection | None = None

    @classmethod
    def of_profile(cls, namespace: str, name: str, spec: PerformanceProfileSpec) -> Location:
        redis, database = spec.redis, spec.database
        return cls(namespace, name, redis.key_prefix if redis else None,
                   redis.resolved_connection if redis else None,
                   database.resolved_connection if database else None)

    def names(self, table: Mapping[str, Any]) -> bool:
        """Whether a tenant's ``status.table`` reports a record or mirror row here (as its
        own, or as a stale one still to delete)."""
        places = [record_place(table), row_place(table.get("mirror"))]
        places += [record_place(stale) or row_place(stale.get("mirror"))
                   for stale in table.get("staleRecords") or []]
        for place in places:
            if isinstance(place, RecordPlace) and self.redis is not None:
                tenant = tenant_of_key(self.key_prefix or "", place.key)
                if tenant is not None and place.spot == RecordPlace(place.key, self.redis).spot:
                    return True
            if isinstance(place, RowPlace) and self.database is not None:
                if place.spot == RowPlace(self.profile, self.database).spot:
                    return True
        return False

    def named_by(self) -> frozenset[str]:
        """The TenantQuotas of the namespace whose status names this location."""
        return frozenset(tenant.name for tenant in TENANTS_BY_PROFILE.in_namespace(
            self.namespace) if self.names(tenant.status.get("table") or {}))

    async def sweep(self) -> None:
        """Delete the records and mirror rows here of TenantQuotas that no longer exist.
        Raises when a server cannot be reached."""
        if self.redis is not None:
            prefix = self.key_prefix or ""

            async def sweep(redis: Redis) -> None:
                await sweep_records(redis, self.namespace, prefix, set(),
                                    TENANTS_BY_PROFILE.get)
            try:
                await with_client(RedisTarget.from_spec(self.namespace, self.redis), sweep)
            except SecretNeverUsed:
                pass  # no record was written with it (handlers/deferred.clean)
        if self.database is None:
            return
        try:
            target = await target_for_profile(self.namespace, self.profile, self.database)
            rows = await observe_mirrors(target, self.namespace, self.profile)
        except (DatabaseGone, SecretNeverUsed):
            return  # the rows went with the database, or none was written with that login
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return  # no tenant was ever mirrored there
        await sweep_rows(target, self.namespace, rows.values(), TENANTS_BY_PROFILE.get)

    def entry(self, uid: str) -> dict[str, Any]:
        """The ledger entry that has the location watched (:func:`watch_location`); the
        profile's ``uid`` tells a new profile of the same name from the deleted one."""
        return {"kind": TENANT_TABLES, "namespace": self.namespace, "name": self.profile,
                "uid": uid, "keyPrefix": self.key_prefix,
                "redis": _server(self.redis), "database": _server(self.database)}

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Location:
        redis, database = entry.get("redis"), entry.get("database")
        return cls(entry["namespace"], entry["name"], entry.get("keyPrefix"),
                   _connection(RedisConnection, redis), _connection(PostgresConnection, database))


def _server(connection: RedisConnection | PostgresConnection | None) -> dict[str, Any] | None:
    if connection is None:
        return None
    return {"connection": dump(connection), "grantedBy": connection.granted_by}


def _connection(model: type[Connection], server: Mapping[str, Any] | None
                ) -> Connection | None:
    if not server:
        return None
    connection = model.model_validate(server["connection"])
    granted_by = server.get("grantedBy")
    return connection.granted(granted_by) if granted_by else connection  # type: ignore[return-value]


async def sweep_deleted_profile(ctx: ProfileContext) -> None:
    """The profile is being deleted (or its deferred cleanup replayed): sweep its key prefix
    and its mirror rows once more, since no re-check will. Its tenants that still exist keep
    their tables (their own deletion removes them, from their status), and while any does,
    the location is watched from the ledger (:func:`watch_location`). Waits for the tenant
    registry (a replay may start before it is seeded: every owner would look gone). Raises
    when a server cannot be reached, so that the sweep is deferred with the other cleanups."""
    await REGISTRY_SEEDED.wait()
    location = Location.of_profile(ctx.namespace, ctx.name, ctx.spec)
    await location.sweep()
    holders = location.named_by()
    if holders:
        entry = location.entry(ctx.uid)
        await deferred.watch(entry, f"{len(holders)} TenantQuotas still name its tables")
        _swept_for[deferred.entry_key(entry)] = holders


async def watch_location(entry: Mapping[str, Any], profile_uid: str | None) -> None:
    """A ledger pass over a watched location (see the module docstring): sweep it if this
    process never did or a tenant naming it went since; raises ``deferred.Waiting`` while
    tenants still name it and no new profile (``profile_uid``: the uid of the profile of that
    name now, None: none) took it over."""
    await REGISTRY_SEEDED.wait()
    location = Location.from_entry(entry)
    key = deferred.entry_key(dict(entry))
    holders = location.named_by()
    if _swept_for.get(key) != holders:
        await location.sweep()
        _swept_for[key] = holders
    if holders and profile_uid in (None, entry["uid"]):
        raise deferred.Waiting(f"{len(holders)} TenantQuotas still name its tables")
    _swept_for.pop(key, None)
