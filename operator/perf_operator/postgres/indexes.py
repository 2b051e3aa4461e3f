"""Declarative indexes, the pure part: definitions, the ownership marker, and the planner that
turns (declared indexes, catalog, running jobs) into per-index jobs of DDL steps.

Ownership. Every index the operator creates carries a comment
``perf-operator:{"hash":"<definition hash>","name":"<declared name>","owner":"<ns>/<profile>"}``
(plus ``"automatic":true`` on an index the optimizer added rather than the spec declared).
Only indexes whose marker names this profile are ever dropped, renamed or rebuilt. An index of a
declared name without our marker is a Conflict; with ``adopt: true`` it is taken over (the
marker written) only if its definition equals the declared one, which the observer checks by
building the declared index on an empty copy of the table inside a rolled-back transaction and
comparing PostgreSQL's own ``pg_get_indexdef`` of both.

Building. Every build (new index or changed definition) runs ``CREATE INDEX CONCURRENTLY``
under a temporary name ``<name>__perfop_<token>`` (token: a hash of owner and name, so two
profiles never share one), then writes the marker on it, then - for a changed definition -
drops the old index concurrently, then renames the new one into place. At no point is the
table without a usable index of that definition or the previous one.

Crash safety comes from planning on observation alone: whatever step a killed operator was
in, the catalog shows it and the next plan finishes or undoes it.

* killed during the build: an INVALID temporary index without a marker. The ``__perfop_<token>``
  name of an index this profile declares - or declared until now: the names in its last status
  (``withdrawn``) - is reserved for the operator, so such an index is dropped concurrently and
  rebuilt.
* a build still running server-side for a process that died (``application_name`` is the
  operator's, ``pg_stat_progress_create_index`` names the index): the backend is cancelled,
  then the INVALID leftover is dropped.
* killed after the build, before the marker: a valid unmarked temporary index; dropped and
  rebuilt (the hash it was built from is unknown).
* killed after the marker: a valid, marked temporary index of the declared hash is reused:
  only the swap (drop old, rename) remains.
* killed during ``DROP INDEX CONCURRENTLY`` of the old index: the old index is INVALID and
  owned; it is dropped, then the temporary one renamed.

Removed indexes: a marked index no longer declared is dropped when ``indexPrunePolicy`` is
Delete; with Retain it stays and the marker is removed, handing it back to the user (as the
CRD documents). Temporary and INVALID leftovers of this profile are always dropped.
"""
from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from psycopg import sql

from .connect import APPLICATION_NAME
from .sqlcheck import SqlCheckError, check_identifier, normalise_expression

MARKER_PREFIX = "perf-operator:"
TEMPORARY_INFIX = "__perfop_"
METHODS = ("btree", "gin", "gist", "brin", "hash", "spgist")

IndexKey = tuple[str, str]
"""(schema, index name): indexes are unique per schema."""


class Phase(str, enum.Enum):
    PENDING = "Pending"
    BUILDING = "Building"
    READY = "Ready"
    INVALID = "Invalid"
    FAILED = "Failed"
    CONFLICT = "Conflict"


@dataclass(frozen=True)
class Marker:
    """The ownership comment on an index the operator created."""

    owner: str
    name: str
    hash: str
    #: Added by the optimizer (``status.optimization``), not declared in the spec.
    automatic: bool = False

    def render(self) -> str:
        data: dict[str, Any] = {"hash": self.hash, "name": self.name, "owner": self.owner}
        if self.automatic:
            data["automatic"] = True
        return MARKER_PREFIX + json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, comment: str | None) -> Marker | None:
        """The marker in an index comment; None for no comment or anybody else's comment."""
        if not comment or not comment.startswith(MARKER_PREFIX):
            return None
        try:
            data = json.loads(comment[len(MARKER_PREFIX):])
            return cls(owner=str(data["owner"]), name=str(data["name"]), hash=str(data["hash"]),
                       automatic=data.get("automatic") is True)
        except (ValueError, KeyError, TypeError):
            return None


def temporary_name(owner: str, name: str) -> str:
    """Where a new definition of ``name`` is built before it is swapped in (at most 63 bytes)."""
    token = hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:8]
    return f"{name[:63 - len(TEMPORARY_INFIX) - len(token)]}{TEMPORARY_INFIX}{token}"


