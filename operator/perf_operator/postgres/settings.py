"""PostgreSQL parameters of a profile, each reported with its own truth.

Scope System writes ``ALTER SYSTEM SET`` (postgresql.auto.conf) and reloads the configuration;
scope Database writes ``ALTER DATABASE <db> SET``. What is compared is what the scope has
recorded - the postgresql.auto.conf entry as ``pg_file_settings`` reads it from disk, or the
database's ``pg_db_role_setting`` entry - normalised through the parameter's type and unit from
``pg_settings`` ('4MB' and '4096' with unit kB are the same work_mem). A parameter is written
only when the recorded value differs, so a converged server sees no statement at all.

States (api SettingStatus):

* Applied - recorded and in effect (Database scope: recorded, in effect for new sessions).
* PendingRestart - recorded, but PostgreSQL reports ``pending_restart``; the operator never
  restarts PostgreSQL.
* Drifted - someone changed the recorded value after the operator applied it; it has just been
  written back (an Event says from what). Also used, with a message saying so, when a setting
  of a higher-priority source the operator does not own hides a System value - the server's
  command line, or an ``ALTER DATABASE ... SET`` of this database; that one is left alone.
  (Read from the catalog, not from the session: a pooled session keeps the per-database
  values it started with.)
* Rejected - not a performance parameter (``api.parameters.refusal``: never sent), or
  PostgreSQL refused the name or value; the reason is shown.
* Conflict - (System scope) another profile logged in to the same server (identified by its
  ``system_identifier``, not by a host name) sets another value and is the older one
  (``metadata.creationTimestamp``, then namespace/name): the oldest profile setting a parameter
  on a server owns it, the others never send it (:func:`contested_parameters`). Without this
  rule two profiles would write their values in turn on every resync.

A parameter that a higher-priority source (the server's command line, an environment
variable) overrides has one stable report, Drifted with a message saying so, whatever
``pending_restart`` says (a reload after any ALTER SYSTEM sets that flag again for a
restart-only parameter, which would otherwise flip the report on every reload).

A parameter removed from the spec keeps its value: the operator cannot know what it was before.
Drift is found by the handler's resync timer calling the reconciler, not only on spec changes.
"""
from __future__ import annotations

import asyncio
import datetime
import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from ..api.parameters import LIST_PARAMETERS, list_elements, refusal
from ..scrub import scrub
from ..seniority import seniority
from .connect import DatabaseTarget, one_row

#: How long to wait for a reload to reach this session before reporting what it shows.
RELOAD_WAIT_SECONDS = 2.0
#: Server-wide sources that win over postgresql.auto.conf.
_SERVER_OVERRIDES = {"command line", "environment variable"}
_MEMORY_UNITS = {"B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}
_TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


class State(str, enum.Enum):
    APPLIED = "Applied"
    PENDING_RESTART = "PendingRestart"
    DRIFTED = "Drifted"
    REJECTED = "Rejected"
    CONFLICT = "Conflict"


@dataclass(frozen=True)
class PostgresPeer:
    """One profile's claim on its server's System-scoped parameters, for the owner rule:
    which server it last logged in to (None: it could not log in, so it claims nothing),
    what it sets there, and since when (``metadata.creationTimestamp``)."""

    namespace: str
    name: str
    #: RFC 3339; None (unknown) counts as the youngest.
    created: str | None
    #: ``system_identifier`` of the server, as the profile's status last recorded it.
    server: str | None
    parameters: Mapping[str, str]

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.name}"

    def seniority(self) -> tuple[bool, datetime.datetime, str, str]:
        """Sorts the oldest profile first (:func:`seniority.seniority`)."""
        return seniority(self.created, self.namespace, self.name)


def contested_parameters(me: PostgresPeer, server: str, peers: Iterable[PostgresPeer],
                         parameters: Mapping[str, ParameterInfo]) -> dict[str, PostgresPeer]:
    """The parameters of ``me`` that an older profile logged in to the same ``server`` sets to
    another value (compared through the parameter's type), each with that owner. ``peers``
    may contain ``me`` (skipped); peers that could not log in (no server) count for nothing."""
    rivals = [p for p in peers if p.server == server and (p.namespace, p.name) != (
        me.namespace, me.name)]
    contested: dict[str, PostgresPeer] = {}
    for name, value in me.parameters.items():
        setters = [p for p in rivals if name in p.parameters]
        if not setters:
            continue
        owner = min(setters, key=PostgresPeer.seniority)
        if me.seniority() < owner.seniority():
            continue
        if not same_value(value, owner.parameters[name], parameters.get(name)):
            contested[name] = owner
    return contested


