"""Redis server settings: CONFIG SET what the profile asks for, from an allow-list only.

Observe (one CONFIG GET), plan (pure: :func:`plan_settings`), execute (CONFIG SET per changed
parameter, then one CONFIG GET to verify, then CONFIG REWRITE if the profile wants settings to
survive a restart). A parameter outside ``REDIS_ALLOWED_SETTINGS`` is never sent: it could move
files (dir, dbfilename), change credentials (requirepass, masterauth) or open the server (bind,
enable-debug-command). Each parameter is reported as

* ``Applied``: Redis reports the desired value;
* ``Drifted``: Redis reports something else even after the operator set it (someone keeps
  changing it, or the value does not stick); a drift the operator corrects is reported as an
  Event and the parameter stays ``Applied``;
* ``Rejected``: not in the allow-list (never sent), or refused by Redis (the server's message);
* ``Conflict``: another PerformanceProfile using the same Redis server (the same ``run_id``,
  whatever host name each uses: CONFIG is server-wide, whatever the db) sets another value, and
  that profile is the older one
  (``metadata.creationTimestamp``, then namespace/name): the oldest profile setting a parameter
  owns it, the others never send it (:func:`contested_settings`). Profiles agreeing on a value do
  not conflict. Without this rule two profiles would set their values in turn on every resync.
Only profiles that could log in count: one whose last login failed (wrong credentials, server
unreachable) cannot veto anyone's settings (:data:`SERVER_LOGINS`). A profile this process has
not tried yet counts when its host name and port match, so a restarted operator does not flip a
contested value before every profile has logged in once.

A parameter that leaves the spec keeps its current value: the operator cannot know what it was
before it first set it.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ..api.profile import REDIS_ALLOWED_SETTINGS
from ..reconcile import EventRecorder
from ..scrub import scrub
from ..seniority import seniority

APPLIED, DRIFTED, REJECTED, CONFLICT = "Applied", "Drifted", "Rejected", "Conflict"

#: Parameters taking a memory size, which Redis reports in bytes.
_MEMORY = {"maxmemory", "active-defrag-ignore-bytes"}
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
                 "g": 1000**3, "gb": 1024**3}
_MEMORY_RE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")
#: notify-keyspace-events: the classes "A" stands for.
_ALL_EVENT_CLASSES = "g$lshzxetd"


@dataclass(frozen=True)
class SetConfig:
    """CONFIG SET one parameter; ``drifted`` when it had been applied and changed since."""

    name: str
    value: str
    drifted: bool = False


@dataclass(frozen=True)
class SettingsPlan:
    steps: list[SetConfig]
    #: name -> why it is never sent
    rejected: dict[str, str] = field(default_factory=dict)
    rewrite: bool = False
    #: name -> why it is not sent: an older profile on the same server sets another value
    conflicts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RedisPeer:
    """One PerformanceProfile's claim on a Redis server's CONFIG: which server, which values,
    and since when (its ``metadata.creationTimestamp``)."""

    namespace: str
    name: str
    #: RFC 3339; None (unknown) counts as the youngest.
    created: str | None
    host: str
    port: int
    settings: Mapping[str, str]

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def server(self) -> tuple[str, int]:
        """CONFIG is per server: host and port, whatever the db."""
        return self.host.lower().rstrip("."), self.port

    def seniority(self) -> tuple[bool, datetime.datetime, str, str]:
        """Sorts the oldest profile first (:func:`seniority.seniority`)."""
        return seniority(self.created, self.namespace, self.name)


#: profile (``<namespace>/<name>``) -> the ``run_id`` of the Redis its last login reached, or
#: None when it could not log in. Written by every settings reconcile.
SERVER_LOGINS: dict[str, str | None] = {}


async def server_id(redis: Redis) -> str:
    """The Redis process (run_id): two connections reach the same keys when it and the db are
    the same, whatever host names they use."""
    return (await redis.info("server"))["run_id"]


def _same_server(me: RedisPeer, server_id: str | None, peer: RedisPeer,
                 logins: Mapping[str, str | None]) -> bool:
    """Whether ``peer`` sets CONFIG on the server ``me`` reached (``server_id``)."""
    if server_id is None or peer.owner not in logins:
        return peer.server == me.server
    return logins[peer.owner] == server_id


def contested_settings(me: RedisPeer, others: Iterable[RedisPeer],
                       logins: Mapping[str, str | None] | None = None,
                       server_id: str | None = None) -> dict[str, RedisPeer]:
    """The parameters of ``me`` that another profile on the same server owns with another
    value, each with that owner. The owner of a parameter is the oldest profile setting it
    (creationTimestamp, then namespace/name); a profile whose value is the owner's (as Redis
    compares them) is not in conflict. ``others`` may contain ``me`` (it is skipped), and only
    allow-listed parameters count: the others are never sent by anyone. With ``server_id``
    (the run_id ``me`` reached) and ``logins`` (:data:`SERVER_LOGINS`), a peer is on the same
    server when its last login reached that run_id; a peer whose login failed is on none."""
    rivals = [p for p in others if (p.namespace, p.name) != (me.namespace, me.name)
              and _same_server(me, server_id, p, logins or {})]
    contested: dict[str, RedisPeer] = {}
    for name, value in me.settings.items():
        if name not in REDIS_ALLOWED_SETTINGS:
            continue
        setters = [p for p in rivals if name in p.settings]
        if not setters:
            continue
        owner = min(setters, key=RedisPeer.seniority)
        if me.seniority() < owner.seniority():
            continue
        if not same_value(name, value, owner.settings[name]):
            contested[name] = owner
    return contested


def conflict_message(name: str, value: str, owner: RedisPeer) -> str:
    return (f"{name} is set to {owner.settings[name]!r} by PerformanceProfile {owner.owner}, "
            f"the oldest profile setting it on Redis {owner.host}:{owner.port}; {value!r} is "
            f"not sent")


def normalize(name: str, value: str) -> str:
    """The form in which Redis reports ``value`` for ``name`` in CONFIG GET, as far as the
    comparison needs: memory sizes in bytes, numbers without leading zeros, flags as a sorted
    set, words lower-cased, lists with single spaces."""
    text = value.strip()
    if name in _MEMORY:
        match = _MEMORY_RE.match(text.lower())
        if match and match.group(2) in _MEMORY_UNITS:
            return str(int(match.group(1)) * _MEMORY_UNITS[match.group(2)])
    if name == "notify-keyspace-events":
        return "".join(sorted(set(text.replace("A", _ALL_EVENT_CLASSES))))
    words = text.lower().split()
    return " ".join(str(int(w)) if re.fullmatch(r"-?\d+", w) else w for w in words)


def same_value(name: str, desired: str, observed: str | None) -> bool:
    return observed is not None and normalize(name, desired) == normalize(name, observed)


def plan_settings(desired: dict[str, str], observed: dict[str, str],
                  previous: list[dict[str, Any]], *, persist: bool,
                  persisted_before: bool = False,
                  contested: Mapping[str, RedisPeer] | None = None) -> SettingsPlan:
    """What to send so that Redis holds ``desired``, but for the ``contested`` parameters
    (:func:`contested_settings`), which are never sent.

    ``previous`` is the last reported status (``status.redis.settings``): a parameter it shows
    as Applied with the same desired value, and that Redis now reports differently, has drifted.
    With ``persist``, CONFIG REWRITE follows any change, and also runs once when the last pass
    did not persist (persistence just turned on, or an earlier rewrite failed): the values may
    be right in memory but not in the config file.
    """
    applied_before = {s["name"]: s.get("desired") for s in previous if s.get("state") == APPLIED}
    contested = contested or {}
    steps: list[SetConfig] = []
    rejected: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    for name in sorted(desired):
        value = desired[name]
        if name not in REDIS_ALLOWED_SETTINGS:
            rejected[name] = (f"{name} is not in the operator's allow-list of Redis parameters "
                              f"and was not sent")
        elif name in contested:
            conflicts[name] = conflict_message(name, value, contested[name])
        elif not same_value(name, value, observed.get(name)):
            steps.append(SetConfig(name, value, drifted=applied_before.get(name) == value))
    return SettingsPlan(steps=steps, rejected=rejected, conflicts=conflicts,
                        rewrite=persist and (bool(steps) or not persisted_before))


@dataclass
class SettingsResult:
    statuses: list[dict[str, Any]]
    #: CONFIG REWRITE's error, when it failed.
    rewrite_error: str | None = None


async def config_get(redis: Redis, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    # the operator's clients decode replies (redis.connect): names and values are str
    return {str(name): str(value) for name, value in (await redis.config_get(*names)).items()}


async def apply_settings(redis: Redis, desired: dict[str, str], previous: list[dict[str, Any]],
                         *, persist: bool, persisted_before: bool,
                         events: EventRecorder,
                         contested: Mapping[str, RedisPeer] | None = None) -> SettingsResult:
    """Observe, plan, execute and verify; Events for drift, refusals, rejections and
    conflicts."""
    allowed = sorted(n for n in desired if n in REDIS_ALLOWED_SETTINGS)
    observed = await config_get(redis, allowed)
    plan = plan_settings(desired, observed, previous, persist=persist,
                         persisted_before=persisted_before, contested=contested)
    refused: dict[str, str] = {}
    for step in plan.steps:
        try:
            await redis.config_set(step.name, step.value)
        except ResponseError as err:
            refused[step.name] = f"Redis refused {step.name}={step.value!r}: {scrub(err)}"
            continue
        if step.drifted:
            events.warning("RedisSettingDrifted",
                           f"{step.name} was {observed.get(step.name)!r} instead of "
                           f"{step.value!r} (changed outside the operator); set it back")
        else:
            events.normal("RedisSettingApplied", f"set {step.name} to {step.value!r}")
    if plan.steps:
        observed.update(await config_get(redis, [s.name for s in plan.steps]))
    rewrite_error = None
    if plan.rewrite and not refused:
        try:
            await redis.config_rewrite()
            events.normal("RedisConfigRewritten", "settings persisted with CONFIG REWRITE")
        except ResponseError as err:
            rewrite_error = f"CONFIG REWRITE failed: {scrub(err)}"
    previous_states = {s["name"]: (s.get("state"), s.get("desired")) for s in previous}
    statuses = []
    for name in sorted(desired):
        value = desired[name]
        entry: dict[str, Any] = {"name": name, "desired": value}
        message = plan.rejected.get(name) or refused.get(name)
        if message:
            entry.update(state=REJECTED, message=message)
            if previous_states.get(name) != (REJECTED, value):
                events.warning("RedisSettingRejected", message)
        elif name in plan.conflicts:
            entry.update(state=CONFLICT, actual=observed.get(name),
                         message=plan.conflicts[name])
            if previous_states.get(name) != (CONFLICT, value):
                events.warning("RedisSettingConflict", plan.conflicts[name])
        elif same_value(name, value, observed.get(name)):
            entry.update(state=APPLIED, actual=observed[name])
        else:
            entry.update(state=DRIFTED, actual=observed.get(name),
                         message=f"set to {value!r} but Redis reports "
                                 f"{observed.get(name)!r}")
        statuses.append(entry)
    return SettingsResult(statuses, rewrite_error)