@dataclass(frozen=True)
class KeyElement:
    """One key of an index, validated: a column, or an expression in pglast's deparsed form."""

    column: str | None = None
    expression: str | None = None
    opclass: str | None = None
    order: str | None = None  # "ASC" | "DESC"
    nulls: str | None = None  # "FIRST" | "LAST"

    def render(self) -> sql.Composable:
        if self.column is not None:
            parts: list[sql.Composable] = [sql.Identifier(self.column)]
        else:
            assert self.expression is not None, "a key is a column or an expression (parse_key)"
            parts = [sql.SQL("({})").format(sql.SQL(self.expression))]
        if self.opclass:
            parts.append(sql.Identifier(*self.opclass.split(".")))
        if self.order:
            parts.append(sql.SQL(self.order))
        if self.nulls:
            parts.append(sql.SQL("NULLS " + self.nulls))
        return sql.SQL(" ").join(parts)


@dataclass(frozen=True)
class IndexDefinition:
    """A declared index after validation: every identifier checked, every expression parsed
    and deparsed by pglast. Only this type ever reaches SQL composition."""

    name: str
    schema: str
    table: str
    keys: tuple[KeyElement, ...]
    method: str = "btree"
    unique: bool = False
    include: tuple[str, ...] = ()
    where: str | None = None
    adopt: bool = False
    #: Added by the optimizer, not declared: recorded in the marker (not part of the hash).
    automatic: bool = False

    @cached_property
    def definition_hash(self) -> str:
        """Identity of what the index contains (not its name or adopt flag). Expressions are
        hashed in normalised form, so reformatting the YAML does not rebuild anything."""
        canonical = json.dumps({
            "schema": self.schema, "table": self.table, "method": self.method,
            "unique": self.unique, "include": list(self.include), "where": self.where,
            "keys": [[k.column, k.expression, k.opclass, k.order, k.nulls] for k in self.keys],
        }, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def create_statement(self, index_name: str, *, concurrently: bool = True,
                         table: sql.Composable | None = None) -> sql.Composed:
        """``CREATE INDEX`` of this definition named ``index_name`` (on ``table`` instead of
        the declared one for the adoption probe)."""
        parts: list[sql.Composable] = [
            sql.SQL("CREATE UNIQUE INDEX" if self.unique else "CREATE INDEX")]
        if concurrently:
            parts.append(sql.SQL("CONCURRENTLY"))
        parts += [sql.Identifier(index_name), sql.SQL("ON"),
                  table if table is not None else sql.Identifier(self.schema, self.table),
                  sql.SQL("USING"), sql.Identifier(self.method),
                  sql.SQL("({})").format(sql.SQL(", ").join(k.render() for k in self.keys))]
        if self.include:
            parts.append(sql.SQL("INCLUDE ({})").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in self.include)))
        if self.where:
            parts.append(sql.SQL("WHERE ({})").format(sql.SQL(self.where)))
        return sql.SQL(" ").join(parts)


@dataclass(frozen=True)
class RefusedIndex:
    """A declared index whose spec failed validation; nothing is executed for it."""

    name: str
    schema: str
    error: str


def definition_from_spec(index: Any) -> IndexDefinition | RefusedIndex:
    """Validate an api ``Index`` (names, columns, expressions, where) into a definition.

    The CRD's patterns and the admission webhook refuse most of this earlier; this is the
    last line, and it refuses rather than quotes: an identifier that is not plain is an error.
    """
    schema = getattr(index, "schema_", "public")
    try:
        for what, name in [("name", index.name), ("schema", schema), ("table", index.table),
                           *[("include", c) for c in index.include or ()]]:
            _identifier(what, name)
        if index.method not in METHODS:
            raise SqlCheckError(f"method {index.method!r} is not one of {', '.join(METHODS)}")
        keys = tuple(_key_element(i, column) for i, column in enumerate(index.columns))
        if not keys:
            raise SqlCheckError("columns: at least one column or expression is needed")
        where = None
        if index.where is not None:
            try:
                where = normalise_expression(index.where)
            except SqlCheckError as err:
                raise SqlCheckError(f"where: {err}") from None
    except SqlCheckError as err:
        return RefusedIndex(name=str(index.name), schema=str(schema), error=str(err))
    return IndexDefinition(name=index.name, schema=schema, table=index.table, keys=keys,
                           method=index.method, unique=bool(index.unique),
                           include=tuple(index.include or ()), where=where,
                           adopt=bool(index.adopt))