def conflicting_settings(wanted: Mapping[str, str], scope: str,
                         observation: SettingsObservation,
                         claim: PostgresPeer | None, peers: Iterable[PostgresPeer]
                         ) -> dict[str, str]:
    """Parameter -> why it is not sent: the System-scoped parameters of ``wanted`` an older
    profile on the same server owns with another value (``claim``: this profile; nothing is
    contested without it, in Database scope, or while the server is unknown)."""
    if scope != "System" or claim is None or observation.server is None:
        return {}
    owners = contested_parameters(replace(claim, parameters=dict(wanted)), observation.server,
                                  peers, observation.parameters)
    return {name: conflict_message(name, wanted[name], owner, observation.server)
            for name, owner in owners.items()}


def conflict_message(name: str, value: str, owner: PostgresPeer, server: str) -> str:
    return (f"{name} is set to {owner.parameters[name]!r} by PerformanceProfile {owner.owner}, "
            f"the oldest profile setting it on this PostgreSQL server (system identifier "
            f"{server}); {value!r} is not sent")


@dataclass(frozen=True)
class ParameterInfo:
    """A row of pg_settings: the parameter's type and unit and what this session sees."""

    name: str
    setting: str
    unit: str | None
    vartype: str
    source: str
    pending_restart: bool
    display: str  # current_setting(): the value with its unit, as users write it


@dataclass(frozen=True)
class SettingsObservation:
    parameters: Mapping[str, ParameterInfo]
    #: What the scope has recorded per parameter (auto.conf or the database's settings);
    #: None when it cannot be read (pg_file_settings needs pg_read_all_settings).
    recorded: Mapping[str, str] | None
    #: ``ALTER DATABASE <this database> SET`` entries (they override System values here).
    database_level: Mapping[str, str] = field(default_factory=dict)
    #: The server's ``system_identifier`` (what it is, whatever host name reaches it).
    server: str | None = None


@dataclass(frozen=True)
class SettingChange:
    name: str
    value: str
    #: The value was applied by the operator before and changed since: an Event says so.
    drift: bool
    recorded: str | None


@dataclass(frozen=True)
class SettingReport:
    name: str
    desired: str
    state: State
    actual: str | None = None
    message: str | None = None
    #: Not in effect because a source the operator does not own overrides it.
    overridden: bool = False

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"name": self.name, "desired": self.desired,
                                  "state": self.state.value}
        if self.actual is not None:
            status["actual"] = self.actual
        if self.message:
            status["message"] = self.message
        return status


# -------------------------------------------------------------------------- pure: comparing

def normalise(value: str, info: ParameterInfo | None) -> str | float:
    """``value`` in a form comparable with any other spelling of it for this parameter:
    numbers in the parameter's own unit (rounded like PostgreSQL for integers), booleans as
    on/off, enums lower-cased. Raises ValueError for a value PostgreSQL would refuse."""
    if info is None:
        return value
    if info.name in LIST_PARAMETERS:
        return ", ".join(list_elements(value))
    if info.vartype == "bool":
        return _parse_bool(value)
    if info.vartype in ("integer", "real"):
        number = _in_parameter_unit(value, info.unit)
        return float(round(number)) if info.vartype == "integer" else number
    if info.vartype == "enum":
        return value.strip().lower()
    return value


def same_value(a: str | None, b: str | None, info: ParameterInfo | None) -> bool:
    if a is None or b is None:
        return a is b
    try:
        left, right = normalise(a, info), normalise(b, info)
    except ValueError:
        return a == b
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
    return left == right


def _parse_bool(value: str) -> str:
    """PostgreSQL's parse_bool: on/of(f), 1/0, or any prefix of true/false/yes/no."""
    text = value.strip().lower()
    if text in ("on", "1") or (text and ("true".startswith(text) or "yes".startswith(text))):
        return "on"
    if text in ("of", "off", "0") or (text and ("false".startswith(text)
                                                 or "no".startswith(text))):
        return "off"
    raise ValueError(f"{value!r} is not a boolean")


def _in_parameter_unit(value: str, unit: str | None) -> float:
    match = _NUMBER.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a number")
    number, value_unit = float(match.group(1)), match.group(2)
    if not value_unit:
        return number
    base, scale = _split_unit(unit)
    for table in (_MEMORY_UNITS, _TIME_UNITS):
        if base in table and value_unit in table:
            return number * table[value_unit] / (table[base] * scale)
    raise ValueError(f"unit {value_unit!r} does not apply to a parameter in {unit or 'no unit'}")


