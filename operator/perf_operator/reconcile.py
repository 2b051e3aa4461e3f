"""What every target-system reconciler receives and returns.

A reconciler observes its system, plans (a pure function), executes the plan, and reports an
:class:`Outcome`. The handler merges the outcomes into one status write and one set of
conditions, so no reconciler writes status itself.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .api import EffectiveTenantLimits, PerformanceProfileSpec, TenantQuotaSpec
from .scrub import scrub


@dataclass
class Outcome:
    """One target system's result: its condition and its part of the status."""

    condition: str
    ready: bool
    reason: str
    message: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    #: Ask for the next reconcile sooner than the resync interval (a build in progress).
    requeue_after: float | None = None
    #: For conditions named after a problem (``Overcommitted``, ``MetricsStale``): the
    #: condition is True when the outcome is *not* ready.
    abnormal_true: bool = False
    #: Whether a not-ready outcome makes the object not ``Ready``. False for conditions that
    #: report on something besides what the operator configures (``MetricsStale``: the
    #: application's metrics), which show in their own condition only.
    affects_ready: bool = True

    @property
    def condition_status(self) -> Literal["True", "False"]:
        return "True" if self.ready != self.abnormal_true else "False"


class EventRecorder:
    """Kubernetes Events about one object, scrubbed of credentials, posted as
    ``perf-operator`` with repeats counted on one Event (``kube.events``), and logged."""

    def __init__(self, body: Mapping[str, Any],
                 logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.body = body
        self.logger = logger

    def normal(self, reason: str, message: str) -> None:
        self._record("Normal", logging.INFO, reason, message)

    def warning(self, reason: str, message: str) -> None:
        self._record("Warning", logging.WARNING, reason, message)

    def _record(self, type_: str, level: int, reason: str, message: str) -> None:
        from .kube.events import POSTER, ObjectRef

        text = scrub(message)
        self.logger.log(level, "%s: %s", reason, text, extra={"reason": reason})
        POSTER.post(ObjectRef.from_body(self.body), type_, reason, text)


@dataclass
class ProfileContext:
    """Everything a reconciler needs to make one PerformanceProfile true."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: PerformanceProfileSpec  # parsed and validated
    status: dict[str, Any]  # the status as last written, for what a part remembers between runs
    events: EventRecorder
    logger: logging.Logger | logging.LoggerAdapter
    #: metadata.creationTimestamp (RFC 3339): the older of two profiles sharing a Redis server
    #: owns the CONFIG parameters they disagree on.
    created: str | None = None
    #: Every PerformanceProfile with a Redis section the operator knows of, this one included or
    #: not (``redis.RedisPeer``, from the handlers' index): who else sets CONFIG on its server.
    redis_peers: Sequence[Any] = ()
    #: Every profile's claim on its PostgreSQL server's System-scoped parameters
    #: (``postgres.PostgresPeer``, from the handlers' index): the oldest owns what they contest.
    postgres_peers: Sequence[Any] = ()

    def owner_reference(self) -> dict[str, Any]:
        from . import API_GROUP, API_VERSION

        return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "PerformanceProfile",
                "name": self.name, "uid": self.uid, "controller": True,
                "blockOwnerDeletion": True}


@dataclass
class TenantContext:
    """Everything a reconciler needs to make one TenantQuota true."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: TenantQuotaSpec
    profile_name: str
    #: The referenced profile, its target's connections filled in.
    profile: PerformanceProfileSpec
    #: The tenant merged with its profile's defaults (and the optimizer's load shedding).
    limits: EffectiveTenantLimits
    status: dict[str, Any]
    events: EventRecorder
    logger: logging.Logger | logging.LoggerAdapter
    #: metadata.creationTimestamp: the oldest TenantQuota claiming a tenant's record owns it.
    created: str | None = None
    #: An older TenantQuota the operator knows writes the same record (``<namespace>/<name>``):
    #: this one then writes nothing.
    senior_claimant: str | None = None
