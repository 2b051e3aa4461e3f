"""Redis: the profile's server settings (condition ``RedisReady``) and each tenant's limits
record, its PostgreSQL mirror and its cache usage (condition ``TablesReady``).

Each reconcile is level-based: it observes, plans and writes only what differs, so the resync
timer is also what restores the tables after a Redis that lost its data and corrects settings
changed behind the operator's back.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pydantic
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..api import PerformanceProfileSpec
from ..api.profile import REDIS_ALLOWED_SETTINGS, PostgresConnection, RedisConnection
from ..postgres.connect import DatabaseTarget, DatabaseUnavailable
from ..ratelimit.layout import OWNER_FIELD, record_key
from ..reconcile import Outcome, ProfileContext, TenantContext
from ..scrub import scrub
from ..secrets import SecretError
from ..validation import semantic_errors
from .connect import RedisTarget, with_client
from .mirror import (MirrorRow, MirrorSchemaRefused, check_schema_owner, mirror_target,
                     sync_mirror)
from .settings import (CONFLICT, DRIFTED, REJECTED, SERVER_LOGINS, RedisPeer, SettingsResult,
                       apply_settings, contested_settings)
from .tables import (DesiredRecord, ObservedRecord, WriteRecord, delete_record, desired_record,
                     observe_record, plan_record, record_owner, write_record)
from .usage import forget, measure_cache, measurement_due

REDIS_READY = "RedisReady"
TABLES_READY = "TablesReady"
MIRROR_TABLE = "perf_operator.tenant_limits"
#: The RedisReady reason once the settings are in Redis's config file too: a profile whose
#: last pass ended otherwise gets one CONFIG REWRITE even when no value changed.
SETTINGS_PERSISTED = "SettingsPersisted"
#: How long a record or mirror row left at a former location is retried before it is given up
#: (Event ``StaleTableAbandoned``): a Redis decommissioned with the move is not waited for.
STALE_RETRY_SECONDS = 24 * 3600.0


def redis_peer(namespace: str, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
               ) -> RedisPeer | None:
    """A profile's claim on its Redis server's CONFIG, for the handlers' index; None when it
    sets nothing: no Redis section, paused, being deleted, or a spec the operator rejects."""
    if (not spec.get("redis") or spec.get("paused") or meta.get("deletionTimestamp")
            or spec.get("targetRef")):
        # A PerformanceTarget's server has one settings owner (its serverSettingsOwner):
        # its profiles never contest CONFIG with one another.
        return None
    try:
        model = PerformanceProfileSpec.model_validate(dict(spec))
    except pydantic.ValidationError:
        return None
    if model.redis is None or semantic_errors(model):
        return None
    connection = model.redis.connection
    return RedisPeer(namespace=namespace, name=name, created=meta.get("creationTimestamp"),
                     host=connection.host, port=connection.port,
                     settings={k: v for k, v in model.redis.settings.items()
                               if k in REDIS_ALLOWED_SETTINGS})


async def reconcile_profile(ctx: ProfileContext) -> Outcome | None:
    """Apply ``spec.redis.settings`` and report each parameter in ``status.redis.settings``."""
    spec = ctx.spec.redis
    if spec is None:
        return None
    previous = (ctx.status.get("redis") or {}).get("settings") or []
    persisted_before = _condition_reason(ctx.status, REDIS_READY) == SETTINGS_PERSISTED
    me = RedisPeer(namespace=ctx.namespace, name=ctx.name, created=ctx.created,
                   host=spec.connection.host, port=spec.connection.port,
                   settings=dict(spec.settings))

    async def apply(redis: Redis) -> SettingsResult:
        server_id = SERVER_LOGINS[me.owner] = await _server_id(redis)
        contested = contested_settings(me, ctx.redis_peers, SERVER_LOGINS, server_id)
        return await apply_settings(redis, dict(spec.settings), previous,
                                    persist=spec.persist_settings,
                                    persisted_before=persisted_before, events=ctx.events,
                                    contested=contested)

    try:
        result = await with_client(RedisTarget.from_spec(ctx.namespace, spec.connection), apply)
    except SecretError as err:
        SERVER_LOGINS[me.owner] = None
        return Outcome(REDIS_READY, False, err.reason, str(err))
    except RedisError as err:
        SERVER_LOGINS[me.owner] = None
        return Outcome(REDIS_READY, False, "RedisUnavailable", scrub(err))
    status = {"redis": {"settings": result.statuses}}
    if result.rewrite_error:
        return Outcome(REDIS_READY, False, "ConfigRewriteFailed", result.rewrite_error, status)
    rejected = [s["message"] for s in result.statuses if s["state"] == REJECTED]
    if rejected:
        return Outcome(REDIS_READY, False, "SettingsRejected", "; ".join(rejected), status)
    conflicts = [s["message"] for s in result.statuses if s["state"] == CONFLICT]
    if conflicts:
        return Outcome(REDIS_READY, False, "SettingsConflict", "; ".join(conflicts), status)
    drifted = [s["message"] for s in result.statuses if s["state"] == DRIFTED]
    if drifted:
        return Outcome(REDIS_READY, False, "SettingsDrifted", "; ".join(drifted), status)
    if spec.persist_settings:
        return Outcome(REDIS_READY, True, SETTINGS_PERSISTED,
                       f"{len(result.statuses)} Redis settings applied and persisted with "
                       f"CONFIG REWRITE", status)
    return Outcome(REDIS_READY, True, "SettingsApplied",
                   f"{len(result.statuses)} Redis settings applied", status)


async def forget_profile(ctx: ProfileContext) -> None:
    """The profile is deleted: its login no longer counts in settings conflicts."""
    SERVER_LOGINS.pop(f"{ctx.namespace}/{ctx.name}", None)


async def reconcile_tenant(ctx: TenantContext) -> Outcome | None:
    """Write the tenant's limits record (and its PostgreSQL mirror when the profile has a
    database), and report the record and where it is in ``status.table`` and the cache use in
    ``status.cache``. When the tenant has moved (another profile, keyPrefix, Redis or
    database), delete what it left at the location the status reports, if this TenantQuota
    owns it."""
    spec = ctx.profile.redis
    table = ctx.status.get("table") or {}
    if spec is None:
        return await _leave_tables(ctx, table)
    desired = desired_record(spec.key_prefix, ctx.limits, _owner(ctx), ctx.created)
    if ctx.senior_claimant is not None:
        return _conflict(ctx, desired, ctx.senior_claimant, {})
    reported_version = int(table.get("version") or 0)
    previous_cache = ctx.status.get("cache")

    async def sync(redis: Redis) -> tuple[ObservedRecord, WriteRecord | None, dict[str, Any]]:
        record = await observe_record(redis, desired.key)
        writes = plan_record(desired, record, reported_version)
        for step in writes:
            record = await write_record(redis, desired, step)
        if previous_cache and not measurement_due(spec.key_prefix, ctx.limits.tenant_id):
            cache = previous_cache
        else:
            usage = await measure_cache(redis, spec.key_prefix, ctx.limits.tenant_id)
            cache = {"keys": usage.keys, "memoryBytes": usage.memory_bytes,
                     "sampled": usage.sampled}
        return record, (writes[0] if writes else None), cache

    try:
        record, write, cache_use = await with_client(
            RedisTarget.from_spec(ctx.namespace, spec.connection), sync)
    except SecretError as err:
        return Outcome(TABLES_READY, False, err.reason, str(err))
    except RedisError as err:
        return Outcome(TABLES_READY, False, "RedisUnavailable", scrub(err))
    cache = {"cache": {**cache_use, "quotaBytes": ctx.limits.cache.quota_bytes}}
    if record.owner != desired.owner:
        return _conflict(ctx, desired, record.owner, cache)
    here = RecordPlace(desired.key, spec.connection)
    reported = _record_place(table)
    # A record missing at a new location is a move (reported by TableMoved), not a restore.
    _report_write(ctx, desired, write, record,
                  reported_version if reported is None or reported.spot == here.spot else 0)
    message = f"limits record {desired.key} at version {record.version}"
    problem = None
    row: RowPlace | None = None
    if ctx.profile.database is not None:
        row = RowPlace(ctx.profile_name, ctx.profile.database.connection)
        problem = await _mirror(ctx, desired, record)
        if not problem:
            message += f", mirrored in {MIRROR_TABLE}"
    # The old mirror row goes only once the new one is written: until then it stays reported.
    mirror = (row.status() if row else None) if not problem else table.get("mirror")
    moved, stale = await _delete_leftovers(ctx, table, here, row, row_settled=not problem)
    status = {"table": {"version": record.version, "writtenAt": record.written_at,
                        "hash": record.digest, "profile": ctx.profile_name, **here.status(),
                        "mirror": mirror, "staleRecords": stale or None}, **cache}
    if moved:
        ctx.events.normal("TableMoved", f"the tenant's limits are now in {here.describe()} "
                                        f"(profile {ctx.profile_name}); " + "; ".join(moved))
    message += "".join(f"; {_stale_note(entry)}" for entry in stale)
    if problem:
        return Outcome(TABLES_READY, False, problem[0], f"{message}; {problem[1]}", status)
    return Outcome(TABLES_READY, True, "TablesWritten", message, status)


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
                                  spec.connection))
        if ctx.profile.database is not None:
            places.append(RowPlace(ctx.profile_name, ctx.profile.database.connection))
    leftovers, abandoned = plan_leftovers(table, None, None, row_settled=True,
                                          now=datetime.datetime.now(datetime.UTC))
    places += [item.place for item in leftovers + abandoned
               if item.place.spot not in {p.spot for p in places}]
    errors = []
    for place in places:
        try:
            await _delete_place(ctx, place, None, None)
        except _UNREACHABLE as err:
            errors.append(f"{place.describe()}: {_error_text(err)}")
    if errors:
        raise RuntimeError("not deleted: " + "; ".join(errors))


# ---------------------------------------------------------------- where a tenant's tables are

@dataclass(frozen=True)
class RecordPlace:
    """Where a limits record is: a key, on the Redis a profile's connection reaches."""

    key: str
    connection: RedisConnection

    @property
    def spot(self) -> tuple[str, ...]:
        """What makes two places the same (the Secret and TLS only say how to log in)."""
        c = self.connection
        return ("record", c.host.lower().rstrip("."), str(c.port), str(c.db), self.key)

    def describe(self) -> str:
        c = self.connection
        return f"record {self.key} on Redis {c.host}:{c.port}/{c.db}"

    def status(self) -> dict[str, Any]:
        return {"key": self.key, "redis": _dump(self.connection)}


