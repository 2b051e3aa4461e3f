"""PostgreSQL: makes a PerformanceProfile's ``database`` section true on a real server.

``reconcile_profile`` opens (or reuses) the profile's pool, reconciles the declared indexes
(``index_builds``: observe, plan in ``indexes``, launch background jobs) and the parameters
(``settings``), judges every index of the database (``health``: reported, never acted on),
and reports the ``DatabaseReady`` condition with ``status.database`` in the shape of
``api.status.DatabaseStatus``. Index builds outlive the reconcile that starts them;
their phases show up in the following reconciles.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import psycopg
import pydantic

from ..api.conditions import (DATABASE_ERROR, DATABASE_IN_SYNC, DATABASE_READY,
                              DATABASE_UNAVAILABLE, INDEX_BUILDING, INDEX_CONFLICT, INDEX_FAILED,
                              INDEX_INVALID, INDEX_PENDING, SETTING_CONFLICT, SETTING_OVERRIDDEN,
                              SETTING_REJECTED)
from ..api.optimization import adjustments
from ..api.profile import DatabaseSpec, Index
from ..reconcile import Outcome, ProfileContext
from ..scrub import scrub
from ..status import steady_reading
from ..secrets import SecretError
from .connect import (DatabaseGone, DatabaseUnavailable, close_profile_pools,
                      describe_unreachable, forget_target, target_for_profile, unreachable)
from .health import health_status, index_health, new_findings, observe_index_facts
from .index_builds import BuildOptions, reconcile_indexes, wait_for_jobs
from .indexes import (IndexDefinition, IndexReport, Phase, RefusedIndex,
                      definition_from_spec)
from .settings import PostgresPeer, SettingReport, State, reconcile_settings

CONDITION = DATABASE_READY
#: A profile that cannot log in claims no parameter on any server (its recorded identity goes).
_NO_LOGIN = {"database": {"serverId": None}}
#: How soon to look again while a job runs (the resync timer is the fallback).
REQUEUE_WHILE_BUILDING_SECONDS = 1.0

__all__ = ["CONDITION", "cleanup_profile", "postgres_peer", "reconcile_profile"]


def postgres_peer(namespace: str, name: str, meta: Mapping[str, Any], spec: Any,
                  status: Mapping[str, Any]) -> PostgresPeer | None:
    """A profile's claim on its server's System-scoped parameters, for the handlers' index:
    the server is the ``system_identifier`` its status recorded at its last login (absent
    while it cannot log in: such a profile claims nothing). None when it claims nothing."""
    server = ((status or {}).get("database") or {}).get("serverId")
    if spec.database is None or spec.paused or meta.get("deletionTimestamp") or not server \
            or spec.database.settings.scope != "System":
        return None
    return PostgresPeer(namespace=namespace, name=name, created=meta.get("creationTimestamp"),
                        server=server, parameters=dict(spec.database.settings.parameters))


async def reconcile_profile(ctx: ProfileContext) -> Outcome | None:
    database = ctx.spec.database
    if database is None:
        await close_profile_pools(ctx.namespace, ctx.name)  # the section was removed
        return None
    try:
        target = await target_for_profile(ctx.namespace, ctx.name, database.resolved_connection,
                                          refresh=True)
    except SecretError as err:
        return Outcome(CONDITION, False, err.reason, str(err), status=_NO_LOGIN)
    except DatabaseUnavailable as err:
        return Outcome(CONDITION, False, DATABASE_UNAVAILABLE, str(err), status=_NO_LOGIN)
    previous = ctx.status.get("database") or {}
    declared = desired_indexes(ctx, database)
    withdrawn = ({entry.get("name") for entry in previous.get("indexes") or []}
                 - {index.name for index in declared})
    try:
        indexes = await reconcile_indexes(target, declared,
                                          BuildOptions.from_spec(database), ctx.events,
                                          withdrawn=withdrawn)
        claim = PostgresPeer(namespace=ctx.namespace, name=ctx.name, created=ctx.created,
                             server=None, parameters={})
        settings, server = await reconcile_settings(
            target, database.settings, previous.get("settings") or [], ctx.events,
            claim=claim, peers=ctx.postgres_peers)
        async with target.connection() as conn:
            facts = await observe_index_facts(conn)
    except psycopg.Error as err:
        if unreachable(err):
            # A fresh pool at the next resync: this one may be backing off its reconnects.
            await forget_target(target)
            return Outcome(CONDITION, False, DATABASE_UNAVAILABLE,
                           describe_unreachable(target.key))
        return Outcome(CONDITION, False, DATABASE_ERROR, scrub(err).strip())
    reports = indexes.plan.reports
    _announce_conflicts(reports, previous.get("indexes") or [], ctx.events)
    judged = database.index_health
    health = health_status(index_health(facts,
                                        unused_min_age_seconds=judged.unused_after_days * 86400,
                                        bloat_ratio=judged.bloat_percent / 100))
    fresh = new_findings(health, previous.get("indexHealth"))
    if fresh:
        ctx.events.warning("IndexHealth", "index health: " + "; ".join(fresh))
    ready, reason, message = summarise(reports, settings, indexes.plan.released)
    status = {"database": {
        "indexes": steady_index_readings([r.as_status() for r in reports],
                                         previous.get("indexes") or []),
        "settings": [s.as_status() for s in settings],
        "readyIndexes": sum(1 for r in reports if r.phase is Phase.READY),
        "building": building_summary(reports) or None,  # None removes it
        "serverId": server,
        "indexHealth": health,
    }}
    busy = indexes.running or indexes.plan.jobs
    return Outcome(CONDITION, ready, reason, message, status=status,
                   requeue_after=REQUEUE_WHILE_BUILDING_SECONDS if busy else None)


async def cleanup_profile(ctx: ProfileContext) -> None:
    """The profile is being deleted: its running jobs are cancelled, then indexPrunePolicy is
    applied to every index it owns (Delete drops them concurrently, Retain removes the marker,
    handing them to the user) and its leftovers are dropped. Parameters keep their values.
    Raises when that could not be finished (database unreachable, a DDL step failed), so the
    delete handler retries. Either way the profile's pools are closed: a retry (or the
    deferred replay) opens its own."""
    database = ctx.spec.database
    try:
        if database is not None:
            await _drop_or_release_indexes(ctx, database)
    except DatabaseGone:
        pass  # its indexes went with the database (also when a pool was open before the drop)
    finally:
        await close_profile_pools(ctx.namespace, ctx.name)


async def _drop_or_release_indexes(ctx: ProfileContext, database: DatabaseSpec) -> None:
    target = await target_for_profile(ctx.namespace, ctx.name, database.resolved_connection)
    await wait_for_jobs(target, cancel=True)
    names = [index.name for index in desired_indexes(ctx, database)]
    options = BuildOptions.from_spec(database)
    await reconcile_indexes(target, [], options, ctx.events, withdrawn=names)
    await wait_for_jobs(target)
    remaining = await reconcile_indexes(target, [], options, ctx.events, withdrawn=names)
    if remaining.plan.jobs:
        await wait_for_jobs(target)
        raise RuntimeError("indexes of the profile are still being dropped or released: "
                           + ", ".join(".".join(job.key) for job in remaining.plan.jobs))


def desired_indexes(ctx: ProfileContext, database: DatabaseSpec) -> list[Any]:
    """The indexes the profile wants: those the spec declares, then those the optimizer added
    (``status.optimization``, Auto mode with allowIndexCreation), built and marked the same
    way, their marker flagged ``automatic``. A declared index of the same name wins."""
    declared = database.indexes
    names = {index.name for index in declared}
    added: list[Any] = []
    for index in adjustments(ctx.status).indexes:
        if index.name in names:
            continue
        try:
            definition = definition_from_spec(Index.model_validate(index.index_spec()))
        except pydantic.ValidationError as err:
            definition = RefusedIndex(name=index.name, schema=index.schema_,
                                      error=f"automatic index: {err.errors()[0]['msg']}")
        added.append(replace(definition, automatic=True)
                     if isinstance(definition, IndexDefinition) else definition)
    return [*declared, *added]


def building_summary(reports: Sequence[IndexReport]) -> str:
    """``orders_idx 42%, users_idx 3%``: the builds running, short enough for a column."""
    return ", ".join(f"{r.name} {r.progress.percent}%" for r in reports
                     if r.phase is Phase.BUILDING and r.progress is not None)


def steady_index_readings(indexes: Sequence[dict[str, Any]],
                          previous: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The indexes' status with their readings (``sizeBytes``, ``scans``: they move with
    every query the application runs) kept at their last written values while they stay
    within ``status.READING_TOLERANCE``: a used index costs no status write per resync."""
    before = {entry.get("name"): entry for entry in previous}
    steady = []
    for entry in indexes:
        old = before.get(entry["name"]) or {}
        entry = dict(entry)
        for key in ("sizeBytes", "scans"):
            value = steady_reading(old.get(key), entry.get(key))
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = int(value)
        steady.append(entry)
    return steady