def _identifier(what: str, name: str) -> None:
    error = check_identifier(name)
    if error:
        raise SqlCheckError(f"{what}: {error}")


def _key_element(position: int, column: Any) -> KeyElement:
    where = f"columns[{position}]"
    if (column.column is None) == (column.expression is None):
        raise SqlCheckError(f"{where}: exactly one of column and expression must be set")
    expression = None
    if column.column is not None:
        _identifier(f"{where}.column", column.column)
    else:
        try:
            expression = normalise_expression(column.expression)
        except SqlCheckError as err:
            raise SqlCheckError(f"{where}.expression: {err}") from None
    if column.opclass is not None:
        for part in column.opclass.split("."):
            _identifier(f"{where}.opclass", part)
        if column.opclass.count(".") > 1:
            raise SqlCheckError(f"{where}.opclass: at most schema.name")
    return KeyElement(column=column.column, expression=expression, opclass=column.opclass,
                      order=column.order.upper() if column.order else None,
                      nulls=column.nulls.upper() if column.nulls else None)


# ------------------------------------------------------------------------------ observation

#: The phases of ``CREATE INDEX CONCURRENTLY`` as ``pg_stat_progress_create_index`` names
#: them, in the order they run, with the share of the whole build each stands for (rough:
#: scanning the table, sorting and loading the tuples, then validating, are most of the
#: work). Within a phase that counts blocks or tuples, the share is spread by their count.
_BUILD_PHASES: tuple[tuple[str, float], ...] = (
    ("initializing", 0.0),
    ("waiting for writers before build", 0.02),
    ("building index", 0.50),
    ("waiting for writers before validation", 0.02),
    ("index validation: scanning index", 0.10),
    ("index validation: sorting tuples", 0.06),
    ("index validation: scanning table", 0.26),
    ("waiting for old snapshots", 0.02),
    ("waiting for readers before marking dead", 0.01),
    ("waiting for readers before dropping", 0.01),
)


@dataclass(frozen=True)
class BuildProgress:
    """One row of ``pg_stat_progress_create_index``: where a running build is."""

    phase: str
    blocks_done: int = 0
    blocks_total: int = 0
    tuples_done: int = 0
    tuples_total: int = 0

    @property
    def percent(self) -> int:
        """An estimate of the whole build done, 0-100, that only grows as the phases advance:
        the shares of the phases before this one, plus this one's share times its fraction of
        blocks (else tuples) done. A ``building index`` sub-phase (``scanning table``,
        ``sorting live tuples``, ``loading tuples in tree``) counts as that phase."""
        done = 0.0
        for name, share in _BUILD_PHASES:
            if self.phase == name or self.phase.startswith(name + ":"):
                done += share * self._fraction(name)
                return min(100, int(done * 100))
            done += share
        return 0

    def _fraction(self, name: str) -> float:
        if name == "building index":
            # scanning the table is most of it; sorting and loading the tuples the rest
            if "scanning table" in self.phase:
                return 0.7 * _ratio(self.blocks_done, self.blocks_total)
            if "loading tuples" in self.phase:
                return 0.8 + 0.2 * _ratio(self.tuples_done, self.tuples_total)
            return 0.7
        if self.blocks_total:
            return _ratio(self.blocks_done, self.blocks_total)
        return _ratio(self.tuples_done, self.tuples_total)

    def describe(self) -> str:
        """``42% (building index: scanning table, 1200/4000 blocks)``."""
        counts = []
        if self.blocks_total:
            counts.append(f"{self.blocks_done}/{self.blocks_total} blocks")
        if self.tuples_total:
            counts.append(f"{self.tuples_done}/{self.tuples_total} tuples")
        return f"{self.percent}% ({', '.join([self.phase, *counts])})"

    def as_status(self) -> dict[str, Any]:
        return {"phase": self.phase, "blocksDone": self.blocks_done,
                "blocksTotal": self.blocks_total, "tuplesDone": self.tuples_done,
                "tuplesTotal": self.tuples_total, "percent": self.percent}


def _ratio(done: int, total: int) -> float:
    return min(1.0, done / total) if total > 0 else 0.0