@dataclass(frozen=True)
class RowPlace:
    """Where a mirror row is: the profile it is filed under, in a database."""

    profile: str
    connection: PostgresConnection

    @property
    def spot(self) -> tuple[str, ...]:
        c = self.connection
        return ("row", self.profile, c.host.lower().rstrip("."), str(c.port), c.database)

    def describe(self) -> str:
        c = self.connection
        return (f"mirror row of profile {self.profile} in database {c.database} on "
                f"{c.host}:{c.port}")

    def status(self) -> dict[str, Any]:
        return {"profile": self.profile, "connection": _dump(self.connection)}


@dataclass(frozen=True)
class Leftover:
    """A record or mirror row at a location the tenant has left, deleted if the tenant owns
    it; ``since`` is when that first failed (a stale record the status lists)."""

    place: RecordPlace | RowPlace
    since: str | None = None


def plan_leftovers(table: Mapping[str, Any], record: RecordPlace | None, row: RowPlace | None,
                   *, row_settled: bool, now: datetime.datetime
                   ) -> tuple[list[Leftover], list[Leftover]]:
    """What the tenant left behind, from its reported ``status.table``: the record and mirror
    row it reports where they differ from the desired ``record`` and ``row`` (the mirror row
    only once the desired row is written: ``row_settled``), and the stale records it lists,
    but never a place that is desired again (the tenant moved back). Returns (to delete, to
    give up: failing for ``STALE_RETRY_SECONDS`` already). A location the status does not say
    (written by an older operator, or edited into nonsense) is not guessed at."""
    candidates: list[Leftover] = []
    if (reported := _record_place(table)) is not None:
        candidates.append(Leftover(reported))
    if row_settled and (reported_row := _row_place(table.get("mirror"))) is not None:
        candidates.append(Leftover(reported_row))
    for entry in table.get("staleRecords") or []:
        place = _record_place(entry) or _row_place(entry.get("mirror"))
        if place is not None:
            candidates.append(Leftover(place, entry.get("since")))
    seen = {p.spot for p in (record, row) if p is not None}
    todo: list[Leftover] = []
    abandoned: list[Leftover] = []
    for item in candidates:
        if item.place.spot in seen:
            continue
        seen.add(item.place.spot)
        since = _parse_time(item.since)
        if since is not None and (now - since).total_seconds() >= STALE_RETRY_SECONDS:
            abandoned.append(item)
        else:
            todo.append(item)
    return todo, abandoned


