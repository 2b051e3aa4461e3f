"""PerformanceProfile handlers: registration and delegation only."""
from __future__ import annotations

from typing import Any

import kopf
import pydantic

from ..api import PerformanceProfileSpec
from ..api.conditions import (ALERTS_READY, APP_CONFIG_READY, DATABASE_READY, METRICS_STALE,
                              OPTIMIZING, OVERCOMMITTED, PAUSED, REDIS_READY, REJECTED,
                              RULE_SHADOWED, SCALING_READY, SETTINGS_LEFT_OUT, TARGET_GRANTED,
                              TARGET_RESOLVED,
                              WEBSOCKET_OVERCOMMITTED, WITHIN_CAPACITY)
from ..config import CONFIG
from ..logs import REQUEUE_MESSAGE
from ..kube import reconcile_alerts, reconcile_app_config, reconcile_scaling
from ..optimizer import reconcile_metrics, reconcile_optimization
from ..postgres import cleanup_profile as postgres_cleanup
from ..postgres import postgres_peer
from ..postgres import reconcile_profile as postgres_database
from ..reconcile import EventRecorder, Outcome, ProfileContext
from ..redis import reconcile_profile as redis_settings
from ..redis import forget_profile as redis_cleanup
from ..redis import redis_peer
from ..targets import Resolution, TargetRefused, resolve_profile
from ..tenants.orphans import sweep_deleted_profile
from ..validation import (describe_validation_error, off_loop,
                          profile_rule_errors, semantic_errors)
from ..kube.objects import namespace_exists
from ..postgres.connect import forget_target, target_for_profile
from ..tenants.mirror import delete_profile_mirrors
from . import deferred
from .reconciliation import Cleanup, Part, next_requeue, run_cleanups, run_parts, write_status
from .resources import PROFILES
from .profile_registry import forget_profile, profile_index, put_profile
from .tenant_summary import tenant_summary

#: The target systems a profile configures, each with the condition type it reports.
PROFILE_PARTS: tuple[tuple[str, Part], ...] = (
    (DATABASE_READY, postgres_database),
    (REDIS_READY, redis_settings),
    (SCALING_READY, reconcile_scaling), (ALERTS_READY, reconcile_alerts),
    (APP_CONFIG_READY, reconcile_app_config),
    (OPTIMIZING, reconcile_optimization), (METRICS_STALE, reconcile_metrics),
)

#: What deleting a profile undoes outside Kubernetes (owned Kubernetes objects are garbage-
#: collected through their ownerReferences): the tables of its tenants that no longer exist,
#: then the database's indexes, by indexPrunePolicy (which closes the profile's pools).
PROFILE_CLEANUPS: tuple[Cleanup, ...] = (sweep_deleted_profile, postgres_cleanup,
                                          redis_cleanup)


@kopf.on.event(*PROFILES)  # type: ignore[arg-type]
async def track_profile(*, event: dict, body: kopf.Body, namespace: str, name: str, **_) -> None:
    """Keep the indexes of profiles (see profile_registry: not kopf indexes). kopf runs this
    before the profile's own change handlers, so they see the profile as it is."""
    if event.get("type") == "DELETED":
        forget_profile(namespace, name)
    else:
        put_profile(body)


@profile_index
def redis_peers(namespace: str, name: str, meta: dict, spec: dict, **_) -> dict:
    """Every profile's claim on its Redis server's CONFIG: the oldest owns what they contest."""
    peer = redis_peer(namespace, name, meta, spec)
    return {} if peer is None else {"all": peer}


@profile_index
def postgres_peers(namespace: str, name: str, meta: dict, spec: dict, status: dict, **_
                   ) -> dict:
    """Every profile's claim on its PostgreSQL server's System-scoped parameters (the server
    as its status last identified it): the oldest owns what they contest."""
    try:
        model = PerformanceProfileSpec.model_validate(dict(spec))
    except pydantic.ValidationError:
        return {}
    peer = postgres_peer(namespace, name, meta, model, dict(status))
    return {} if peer is None else {"all": peer}


@kopf.on.resume(*PROFILES)
@kopf.on.create(*PROFILES)
@kopf.on.update(*PROFILES, field="spec")
async def profile_changed(**kwargs: Any) -> None:
    requeue = await reconcile(**kwargs)
    if requeue is not None:
        # Work goes on in the background (an index build): look again soon rather than at the
        # next resync. kopf keeps the status patch and retries this handler after the delay.
        raise kopf.TemporaryError(REQUEUE_MESSAGE, delay=requeue)