@dataclass(frozen=True)
class ObservedIndex:
    """An index as the catalog shows it, with a build in progress on it if there is one."""

    schema: str
    name: str
    table: str
    valid: bool
    comment: str | None = None
    size_bytes: int = 0
    scans: int = 0
    builder_pid: int | None = None
    builder_application: str | None = None
    progress: BuildProgress | None = None

    @property
    def key(self) -> IndexKey:
        return (self.schema, self.name)

    @cached_property
    def marker(self) -> Marker | None:
        return Marker.parse(self.comment)


@dataclass(frozen=True)
class Catalog:
    """What the planner knows about the database."""

    indexes: Mapping[IndexKey, ObservedIndex]
    #: For unowned indexes a declared ``adopt: true`` names: None when the existing definition
    #: equals the declared one, else why not.
    adoption: Mapping[IndexKey, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildFailure:
    """The last failed job of an index: its definition, the error, when to try again."""

    definition_hash: str
    error: str
    attempts: int
    retry_at: float


# ------------------------------------------------------------------------------------ steps

class DropReason(str, enum.Enum):
    LEFTOVER = "leftover"  # a temporary or INVALID index of this profile
    REPLACED = "replaced"  # the old definition, once the new one is built
    PRUNED = "pruned"  # no longer declared, prune policy Delete


@dataclass(frozen=True)
class DropIndex:
    schema: str
    name: str
    reason: DropReason


@dataclass(frozen=True)
class BuildIndex:
    definition: IndexDefinition
    temporary: str


@dataclass(frozen=True)
class MarkIndex:
    """Write the ownership marker, or remove it (``marker`` None: release to the user)."""

    schema: str
    name: str
    marker: Marker | None


@dataclass(frozen=True)
class RenameIndex:
    schema: str
    old: str
    new: str


@dataclass(frozen=True)
class CancelBackend:
    """Cancel a build a dead operator process left running on one of our indexes."""

    pid: int
    schema: str
    name: str


Step = DropIndex | BuildIndex | MarkIndex | RenameIndex | CancelBackend


def step_statement(step: Step) -> sql.Composed:
    """The SQL a step runs: what the executor sends, and what ``kubectl perf plan`` shows.
    (A CancelBackend runs on a pooled connection, only after checking that the backend still
    builds an operator index: see ``index_builds.cancel_build``.)"""
    if isinstance(step, BuildIndex):
        return step.definition.create_statement(step.temporary)
    if isinstance(step, MarkIndex):
        comment = sql.Literal(step.marker.render()) if step.marker else sql.NULL
        return sql.SQL("COMMENT ON INDEX {} IS {}").format(
            sql.Identifier(step.schema, step.name), comment)
    if isinstance(step, RenameIndex):
        return sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(step.schema, step.old), sql.Identifier(step.new))
    if isinstance(step, DropIndex):
        return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(step.schema, step.name))
    return sql.SQL("SELECT pg_cancel_backend({})").format(sql.Literal(step.pid))


@dataclass(frozen=True)
class Job:
    """The steps for one index, run in order as one background task. ``key`` is the declared
    index (or, for an orphan, the index itself); one job per key runs at a time. ``table`` is
    the table the steps lock (jobs on one table run one after another)."""

    key: IndexKey
    table: str
    steps: tuple[Step, ...]
    #: The definition hash a failure of this job is recorded against (None: cleanup only).
    definition_hash: str | None = None

    @property
    def builds(self) -> bool:
        return any(isinstance(step, BuildIndex) for step in self.steps)

    @property
    def locks_table(self) -> bool:
        """Whether a step takes a lock on the table (cancelling a backend takes none)."""
        return any(not isinstance(step, CancelBackend) for step in self.steps)


@dataclass(frozen=True)
class IndexReport:
    """One declared index for status.database.indexes (api IndexStatus)."""

    name: str
    phase: Phase
    message: str = ""
    size_bytes: int | None = None
    scans: int | None = None
    last_error: str | None = None
    definition_hash: str | None = None
    #: Where the build of the index runs (Building only).
    progress: BuildProgress | None = None

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"name": self.name, "phase": self.phase.value}
        for key, value in (("sizeBytes", self.size_bytes), ("scans", self.scans),
                           ("lastError", self.last_error),
                           ("definitionHash", self.definition_hash)):
            if value is not None:
                status[key] = value
        if self.progress is not None:
            status["progress"] = self.progress.as_status()
        return status