def _split_unit(unit: str | None) -> tuple[str, int]:
    """'8kB' -> ('kB', 8); 'ms' -> ('ms', 1); None -> ('', 1)."""
    match = re.match(r"^(\d*)(.*)$", unit or "")
    assert match is not None  # the pattern matches every string
    return match.group(2), int(match.group(1) or 1)


# ---------------------------------------------------------------------------- pure: planning

def plan_settings(desired: Mapping[str, str], observation: SettingsObservation,
                  previous: Mapping[str, Mapping[str, Any]]) -> list[SettingChange]:
    """The parameters whose recorded value differs from the spec (nothing when converged).
    ``desired`` holds only what may be sent (refused and contested parameters left out).

    ``previous``: last status per parameter; a difference after the operator had applied the
    same desired value is drift."""
    changes = []
    for name, value in desired.items():
        info = observation.parameters.get(name)
        if observation.recorded is not None:
            recorded = observation.recorded.get(name)
        else:  # auto.conf unreadable: the effective value is the best evidence there is
            recorded = info.setting if info is not None else None
        if same_value(recorded, value, info):
            continue
        before = previous.get(name) or {}
        drift = (before.get("desired") == value
                 and before.get("state") in (State.APPLIED.value, State.PENDING_RESTART.value,
                                             State.DRIFTED.value))
        changes.append(SettingChange(name=name, value=value, drift=drift, recorded=recorded))
    return changes


def setting_report(name: str, value: str, scope: str, observation: SettingsObservation, *,
                   error: str | None, drifted: bool, conflict: str | None = None
                   ) -> SettingReport:
    """The state of one parameter after the changes, from a fresh observation."""
    if error is not None:
        return SettingReport(name, value, State.REJECTED, message=error)
    info = observation.parameters.get(name)
    recorded = observation.recorded.get(name) if observation.recorded is not None else None
    if info is None:
        return SettingReport(name, value, State.REJECTED, actual=recorded,
                             message=f'unrecognized configuration parameter "{name}"')
    if conflict is not None:
        return SettingReport(name, value, State.CONFLICT, actual=info.display, message=conflict)
    applied = State.DRIFTED if drifted else State.APPLIED
    drift_note = "changed outside the operator; re-applied" if drifted else None
    if scope == "Database":
        return SettingReport(name, value, applied, actual=recorded, message=drift_note)
    in_effect = same_value(info.setting, value, info)
    if info.source in _SERVER_OVERRIDES and not in_effect:
        # before pending_restart: a reload sets that flag again whenever the file differs
        return _overridden(name, value, f"the server's {info.source}", info.display)
    if info.pending_restart:
        return SettingReport(name, value, State.PENDING_RESTART, actual=info.display,
                             message="set in postgresql.auto.conf; takes effect when PostgreSQL "
                                     "restarts (the operator never restarts it)")
    database_value = observation.database_level.get(name)
    if database_value is not None and not same_value(database_value, value, info):
        return _overridden(name, value, f"ALTER DATABASE ... SET {name} = {database_value!r}",
                           database_value)
    if in_effect:
        return SettingReport(name, value, applied, actual=info.display, message=drift_note)
    return SettingReport(name, value, applied, actual=info.display,
                         message="recorded; the reload has not reached this session yet")


def _overridden(name: str, value: str, source: str, actual: str) -> SettingReport:
    return SettingReport(name, value, State.DRIFTED, actual=actual, overridden=True,
                         message=f"overridden by {source}, which the operator does not own "
                                 f"(in effect: {actual})")


# ------------------------------------------------------------------------------- execution