def summarise(indexes: Sequence[IndexReport], settings: Sequence[SettingReport],
              released: Sequence[str]) -> tuple[bool, str, str]:
    """(ready, reason, message) of DatabaseReady. Ready means every index is Ready and every
    parameter is recorded where the scope keeps it (PendingRestart counts: the operator did
    all it may; the message lists what waits for a restart). The reason is the first failure;
    only when nothing failed is it the work under way (IndexBuilding, IndexPending), so that
    a rejected setting is not hidden behind a long build."""
    problems: list[tuple[str, str]] = []
    by_phase: dict[Phase, list[IndexReport]] = {}
    for report in indexes:
        by_phase.setdefault(report.phase, []).append(report)

    def index_problems(*phases: tuple[Phase, str]) -> None:
        for phase, reason in phases:
            for report in by_phase.get(phase, ()):
                detail = report.last_error if phase is Phase.FAILED and report.last_error \
                    else report.message
                problems.append((reason, f"index {report.name} {phase.value}: {detail}"))

    index_problems((Phase.CONFLICT, INDEX_CONFLICT), (Phase.FAILED, INDEX_FAILED),
                   (Phase.INVALID, INDEX_INVALID))
    for setting in settings:
        if setting.state is State.REJECTED:
            problems.append((SETTING_REJECTED, f"{setting.name}: {setting.message}"))
        elif setting.state is State.CONFLICT:
            problems.append((SETTING_CONFLICT, f"{setting.name}: {setting.message}"))
        elif setting.overridden:
            problems.append((SETTING_OVERRIDDEN, f"{setting.name}: {setting.message}"))
    index_problems((Phase.BUILDING, INDEX_BUILDING), (Phase.PENDING, INDEX_PENDING))
    notes = [f"{len(by_phase.get(Phase.READY, ()))}/{len(indexes)} indexes ready",
             f"{sum(1 for s in settings if s.state is not State.REJECTED)}/{len(settings)} "
             f"parameters set"]
    pending = [s.name for s in settings if s.state is State.PENDING_RESTART]
    if pending:
        notes.append("waiting for a PostgreSQL restart: " + ", ".join(pending))
    if released:
        notes.append("released (indexPrunePolicy Retain): " + ", ".join(released))
    summary = "; ".join(notes)
    if problems:
        return False, problems[0][0], "; ".join([m for _, m in problems] + [summary])
    return True, DATABASE_IN_SYNC, summary


def _announce_conflicts(reports: Sequence[IndexReport],
                        previous: Sequence[Mapping[str, Any]], events: Any) -> None:
    """A Warning Event when an index enters Conflict (not on every resync while it stays)."""
    before = {entry.get("name"): entry.get("phase") for entry in previous}
    for report in reports:
        if report.phase is Phase.CONFLICT and before.get(report.name) != Phase.CONFLICT.value:
            events.warning("IndexConflict", f"index {report.name}: {report.message}")