@dataclass(frozen=True)
class IndexPlan:
    reports: tuple[IndexReport, ...]
    jobs: tuple[Job, ...]
    #: Indexes released to the user this time (prune policy Retain).
    released: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------- planner

def plan_indexes(owner: str, declared: Sequence[IndexDefinition | RefusedIndex],
                 catalog: Catalog, *, busy: Mapping[IndexKey, Phase],
                 failures: Mapping[IndexKey, BuildFailure], prune: bool,
                 now: float, withdrawn: Collection[str] = ()) -> IndexPlan:
    """Decide, per index, its phase and the job (if any) that moves it toward the spec.

    ``busy``: keys with a job of this process still running (their phase). ``failures``: the
    last failed job per key. ``prune``: indexPrunePolicy is Delete. ``withdrawn``: names no
    longer declared, whose unmarked temporary leftovers are still recognised as ours. Pure:
    same inputs, same plan; a converged database gives a plan without jobs.
    """
    reports: list[IndexReport] = []
    jobs: list[Job] = []
    claimed: set[IndexKey] = set()
    for index in declared:
        key = (index.schema, index.name)
        claimed |= {key, (index.schema, temporary_name(owner, index.name))}
        if isinstance(index, RefusedIndex):
            reports.append(IndexReport(name=index.name, phase=Phase.FAILED,
                                       message="refused: nothing was executed",
                                       last_error=index.error))
            continue
        report, job = _plan_declared(owner, index, catalog, busy.get(key), failures.get(key),
                                     now)
        reports.append(report)
        if job is not None:
            jobs.append(job)
    reserved = {temporary_name(owner, name) for name in withdrawn}
    orphan_jobs, released = _plan_orphans(owner, catalog, claimed, reserved, busy, prune)
    return IndexPlan(reports=tuple(reports), jobs=tuple(jobs + orphan_jobs),
                     released=tuple(released))


def _plan_declared(owner: str, index: IndexDefinition, catalog: Catalog, running: Phase | None,
                   failure: BuildFailure | None, now: float) -> tuple[IndexReport, Job | None]:
    wanted = index.definition_hash
    marker = Marker(owner=owner, name=index.name, hash=wanted, automatic=index.automatic)
    temp_name = temporary_name(owner, index.name)
    final = catalog.indexes.get((index.schema, index.name))
    temp = catalog.indexes.get((index.schema, temp_name))
    #: The final index's marker when this profile owns it.
    owned = final.marker if final is not None and final.marker is not None \
        and final.marker.owner == owner else None
    final_owned = owned is not None
    last_error = failure.error if failure is not None and failure.definition_hash == wanted \
        else None

    def report(phase: Phase, message: str = "") -> IndexReport:
        progress = None
        if phase is Phase.BUILDING:
            progress = next((c.progress for c in (temp, final)
                             if c is not None and c.progress is not None), None)
        return IndexReport(
            name=index.name, phase=phase, message=message,
            size_bytes=final.size_bytes if final is not None else None,
            scans=final.scans if final is not None else None, last_error=last_error,
            definition_hash=owned.hash if owned is not None else None, progress=progress)

    def job(*steps: Step, definition_hash: str | None = wanted) -> Job:
        return Job(key=(index.schema, index.name), table=index.table, steps=steps,
                   definition_hash=definition_hash)

    if running is not None:
        built = report(running, "a job of this operator is working on the index")
        if built.progress is not None:
            built = replace(built, message="building " + built.progress.describe())
        return built, None

    # A build some other session runs on the index or its temporary name.
    for candidate, ours in ((final, final_owned), (temp, True)):
        if candidate is None or candidate.builder_pid is None:
            continue
        if ours and candidate.builder_application == APPLICATION_NAME:
            return (report(Phase.BUILDING, f"cancelling the build of {candidate.name} that a "
                                           f"previous operator process left running (backend "
                                           f"{candidate.builder_pid})"),
                    job(CancelBackend(candidate.builder_pid, candidate.schema, candidate.name),
                        definition_hash=None))
        return (report(Phase.PENDING, f"waiting for backend {candidate.builder_pid} building "
                                      f"{candidate.name}"), None)

    leftover_temp: tuple[DropIndex, ...] = ()
    reuse_temp = (temp is not None and temp.valid and temp.marker is not None
                  and temp.marker.owner == owner and temp.marker.hash == wanted)
    if temp is not None and not reuse_temp:
        leftover_temp = (DropIndex(index.schema, temp_name, DropReason.LEFTOVER),)

    if final is not None and not final_owned:
        return _plan_unowned(index, final, marker, catalog, leftover_temp, report, job)

    if final is not None and owned is not None and final.valid and owned.hash == wanted:
        return (report(Phase.READY),
                job(*leftover_temp, definition_hash=None) if leftover_temp else None)

    steps: list[Step] = list(leftover_temp)
    phase, message = Phase.PENDING, "waiting for a build slot"
    if final is not None and not final.valid:
        steps.append(DropIndex(index.schema, index.name, DropReason.LEFTOVER))
        phase, message = Phase.INVALID, "INVALID after an interrupted build: dropping, rebuilding"
    if failure is not None and failure.definition_hash == wanted and now < failure.retry_at:
        return (report(Phase.FAILED, f"retrying in {failure.retry_at - now:.0f}s"),
                job(*steps, definition_hash=None) if steps else None)
    if not reuse_temp:
        steps += [BuildIndex(index, temp_name), MarkIndex(index.schema, temp_name, marker)]
    if final is not None and final.valid:
        steps.append(DropIndex(index.schema, index.name, DropReason.REPLACED))
        message = "definition changed: building the new one before dropping the old"
    steps.append(RenameIndex(index.schema, temp_name, index.name))
    return report(phase, message), job(*steps)


