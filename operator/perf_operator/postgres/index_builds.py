"""Declarative indexes, the executing part: observe the catalog, plan (``indexes.plan_indexes``)
and run each index's job as a background task.

A reconcile never waits for a build. It launches a job per index that needs one and returns;
later reconciles report the job's phase (Pending while it waits for one of the database's
``maxConcurrentBuilds`` slots, Building while it runs) until the job is done and the catalog
shows the result. Jobs are tracked per (database, schema, index), so a second reconcile never
starts a second build of the same index, and slots are per database, so a slow build on one
database never holds up another profile's or tenant's database.

Jobs on the same table run one after another, and wait for their table before they take a
slot: ``CREATE INDEX CONCURRENTLY`` and ``DROP INDEX CONCURRENTLY`` take a self-conflicting
lock on the table, so a second one would only wait inside the server (holding a slot, and
failing on ``lock_timeout`` when the first takes longer).

Each job runs on a dedicated autocommit connection (``CREATE INDEX CONCURRENTLY`` refuses to run
in a transaction) with ``lock_timeout`` from the spec, so DDL never queues behind a long
transaction while blocking others. A build has an operator-side deadline (buildTimeoutSeconds):
when it passes, the backend is cancelled with ``pg_cancel_backend``; the INVALID index that
leaves is dropped by the next plan. A failed job is retried with exponential back-off, or at
once when the definition changes.

``python -m perf_operator.postgres`` runs the same reconcile loop against a database given on
the command line, without Kubernetes; the crash tests SIGKILL it mid-build.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from ..config import CONFIG
from ..scrub import scrub
from .connect import APPLICATION_NAME, DatabaseTarget, one_row
from .indexes import (BuildFailure, BuildIndex, BuildProgress, CancelBackend, Catalog,
                      DropIndex, DropReason, IndexDefinition, IndexPlan, Job, MarkIndex, ObservedIndex, Phase,
                      RefusedIndex, RenameIndex, Step, definition_from_spec, plan_indexes,
                      step_statement, temporary_name)

log = logging.getLogger(__name__)

#: The server-side statement_timeout of a build is the operator's deadline plus this margin,
#: so the server only stops a build itself when the operator is gone.
SERVER_DEADLINE_MARGIN_SECONDS = 60
#: Longest wait before a failed job is tried again.
MAX_RETRY_SECONDS = 600.0


class Events(Protocol):
    """What jobs report through: ``reconcile.EventRecorder`` or the command line's logger."""

    def normal(self, reason: str, message: str) -> None: ...

    def warning(self, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    """The spec.database knobs the index executor honours."""

    max_concurrent_builds: int = 1
    lock_timeout_seconds: float = 5
    build_timeout_seconds: float = 3600
    prune: bool = False

    @classmethod
    def from_spec(cls, database: Any) -> BuildOptions:
        return cls(max_concurrent_builds=database.max_concurrent_builds,
                   lock_timeout_seconds=database.lock_timeout_seconds,
                   build_timeout_seconds=database.build_timeout_seconds,
                   prune=database.index_prune_policy == "Delete")


class BuildTimeout(Exception):
    """A build ran past its deadline and was cancelled."""


class BuildSlots:
    """At most ``limit`` builds at a time on one database. A Condition rather than a
    Semaphore so that a changed ``maxConcurrentBuilds`` applies without a restart."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._changed = asyncio.Condition()

    async def resize(self, limit: int) -> None:
        async with self._changed:
            self.limit = limit
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def slot(self):
        async with self._changed:
            await self._changed.wait_for(lambda: self.active < self.limit)
            self.active += 1
        try:
            yield
        finally:
            async with self._changed:
                self.active -= 1
                self._changed.notify_all()


@dataclass
class RunningJob:
    job: Job
    owner: str
    phase: Phase
    task: asyncio.Task | None = None


Database = tuple[str, int, str]
JobKey = tuple[Database, str, str]

@dataclass(frozen=True)
class OwnedFailure:
    """A build failure and the profile whose index it was (``TargetKey.owner``)."""

    owner: str
    failure: BuildFailure


#: Nothing below outlives what it is about: a job leaves ``_jobs`` when it ends; a failure
#: leaves ``_failures`` when the index builds, or its profile stops declaring it (deleted
#: profiles declare nothing: ``forget_undeclared_failures``); slots and locks exist only while
#: a job or a plan holds them (weak values).
_jobs: dict[JobKey, RunningJob] = {}
_failures: dict[JobKey, OwnedFailure] = {}
_slots: weakref.WeakValueDictionary[Database, BuildSlots] = weakref.WeakValueDictionary()
_table_locks: weakref.WeakValueDictionary[tuple[Database, str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary())
_plan_locks: weakref.WeakValueDictionary[Database, asyncio.Lock] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class IndexesResult:
    plan: IndexPlan
    #: Jobs of this profile still running after the reconcile (launched now or earlier).
    running: int


async def reconcile_indexes(target: DatabaseTarget, declared: Sequence[Any],
                            options: BuildOptions, events: Events, *,
                            withdrawn: Collection[str] = ()) -> IndexesResult:
    """Observe, plan and launch jobs for a profile's declared indexes (api ``Index`` models
    or ready ``IndexDefinition``s; ``withdrawn``: names it declared until now). Returns at
    once; the jobs run on."""
    database = target.key.database
    owner = target.key.owner
    definitions = [d if isinstance(d, (IndexDefinition, RefusedIndex))
                   else definition_from_spec(d) for d in declared]
    slots = _slots.setdefault(database, BuildSlots(options.max_concurrent_builds))
    if slots.limit != options.max_concurrent_builds:
        await slots.resize(options.max_concurrent_builds)
    # One plan at a time per database: the set of running jobs must not change between
    # reading it and launching what the plan asks for.
    async with _plan_locks.setdefault(database, asyncio.Lock()):
        busy = {(schema, name): job.phase for (db, schema, name), job in _jobs.items()
                if db == database}
        catalog = await observe_catalog(target, definitions, withdrawn)
        forget_undeclared_failures(database, owner, definitions)
        failures = {(schema, name): owned.failure
                    for (db, schema, name), owned in _failures.items() if db == database}
        plan = plan_indexes(owner, definitions, catalog, busy=busy, failures=failures,
                            prune=options.prune, now=time.monotonic(),
                            withdrawn=withdrawn)
        for job in plan.jobs:
            _launch(target, job, options, slots, events)
    running = sum(1 for (db, _, _), job in _jobs.items() if db == database and job.owner == owner)
    return IndexesResult(plan=plan, running=running)


def forget_undeclared_failures(database: Database, owner: str,
                               declared: Sequence[IndexDefinition | RefusedIndex]) -> None:
    """Drop the remembered failures of ``owner``'s indexes on ``database`` that it no longer
    declares (all of them when it declares nothing: the profile is being deleted)."""
    names = {(d.schema, d.name) for d in declared}
    for key in [key for key, owned in _failures.items()
                if key[0] == database and owned.owner == owner and key[1:] not in names]:
        del _failures[key]


async def wait_for_jobs(target: DatabaseTarget, *, cancel: bool = False) -> None:
    """Until every job of this target's profile has finished, cancelling them first if asked
    (a cancelled build leaves an INVALID temporary index that the next plan drops)."""
    tasks = [job.task for (db, _, _), job in list(_jobs.items())
             if db == target.key.database and job.owner == target.key.owner and job.task]
    if cancel:
        for task in tasks:
            task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


# ------------------------------------------------------------------------------ observation

_CATALOG_QUERY = """
SELECT n.nspname, c.relname, t.relname, x.indisvalid, d.description,
       pg_relation_size(c.oid), coalesce(s.idx_scan, 0), p.pid, a.application_name,
       p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
