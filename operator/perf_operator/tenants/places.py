"""Where a tenant's tables are (its limits record on a Redis, its mirror row in a database),
and what it left behind when it moved: pure planning, read from the tenant's ``status.table``.
The deletions themselves are ``tenants.cleanup``'s.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from ..api.profile import PostgresConnection, RedisConnection
from ..ratelimit.layout import record_key

#: How long a record or mirror row left at a former location is retried before it is given up
#: (Event ``StaleTableAbandoned``): a Redis decommissioned with the move is not waited for.
STALE_RETRY_SECONDS = 24 * 3600.0


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
        return {"key": self.key, "redis": dump(self.connection)}


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
        return {"profile": self.profile, "connection": dump(self.connection)}


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
    if (reported := record_place(table)) is not None:
        candidates.append(Leftover(reported))
    if row_settled and (reported_row := row_place(table.get("mirror"))) is not None:
        candidates.append(Leftover(reported_row))
    for entry in table.get("staleRecords") or []:
        place = record_place(entry) or row_place(entry.get("mirror"))
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


def record_place(entry: Mapping[str, Any]) -> RecordPlace | None:
    if not entry.get("key") or not entry.get("redis"):
        return None
    try:
        return RecordPlace(entry["key"], RedisConnection.model_validate(entry["redis"]))
    except pydantic.ValidationError:
        return None


def row_place(entry: Mapping[str, Any] | None) -> RowPlace | None:
    if not entry or not entry.get("profile") or not entry.get("connection"):
        return None
    try:
        return RowPlace(entry["profile"], PostgresConnection.model_validate(entry["connection"]))
    except pydantic.ValidationError:
        return None


def dump(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _parse_time(text: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