async def reconcile_settings(target: DatabaseTarget, settings: Any,
                             previous: Sequence[Mapping[str, Any]], events: Any, *,
                             claim: PostgresPeer | None = None,
                             peers: Iterable[PostgresPeer] = ()
                             ) -> tuple[list[SettingReport], str | None]:
    """Make ``settings`` (api PostgresSettings: scope + parameters) true and report each,
    with the server's ``system_identifier`` (None when it cannot be read).

    ``claim``/``peers``: this profile's and every profile's claim on System-scoped parameters
    (the owner rule). A PerformanceTarget's narrower list is applied before (targets.resolve)."""
    desired = dict(settings.parameters)
    scope = settings.scope
    before = {entry["name"]: entry for entry in previous if "name" in entry}
    refused = {name: reason for name in desired
               if (reason := refusal(name)) is not None}
    wanted = {name: value for name, value in desired.items() if name not in refused}
    async with target.connection() as conn:
        observation = await observe_settings(conn, list(wanted), scope)
        conflicts = conflicting_settings(wanted, scope, observation, claim, peers)
        sendable = {name: value for name, value in wanted.items() if name not in conflicts}
        changes = plan_settings(sendable, observation, before)
        errors = dict(refused)
        written = []
        for change in changes:
            try:
                await conn.execute(set_statement(change.name, change.value, scope,
                                                  target.key.dbname))
            except psycopg.Error as err:
                errors[change.name] = scrub(err.diag.message_primary or err).strip()
                continue
            written.append(change)
            if change.drift:
                was = (f"changed to {change.recorded!r}" if change.recorded is not None
                       else "removed from where the scope records it")
                events.warning("SettingDrifted",
                               f"{change.name} was {was} outside the operator; set back to "
                               f"{change.value!r}")
        if written and scope == "System":
            await conn.execute("SELECT pg_reload_conf()")
            observation = await _await_reload(conn, wanted, {c.name for c in written})
        elif written:
            observation = await observe_settings(conn, list(wanted), scope)
    drifted = {c.name for c in written if c.drift}
    reports = [setting_report(name, value, scope, observation, error=errors.get(name),
                              drifted=name in drifted, conflict=conflicts.get(name))
               for name, value in desired.items()]
    for report in reports:
        old = before.get(report.name) or {}
        if report.state in (State.REJECTED, State.CONFLICT) and (
                old.get("state") != report.state.value or old.get("desired") != report.desired):
            events.warning(f"Setting{report.state.value}", f"{report.name}={report.desired!r}: "
                                                           f"{report.message}")
    return reports, observation.server


def set_statement(name: str, value: str, scope: str, dbname: str) -> sql.Composed:
    """``ALTER SYSTEM``/``ALTER DATABASE ... SET``; a list-valued parameter gets one literal
    per element (``= 'a', 'b'``), never one literal holding the whole list, which PostgreSQL
    would record as a single quoted name."""
    parameter = sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))
    literal: sql.Composable = (
        sql.SQL(", ").join(sql.Literal(e) for e in list_elements(value))
        if name in LIST_PARAMETERS and list_elements(value) else sql.Literal(value))
    if scope == "Database":
        return sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(dbname), parameter, literal)
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(parameter, literal)


async def _await_reload(conn: psycopg.AsyncConnection, wanted: Mapping[str, str],
                        written: set[str]) -> SettingsObservation:
    """Observe until every written parameter shows its new value (or pending_restart, or an
    overriding source); the reload reaches this session asynchronously after the SIGHUP."""
    deadline = asyncio.get_running_loop().time() + RELOAD_WAIT_SECONDS
    while True:
        observation = await observe_settings(conn, list(wanted), "System")
        settled = all(
            info is None or info.pending_restart or info.source in _SERVER_OVERRIDES
            or same_value(info.setting, wanted[name], info)
            for name in written for info in [observation.parameters.get(name)])
        if settled or asyncio.get_running_loop().time() > deadline:
            return observation
        await asyncio.sleep(0.05)


async def observe_settings(conn: psycopg.AsyncConnection, names: Sequence[str], scope: str
                           ) -> SettingsObservation:
    cursor = await conn.execute(
        "SELECT name, setting, unit, vartype, source, pending_restart, current_setting(name) "
        "FROM pg_settings WHERE name = ANY(%s)", (list(names),))
    parameters = {row[0]: ParameterInfo(*row) for row in await cursor.fetchall()}
    cursor = await conn.execute(
        "SELECT unnest(setconfig) FROM pg_db_role_setting WHERE setrole = 0 AND "
        "setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())")
    database_level = dict(entry.partition("=")[::2] for (entry,) in await cursor.fetchall())
    cursor = await conn.execute("SELECT system_identifier::text FROM pg_control_system()")
    (server,) = await one_row(cursor)
    if scope == "Database":
        return SettingsObservation(parameters, recorded=database_level,
                                   database_level=database_level, server=server)
    try:
        cursor = await conn.execute(
            "SELECT name, setting FROM pg_file_settings "
            "WHERE sourcefile LIKE '%%/postgresql.auto.conf' AND name = ANY(%s) "
            "ORDER BY seqno", (list(names),))
        # the last entry of a name wins, as when PostgreSQL reads the file
        recorded: dict[str, str] | None = dict(await cursor.fetchall())
    except psycopg.errors.InsufficientPrivilege:
        recorded = None
    return SettingsObservation(parameters, recorded=recorded, database_level=database_level,
                               server=server)