FROM pg_index x
JOIN pg_class c ON c.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class t ON t.oid = x.indrelid
LEFT JOIN pg_description d
       ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = c.oid
LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = c.oid
LEFT JOIN pg_stat_activity a ON a.pid = p.pid
WHERE d.description LIKE 'perf-operator:%%'
   OR (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
   OR c.relname = ANY(%s::text[])
"""


async def observe_catalog(target: DatabaseTarget,
                          definitions: Sequence[IndexDefinition | RefusedIndex],
                          withdrawn: Collection[str] = ()) -> Catalog:
    """Every index carrying a marker, every index at a declared or temporary name (and at the
    temporary name of a withdrawn one, in any schema), and for ``adopt: true`` over an unowned
    valid index, whether the definitions match."""
    owner = target.key.owner
    schemas, names = [], []
    for d in definitions:
        for name in (d.name, temporary_name(owner, d.name)):
            schemas.append(d.schema)
            names.append(name)
    temporaries = [temporary_name(owner, name) for name in withdrawn]
    async with target.connection() as conn:
        rows = await (await conn.execute(_CATALOG_QUERY,
                                         (schemas, names, temporaries))).fetchall()
        indexes = {}
        for row in rows:
            index = ObservedIndex(schema=row[0], name=row[1], table=row[2], valid=row[3],
                                  comment=row[4], size_bytes=row[5], scans=row[6],
                                  builder_pid=row[7], builder_application=row[8],
                                  progress=BuildProgress(*row[9:14]) if row[7] else None)
            indexes[index.key] = index
        adoption = {}
        for d in definitions:
            existing = indexes.get((d.schema, d.name))
            if (isinstance(d, IndexDefinition) and d.adopt and existing is not None
                    and existing.marker is None and existing.valid
                    and existing.builder_pid is None):
                adoption[existing.key] = await _adoption_mismatch(conn, d, existing)
    return Catalog(indexes=indexes, adoption=adoption)


async def _adoption_mismatch(conn: psycopg.AsyncConnection, definition: IndexDefinition,
                             existing: ObservedIndex) -> str | None:
    """None when ``existing`` is exactly ``definition``, else how they differ.

    The declared index is created on an empty ``LIKE`` copy of the table (same column types
    and collations) inside a transaction that is always rolled back, and both definitions are
    compared as PostgreSQL prints them, so casts and parentheses it adds do not matter. The
    copy is made under ``SET LOCAL ROLE`` to the table's owner: it belongs to that role, and
    what the index's expressions run, they run with the rights of the role that owns the real
    table (as the real build does), never with the operator's login."""
    if existing.table != definition.table:
        return f"it is on table {existing.table}, not {definition.table}"
    probe = "perfop_adoption_probe"
    try:
        async with conn.transaction(force_rollback=True):
            cursor = await conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                (sql.Identifier(definition.schema, definition.table).as_string(conn),))
            (table_owner,) = await one_row(cursor)
            await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(table_owner)))
            await conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP")
                               .format(sql.Identifier(probe),
                                       sql.Identifier(definition.schema, definition.table)))
            await conn.execute(definition.create_statement(
                f"{probe}_index", concurrently=False, table=sql.Identifier(probe)))
            cursor = await conn.execute(
                "SELECT pg_get_indexdef(%s::regclass), pg_get_indexdef(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (f"pg_temp.{probe}_index", existing.schema, existing.name))
            wanted, actual = await one_row(cursor)
    except psycopg.Error as err:
        return f"the declared definition is not valid here: {scrub(err).strip()}"
    if _comparable(wanted) != _comparable(actual):
        return f"its definition is {actual!r}"
    return None


def _comparable(indexdef: str) -> tuple[bool, str]:
    """(unique, everything from USING on): the parts of ``pg_get_indexdef`` that describe the
    index rather than its name and table."""
    return indexdef.startswith("CREATE UNIQUE"), indexdef[indexdef.index(" USING "):]


# -------------------------------------------------------------------------------- execution

def _launch(target: DatabaseTarget, job: Job, options: BuildOptions, slots: BuildSlots,
            events: Events) -> None:
    key = (target.key.database, *job.key)
    if key in _jobs:
        return
    running = RunningJob(job=job, owner=target.key.owner,
                         phase=Phase.PENDING if job.builds else Phase.BUILDING)
    _jobs[key] = running
    running.task = asyncio.create_task(
        _run_job(target, running, options, slots, events),
        name=f"perf-operator index job {key[0][2]}.{job.key[0]}.{job.key[1]}")


async def _run_job(target: DatabaseTarget, running: RunningJob, options: BuildOptions,
                   slots: BuildSlots, events: Events) -> None:
    job = running.job
    key = (target.key.database, *job.key)
    queued = time.monotonic()
    build_seconds = waited_seconds = 0.0
    table_lock = _table_locks.setdefault((target.key.database, job.key[0], job.table),
                                         asyncio.Lock())
    try:
        async with (table_lock if job.locks_table else contextlib.nullcontext(),
                    slots.slot() if job.builds else contextlib.nullcontext()):
            running.phase = Phase.BUILDING
            waited_seconds = time.monotonic() - queued
            async with target.ddl_connection(
                    lock_timeout_ms=int(options.lock_timeout_seconds * 1000),
                    statement_timeout_ms=int((options.build_timeout_seconds
                                              + SERVER_DEADLINE_MARGIN_SECONDS) * 1000)) as conn:
                for step in job.steps:
                    started = time.monotonic()
                    await _execute(step, conn, target, options, events)
                    if isinstance(step, BuildIndex):
                        build_seconds = time.monotonic() - started
    except asyncio.CancelledError:
        raise
    except Exception as err:  # noqa: BLE001 - every failure is reported and retried
        message = scrub(err).strip()
        name = ".".join(job.key)
        if job.definition_hash is not None:
            owned = _failures.get(key)
            previous = owned.failure if owned else None
            attempts = previous.attempts + 1 if previous and \
                previous.definition_hash == job.definition_hash else 1
            delay = min(CONFIG.retry_backoff_seconds * 2 ** (attempts - 1), MAX_RETRY_SECONDS)
            _failures[key] = OwnedFailure(running.owner, BuildFailure(
                job.definition_hash, message, attempts, time.monotonic() + delay))
        events.warning("BuildFailed" if job.builds else "IndexJobFailed",
                       f"index {name}: {message}")
        log.warning("index job %s failed: %s", name, message)
    else:
        if job.definition_hash is not None:
            _failures.pop(key, None)
        if job.builds:
            # the build itself, not the wait for the table or a slot before it
            events.normal("BuildSucceeded", f"index {'.'.join(job.key)} built in "
                                            f"{build_seconds:.1f}s (after {waited_seconds:.1f}s "
                                            f"waiting for a build slot)")
    finally:
        _jobs.pop(key, None)


async def _execute(step: Step, conn: psycopg.AsyncConnection, target: DatabaseTarget,
                   options: BuildOptions, events: Events) -> None:
    if isinstance(step, BuildIndex):
        events.normal("BuildStarted", f"building index {step.definition.schema}."
                                      f"{step.definition.name} concurrently as {step.temporary}")
        await _create_with_deadline(conn, target, step_statement(step),
                                    options.build_timeout_seconds)
    elif isinstance(step, MarkIndex):
        await conn.execute(step_statement(step))
        if step.marker is None:
            events.normal("IndexRetained", f"index {step.schema}.{step.name} left the spec; "
                                           f"kept (indexPrunePolicy Retain) and released")
        elif step.marker.name == step.name:
            events.normal("IndexAdopted", f"index {step.schema}.{step.name} adopted")
    elif isinstance(step, RenameIndex):
        await conn.execute(step_statement(step))
    elif isinstance(step, DropIndex):
        await conn.execute(step_statement(step))
        if step.reason is DropReason.LEFTOVER:
            events.normal("LeftoverDropped", f"dropped {step.schema}.{step.name}, left by an "
                                             f"interrupted or failed build")
        elif step.reason is DropReason.PRUNED:
            events.normal("IndexPruned", f"dropped {step.schema}.{step.name}: no longer in the "
                                         f"spec (indexPrunePolicy Delete)")
    elif isinstance(step, CancelBackend):
        if await cancel_build(target, step.pid):
            events.normal("InterruptedBuildCancelled",
                          f"cancelled the build of {step.schema}.{step.name} left running by a "
                          f"previous operator process (backend {step.pid})")


async def _create_with_deadline(conn: psycopg.AsyncConnection, target: DatabaseTarget,
                                statement: sql.Composed, timeout: float) -> None:
    """Run the build; past ``timeout`` cancel its backend and raise :class:`BuildTimeout`."""
    pid = conn.info.backend_pid
    build = asyncio.ensure_future(conn.execute(statement))
    try:
        done, _ = await asyncio.wait({build}, timeout=timeout)
        if not done:
            await cancel_build(target, pid)
            with contextlib.suppress(psycopg.errors.QueryCanceled):
                await build
            raise BuildTimeout(f"build exceeded buildTimeoutSeconds ({timeout:g}s) and was "
                               f"cancelled")
        build.result()
    finally:
        if not build.done():  # the job itself was cancelled: psycopg cancels the statement
            build.cancel()
            with contextlib.suppress(BaseException):
                await build


async def cancel_build(target: DatabaseTarget, pid: int) -> bool:
    """pg_cancel_backend on ``pid`` if it still is an operator session building an index (a
    pid can be reused by an unrelated session between observing and cancelling)."""
    async with target.connection() as conn:
        cursor = await conn.execute(
            "SELECT pg_cancel_backend(p.pid) FROM pg_stat_progress_create_index p "
            "JOIN pg_stat_activity a ON a.pid = p.pid "
            "WHERE p.pid = %s AND a.application_name = %s", (pid, APPLICATION_NAME))
        row = await cursor.fetchone()
    return bool(row and row[0])
