"""Deleting a tenant's tables: when the TenantQuota is deleted (:func:`remove_tenant`), and
what it left at a former location after a move (:func:`delete_leftovers`). Only what this
TenantQuota owns (the record's and the row's ``owner``) is deleted; another's is left alone.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..clock import timestamp, utc_now
from ..postgres.connect import (DatabaseGone, DatabaseTarget, DatabaseUnavailable,
                               target_for_profile)
from ..ratelimit.layout import OWNER_FIELD, record_key
from ..reconcile import TenantContext
from ..redis.connect import RedisTarget, with_client
from ..redis.settings import server_id
from ..scrub import scrub
from ..secrets import SecretError, SecretNeverUsed
from .mirror import delete_owned_row
from .places import RecordPlace, RowPlace, plan_leftovers, record_place, row_place
from .records import delete_record, record_owner
from .usage import forget


async def remove_tenant(ctx: TenantContext) -> None:
    """Delete the tenant's record and mirror row, if this TenantQuota owns them: where the
    profile says they are and, when that differs, where the status reports them (and any stale
    record it lists). The limiter's buckets expire on their own; the application's cache keys
    are the application's. Raises when a server could not be reached, after trying them all."""
    spec = ctx.profile.redis
    table = ctx.status.get("table") or {}
    places: list[RecordPlace | RowPlace] = []
    if spec is not None:
        places.append(RecordPlace(record_key(spec.key_prefix, ctx.limits.tenant_id),
                                  spec.resolved_connection))
        if ctx.profile.database is not None:
            places.append(RowPlace(ctx.profile_name, ctx.profile.database.resolved_connection))
    leftovers, abandoned = plan_leftovers(table, None, None, row_settled=True,
                                          now=utc_now())
    places += [item.place for item in leftovers + abandoned
               if item.place.spot not in {p.spot for p in places}]
    errors = []
    for place in places:
        try:
            await _delete_place(ctx, place, None, None)
        except SecretNeverUsed:
            continue  # never logged in there: nothing was written (see handlers/deferred.clean)
        except _UNREACHABLE as err:
            errors.append(f"{place.describe()}: {_error_text(err)}")
    if errors:
        raise RuntimeError("not deleted: " + "; ".join(errors))



_UNREACHABLE = (SecretError, RedisError, DatabaseUnavailable, psycopg.Error, OSError)


def _error_text(err: BaseException) -> str:
    if isinstance(err, RedisError):
        return f"Redis unavailable: {scrub(err)}"
    if isinstance(err, (DatabaseUnavailable, psycopg.Error)):
        return f"database unavailable: {scrub(err)}"
    return scrub(err)


def stale_note(entry: dict[str, Any]) -> str:
    place = record_place(entry) or row_place(entry.get("mirror"))
    what = place.describe() if place else "an old location"
    return f"old {what} not deleted yet ({entry['message']}), retried on every resync"


async def delete_leftovers(ctx: TenantContext, table: Mapping[str, Any],
                            record: RecordPlace | None, row: RowPlace | None, *,
                            row_settled: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """Delete what the tenant left at former locations. Returns what was done (for the
    ``TableMoved`` Event) and the stale records to keep reporting (``status.table``)."""
    now = utc_now()
    todo, abandoned = plan_leftovers(table, record, row, row_settled=row_settled, now=now)
    for item in abandoned:
        ctx.events.warning("StaleTableAbandoned",
                           f"gave up deleting the old {item.place.describe()}, unreachable "
                           f"since {item.since}; delete it by hand if it still exists")
    done: list[str] = []
    stale: list[dict[str, Any]] = []
    for item in todo:
        try:
            outcome = await _delete_place(ctx, item.place, record, row)
        except _UNREACHABLE as err:
            entry = {**(item.place.status() if isinstance(item.place, RecordPlace)
                        else {"mirror": item.place.status()}),
                     "since": item.since or timestamp(), "message": _error_text(err)}
            if item.since is None:
                ctx.events.warning("TableMoveIncomplete", f"the tenant's tables moved, but the "
                                                          f"old {item.place.describe()} could "
                                                          f"not be deleted: {entry['message']}")
            stale.append(entry)
            continue
        if outcome:
            done.append(outcome)
    return done, stale[:8]


async def _delete_place(ctx: TenantContext, place: RecordPlace | RowPlace,
                        record: RecordPlace | None, row: RowPlace | None) -> str | None:
    """Delete the record or mirror row at ``place`` if this TenantQuota owns it; what happened
    (None: ``place`` is the desired ``record`` or ``row`` under another name of the same
    server, nothing to do). Raises when the server cannot be reached."""
    owner = record_owner(ctx.namespace, ctx.name)
    if isinstance(place, RecordPlace):
        target = RedisTarget.from_spec(ctx.namespace, place.connection)
        if (record is not None and record.key == place.key
                and record.connection.db == place.connection.db):
            here = await with_client(RedisTarget.from_spec(ctx.namespace, record.connection),
                                     server_id)
            if await with_client(target, server_id) == here:
                return None

        async def delete(redis: Redis) -> str | None:
            found = await redis.hget(place.key, OWNER_FIELD)
            if found == owner and not await delete_record(redis, place.key, owner):
                return None  # deleted in between
            return found

        found = await with_client(target, delete)
        prefix = place.key.removesuffix(record_key("", ctx.limits.tenant_id))
        forget(prefix, ctx.limits.tenant_id)
    else:
        try:
            database = await target_for_profile(ctx.namespace, place.profile, place.connection)
        except DatabaseGone:
            return f"no old {place.describe()} to delete: its database no longer exists"
        if (row is not None and row.profile == place.profile
                and row.connection.database == place.connection.database):
            desired = await target_for_profile(ctx.namespace, row.profile, row.connection)
            if await _database_id(database) == await _database_id(desired):
                return None
        found = await delete_owned_row(database, ctx.namespace, place.profile,
                                       ctx.limits.tenant_id, owner)
    if found is None:
        return f"no old {place.describe()} to delete"
    if found != owner:
        return f"left the old {place.describe()} alone: it belongs to TenantQuota {found}"
    return f"deleted the old {place.describe()}"



async def _database_id(target: DatabaseTarget) -> tuple[Any, ...]:
    """The database a pool reaches, whatever host name it used."""
    async with target.connection() as conn:
        cursor = await conn.execute("SELECT pg_postmaster_start_time()::text, "
                                    "current_database()")
        return tuple(await cursor.fetchone() or ())