def leftovers_pending(table: Mapping[str, Any] | None, profile_name: str, profile: Any,
                      tenant_id: str) -> bool:
    """Whether a tenant's reported ``status.table`` leaves something to delete at a former
    location (it moved, or ``staleRecords`` wait for a retry): such a tenant needs its full
    reconcile even when its record at the profile's location is current. ``profile`` is the
    PerformanceProfileSpec it now uses."""
    if not table:
        return False
    if table.get("staleRecords"):
        return True
    spec = profile.redis
    if spec is None:
        return bool(table.get("key") or table.get("mirror"))
    record = RecordPlace(record_key(spec.key_prefix, tenant_id), spec.connection)
    row = (RowPlace(profile_name, profile.database.connection)
           if profile.database is not None else None)
    todo, abandoned = plan_leftovers(table, record, row, row_settled=True,
                                     now=datetime.datetime.now(datetime.UTC))
    return bool(todo or abandoned)


def _record_place(entry: Mapping[str, Any]) -> RecordPlace | None:
    if not entry.get("key") or not entry.get("redis"):
        return None
    try:
        return RecordPlace(entry["key"], RedisConnection.model_validate(entry["redis"]))
    except pydantic.ValidationError:
        return None


def _row_place(entry: Mapping[str, Any] | None) -> RowPlace | None:
    if not entry or not entry.get("profile") or not entry.get("connection"):
        return None
    try:
        return RowPlace(entry["profile"], PostgresConnection.model_validate(entry["connection"]))
    except pydantic.ValidationError:
        return None