@kopf.timer(*PROFILES, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def profile_resync(**kwargs: Any) -> None:
    await reconcile(**kwargs)


@kopf.on.delete(*PROFILES)  # type: ignore[arg-type]
async def profile_deleted(*, body: kopf.Body, spec: kopf.Spec, status: kopf.Status,
                          meta: kopf.Meta, name: str, namespace: str, logger, retry: int,
                          **_) -> None:
    try:
        model = resolve_profile(namespace, name,
                                PerformanceProfileSpec.model_validate(dict(spec))).spec
    except (pydantic.ValidationError, TargetRefused):
        return  # a spec that never validated, or a target it may not use, configured nothing
    ctx = ProfileContext(name=name, namespace=namespace, uid=meta["uid"],
                         generation=meta.get("generation", 0), spec=model, status=dict(status),
                         events=EventRecorder(body, logger), logger=logger)
    entry = {"kind": "PerformanceProfile", "namespace": namespace, "name": name,
             "uid": meta["uid"], "spec": dict(spec),
             "status": {"optimization": dict(status).get("optimization"),
                        "database": dict(status).get("database")}}
    await run_cleanups(PROFILE_CLEANUPS, ctx, retry, entry)


@deferred.replayer("PerformanceProfile")
async def replay_profile_cleanup(entry: dict[str, Any], events: EventRecorder) -> None:
    """A deferred profile cleanup (see handlers/deferred): its indexes by indexPrunePolicy and,
    once its namespace is gone, the mirror rows of its tenants."""
    namespace, name = entry["namespace"], entry["name"]
    model = resolve_profile(namespace, name,
                            PerformanceProfileSpec.model_validate(entry["spec"])).spec
    ctx = ProfileContext(name=name, namespace=namespace, uid=entry["uid"], generation=0,
                         spec=model, status=entry["status"], events=events,
                         logger=deferred.logger)
    await deferred.clean(PROFILE_CLEANUPS + (_delete_mirrors,), ctx)


async def _delete_mirrors(ctx: ProfileContext) -> None:
    """The mirror rows of a deleted profile's tenants, once its namespace is gone (and its
    tenants with it, whether or not their own cleanups ran)."""
    if ctx.spec.database is not None and not await namespace_exists(ctx.namespace):
        target = await target_for_profile(ctx.namespace, ctx.name,
                                          ctx.spec.database.resolved_connection)
        await delete_profile_mirrors(target, ctx.namespace, ctx.name)
        await forget_target(target)


async def reconcile(*, body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta,
                    name: str, namespace: str, patch: kopf.Patch, logger, **_
                    ) -> float | None:
    """Make the profile true once; returns how soon to look again when work goes on in the
    background (None: the resync timer is soon enough)."""
    generation = meta.get("generation", 0)
    current = dict(status)
    events = EventRecorder(body, logger)
    try:
        model = PerformanceProfileSpec.model_validate(dict(spec))
    except pydantic.ValidationError as err:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, extra={"tenants": tenant_summary(namespace, name, None)},
                     ready_override=(REJECTED, describe_validation_error(err)))
        return None
    tenants = tenant_summary(namespace, name, model.websocket)
    problems = await off_loop(semantic_errors, model)
    shadowed = profile_rule_errors(model)
    if problems or shadowed:
        reason = REJECTED if problems else RULE_SHADOWED
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, extra={"tenants": tenants},
                     ready_override=(reason, "; ".join(problems + shadowed)))
        return None
    if model.paused:
        write_status(patch=patch, current=current, generation=generation, results=[],
                     events=events, extra={"tenants": tenants},
                     ready_override=(PAUSED, "spec.paused is true: nothing is changed"))
        return None
    try:
        resolution = resolve_profile(namespace, name, model)
    except TargetRefused as err:
        refused = Outcome(TARGET_RESOLVED, False, err.reason, str(err))
        write_status(patch=patch, current=current, generation=generation,
                     results=[(TARGET_RESOLVED, refused)], events=events,
                     extra={"tenants": tenants})
        return None
    ctx = ProfileContext(name=name, namespace=namespace, uid=meta["uid"], generation=generation,
                         spec=resolution.spec, status=current, events=events,
                         logger=logger, created=meta.get("creationTimestamp"),
                         redis_peers=redis_peers.get("all", []),
                         postgres_peers=postgres_peers.get("all", []))
    results = await run_parts("PerformanceProfile", PROFILE_PARTS, ctx)
    results.append((TARGET_RESOLVED, _target_outcome(resolution)))
    results.append((OVERCOMMITTED, _overcommit(model, tenants)))
    write_status(patch=patch, current=current, generation=generation, results=results,
                 events=events, extra={"tenants": tenants})
    return next_requeue(results)


def _target_outcome(resolution: Resolution) -> Outcome | None:
    """``TargetResolved`` for a profile using a PerformanceTarget: which one, and what its
    policy left out (server-wide settings of a profile that does not own them)."""
    if resolution.target is None:
        return None
    return Outcome(TARGET_RESOLVED, True,
                   SETTINGS_LEFT_OUT if resolution.left_out else TARGET_GRANTED,
                   resolution.describe())


def _overcommit(model: PerformanceProfileSpec, tenants: dict[str, int]) -> Outcome | None:
    """``Overcommitted`` is True when the tenants' WebSocket limits add up to more than the
    profile's maximum; that also makes the profile not Ready."""
    maximum = model.websocket.max_connections
    committed = tenants["websocketCommitted"]
    if committed <= maximum:
        return Outcome(condition=OVERCOMMITTED, ready=True, abnormal_true=True,
                       reason=WITHIN_CAPACITY,
                       message=f"tenants commit {committed} of {maximum} WebSocket connections")
    return Outcome(condition=OVERCOMMITTED, ready=False, abnormal_true=True,
                   reason=WEBSOCKET_OVERCOMMITTED,
                   message=f"tenants commit {committed} WebSocket connections, more than the "
                           f"profile's maximum of {maximum}")