def _plan_unowned(index: IndexDefinition, final: ObservedIndex, marker: Marker,
                  catalog: Catalog, leftover_temp: tuple[Step, ...], report: Any, job: Any
                  ) -> tuple[IndexReport, Job | None]:
    """An index of the declared name that this profile does not own: Conflict, or adoption."""
    cleanup = job(*leftover_temp, definition_hash=None) if leftover_temp else None
    if final.marker is not None:
        return (report(Phase.CONFLICT, f"index {final.schema}.{final.name} is managed by "
                                       f"PerformanceProfile {final.marker.owner}"), cleanup)
    if not index.adopt:
        return (report(Phase.CONFLICT, f"index {final.schema}.{final.name} exists and was not "
                                       f"created by the operator; set adopt: true to take it "
                                       f"over"), cleanup)
    if not final.valid:
        return (report(Phase.CONFLICT, f"index {final.schema}.{final.name} is INVALID and not "
                                       f"owned by the operator; drop it to let it be rebuilt"),
                cleanup)
    if final.key not in catalog.adoption:
        return report(Phase.PENDING, "checking the existing definition before adopting"), None
    mismatch = catalog.adoption[final.key]
    if mismatch is not None:
        return (report(Phase.CONFLICT, f"cannot adopt {final.schema}.{final.name}: {mismatch}"),
                cleanup)
    return (report(Phase.PENDING, "adopting the existing index"),
            job(*leftover_temp, MarkIndex(final.schema, final.name, marker)))


def _plan_orphans(owner: str, catalog: Catalog, claimed: set[IndexKey], reserved: set[str],
                  busy: Mapping[IndexKey, Phase], prune: bool) -> tuple[list[Job], list[str]]:
    """Indexes of this profile that no declared index accounts for: marked as its own, or
    unmarked at a reserved temporary name of a withdrawn index."""
    jobs: list[Job] = []
    released: list[str] = []
    for key, index in sorted(catalog.indexes.items()):
        marker = index.marker
        unmarked_temporary = marker is None and index.name in reserved
        if key in claimed or not (unmarked_temporary or (marker and marker.owner == owner)):
            continue
        if key in busy or (marker and (index.schema, marker.name) in busy):
            continue  # a job of this process is still on it (e.g. a build just removed)
        if index.builder_pid is not None:
            if index.builder_application == APPLICATION_NAME:
                jobs.append(Job(key, index.table, (CancelBackend(index.builder_pid, *key),)))
            continue
        if marker is None or index.name != marker.name or not index.valid:
            jobs.append(Job(key, index.table, (DropIndex(*key, DropReason.LEFTOVER),)))
        elif prune:
            jobs.append(Job(key, index.table, (DropIndex(*key, DropReason.PRUNED),)))
        else:
            jobs.append(Job(key, index.table, (MarkIndex(*key, None),)))
            released.append(f"{index.schema}.{index.name}")
    return jobs, released