def _dump(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _parse_time(text: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNREACHABLE = (SecretError, RedisError, DatabaseUnavailable, psycopg.Error, OSError)


def _error_text(err: BaseException) -> str:
    if isinstance(err, RedisError):
        return f"Redis unavailable: {scrub(err)}"
    if isinstance(err, (DatabaseUnavailable, psycopg.Error)):
        return f"database unavailable: {scrub(err)}"
    return scrub(err)


def _stale_note(entry: dict[str, Any]) -> str:
    place = _record_place(entry) or _row_place(entry.get("mirror"))
    what = place.describe() if place else "an old location"
    return f"old {what} not deleted yet ({entry['message']}), retried on every resync"


async def _delete_leftovers(ctx: TenantContext, table: Mapping[str, Any],
                            record: RecordPlace | None, row: RowPlace | None, *,
                            row_settled: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """Delete what the tenant left at former locations. Returns what was done (for the
    ``TableMoved`` Event) and the stale records to keep reporting (``status.table``)."""
    now = datetime.datetime.now(datetime.UTC)
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
                     "since": item.since or _now(), "message": _error_text(err)}
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
    owner = _owner(ctx)
    if isinstance(place, RecordPlace):
        target = RedisTarget.from_spec(ctx.namespace, place.connection)
        if (record is not None and record.key == place.key
                and record.connection.db == place.connection.db):
            here = await with_client(RedisTarget.from_spec(ctx.namespace, record.connection),
                                     _server_id)
            if await with_client(target, _server_id) == here:
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
        target = await mirror_target(ctx.namespace, place.profile, place.connection)
        if (row is not None and row.profile == place.profile
                and row.connection.database == place.connection.database):
            here = await mirror_target(ctx.namespace, row.profile, row.connection)
            if await _database_id(target) == await _database_id(here):
                return None
        found = await _delete_row(target, ctx, place, owner)
    if found is None:
        return f"no old {place.describe()} to delete"
    if found != owner:
        return f"left the old {place.describe()} alone: it belongs to TenantQuota {found}"
    return f"deleted the old {place.describe()}"


async def _server_id(redis: Redis) -> str:
    """The Redis process (run_id): two connections reach the same keys when it and the db are
    the same, whatever host names they use."""
    return (await redis.info("server"))["run_id"]


async def _database_id(target: DatabaseTarget) -> tuple[Any, ...]:
    """The database a pool reaches, whatever host name it used."""
    async with target.connection() as conn:
        cursor = await conn.execute("SELECT pg_postmaster_start_time()::text, "
                                    "current_database()")
        return tuple(await cursor.fetchone() or ())


async def _delete_row(target: DatabaseTarget, ctx: TenantContext, place: RowPlace, owner: str
                      ) -> str | None:
    """Delete the tenant's mirror row at ``place`` if ``owner`` owns it; the row's owner
    before (None: no row)."""
    key = (ctx.namespace, place.profile, ctx.limits.tenant_id)
    try:
        async with target.connection() as conn:
            await check_schema_owner(conn)
            cursor = await conn.execute(
                "WITH found AS (SELECT owner FROM perf_operator.tenant_limits WHERE "
                "profile_namespace = %s AND profile_name = %s AND tenant_id = %s), "
                "gone AS (DELETE FROM perf_operator.tenant_limits WHERE profile_namespace = %s "
                "AND profile_name = %s AND tenant_id = %s AND owner = %s) "
                "SELECT owner FROM found", (*key, *key, owner))
            found = await cursor.fetchone()
    except psycopg.errors.UndefinedTable:
        return None  # never mirrored there
    return found[0] if found else None


async def _leave_tables(ctx: TenantContext, table: Mapping[str, Any]) -> Outcome | None:
    """The tenant's profile has no Redis section (any more): delete what the status reports.
    None once there is nothing left, so the condition goes away."""
    if not table:
        return None
    moved, stale = await _delete_leftovers(ctx, table, None, None, row_settled=True)
    note = f"profile {ctx.profile_name} has no redis section: no limits record"
    if moved:
        ctx.events.normal("TableMoved", f"{note}; " + "; ".join(moved))
    if not stale:
        return Outcome(TABLES_READY, True, "NoTables", note, {"table": None})
    status = {"table": {**table, "profile": None, "key": None, "redis": None, "mirror": None,
                        "staleRecords": stale}}
    return Outcome(TABLES_READY, True, "NoTables",
                   note + "".join(f"; {_stale_note(entry)}" for entry in stale), status)


def _conflict(ctx: TenantContext, desired: DesiredRecord, owner: str | None,
              status: dict[str, Any]) -> Outcome:
    """This TenantQuota is not the oldest claiming the record: it writes nothing."""
    return Outcome(TABLES_READY, False, "TableConflict",
                   f"{desired.key} belongs to TenantQuota {owner}, the oldest TenantQuota "
                   f"giving tenantId {ctx.limits.tenant_id!r} under this key prefix on this "
                   f"Redis; this one writes nothing", status)


def _owner(ctx: TenantContext) -> str:
    return record_owner(ctx.namespace, ctx.name)


def _mirror_row(ctx: TenantContext, desired: DesiredRecord, version: int) -> MirrorRow:
    return MirrorRow(ctx.namespace, ctx.profile_name, ctx.limits.tenant_id, desired.owner,
                     version, desired.digest)


async def _mirror(ctx: TenantContext, desired: DesiredRecord, record: ObservedRecord
                  ) -> tuple[str, str] | None:
    """Sync the mirror row; (reason, message) when that failed."""
    try:
        target = await mirror_target(ctx.namespace, ctx.profile_name,
                                     ctx.profile.database.connection)
        other_owner = await sync_mirror(target, _mirror_row(ctx, desired, record.version),
                                        desired, record)
    except SecretError as err:
        return err.reason, str(err)
    except MirrorSchemaRefused as err:
        return "MirrorSchemaNotOwned", f"mirror in {MIRROR_TABLE} not written: {err}"
    except (DatabaseUnavailable, psycopg.Error) as err:
        return "MirrorFailed", f"mirror in {MIRROR_TABLE} not written: {scrub(err)}"
    if other_owner:
        return "MirrorConflict", (f"the row of tenant {ctx.limits.tenant_id!r} in {MIRROR_TABLE} "
                                  f"belongs to TenantQuota {other_owner}")
    return None


def _report_write(ctx: TenantContext, desired: DesiredRecord, write: WriteRecord | None,
                  record: ObservedRecord, reported_version: int) -> None:
    """Events for a restored or changed record. The first write of a new tenant has none: its
    status says it, and an Event per tenant would be one more API write each for 10,000."""
    if write is None:
        return
    if write.reason == "Missing" and reported_version:
        ctx.events.warning("TableRestored",
                           f"limits record {desired.key} was missing (Redis lost its data?); "
                           f"restored as version {record.version}")
    elif write.reason == "TakenOver":
        ctx.events.warning("TableTakenOver",
                           f"limits record {desired.key} was written by a younger TenantQuota "
                           f"with the same tenantId; this one is older and owns it (version "
                           f"{record.version})")
    elif write.reason == "Changed":
        ctx.events.normal("TableUpdated",
                          f"limits record {desired.key} updated to version {record.version}")


def _condition_reason(status: dict[str, Any], type_: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_:
            return condition.get("reason")
    return None
