"""PerformanceTarget handlers: registration and delegation only.

The registry that target resolution reads (targets and namespace labels) is kept from watch
events here; each target's own status (its servers' reachability, who uses it) is written on
change and on the resync timer."""
from __future__ import annotations

from typing import Any

import kopf
import pydantic

from ..api.conditions import REJECTED
from ..config import CONFIG
from ..reconcile import EventRecorder, Outcome
from ..targets import REGISTRY
from ..targets.servers import observe, server_status, usage
from ..validation import describe_validation_error
from .profile_registry import profile_index
from .reconciliation import write_status
from .resources import NAMESPACES, PROFILES, TARGETS


@kopf.on.event(*TARGETS)
async def track_target(*, event: kopf.RawEvent, name: str, spec: kopf.Spec, **_: Any) -> None:
    if event.get("type") == "DELETED":
        REGISTRY.forget_target(name)
        return
    try:
        REGISTRY.put_target(name, spec)
    except pydantic.ValidationError:
        pass  # absent to profiles; its own status says why


@kopf.on.event(*NAMESPACES)
async def track_namespace(*, event: kopf.RawEvent, name: str, meta: kopf.Meta, **_: Any) -> None:
    if event.get("type") == "DELETED":
        REGISTRY.forget_namespace(name)
    else:
        REGISTRY.put_namespace(name, meta.get("labels"))


@profile_index
def profiles_by_target(namespace: str, name: str, spec: dict, **_) -> dict:
    """Which profiles name which target, for the target's status."""
    ref = spec.get("targetRef") or {}
    return {ref["name"]: (namespace, name)} if ref.get("name") else {}


@kopf.on.resume(*TARGETS)
@kopf.on.create(*TARGETS)
@kopf.on.update(*TARGETS, field="spec")
@kopf.timer(*TARGETS, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def target_status(*, body: kopf.Body, name: str, spec: kopf.Spec, status: kopf.Status,
                        meta: kopf.Meta, patch: kopf.Patch, logger, **_: Any) -> None:
    generation = meta.get("generation", 0)
    current = dict(status)
    events = EventRecorder(body, logger)
    users = usage(profiles_by_target.get(name, ()))
    try:
        parsed = REGISTRY.put_target(name, spec)
    except pydantic.ValidationError as err:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, extra=users,
                     ready_override=(REJECTED, describe_validation_error(err)))
        return
    observed = await observe(name, parsed)
    _announce_recoveries(events, current, observed)
    write_status(patch=patch, current=current, generation=generation,
                 results=[(outcome.condition, outcome) for _, outcome in observed],
                 events=events, extra={**users, "servers": server_status(observed)})


def _announce_recoveries(events: EventRecorder, current: dict[str, Any],
                         observed: list[tuple[Any, Outcome]]) -> None:
    """A Normal Event when a server is reachable again (an unreachable one makes Ready False,
    which write_status announces as a Warning)."""
    before = {entry.get("server"): entry.get("reachable")
              for entry in current.get("servers") or []}
    for server, outcome in observed:
        if outcome.ready and before.get(server.server) is False:
            events.normal("ServerReachable", outcome.message)
