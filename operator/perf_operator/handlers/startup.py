"""Operator-wide kopf settings."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aiohttp
import kopf
import pydantic
from kubernetes_asyncio.client.exceptions import ApiException

from .. import metrics
from ..admission.server import WebhookOptions, start_webhook
from ..api.kinds import TENANT_QUOTA
from ..config import CONFIG
from ..kube import client as kube_client
from ..kube.events import POSTER
from ..kube.namespaces import exact_names
from ..kube.objects import (PAGE_SIZE, list_cluster_objects, list_objects, namespace_labels,
                            wait_until_served)
from ..leadership import LeaderGate
from ..postgres import connect as postgres_connect
from ..redis import connect as redis_connect
from ..targets import REGISTRY
from ..tenants.registry import TENANTS_BY_PROFILE
from ..scrub import scrub
from ..secrets import set_read_hook
from . import deferred, escrow
from .resources import PROFILES, TARGETS, TENANTS
from .profile_registry import clear_profiles, forget_absent_profiles, seed_profile


#: Set by ``perf-operator run --webhook-listen ...`` before the operator starts.
webhook: WebhookOptions | None = None
#: ``perf-operator run --namespace`` patterns (empty: all namespaces), set before the start.
namespaces: tuple[str, ...] = ()


class ProfilesDiffBase(kopf.StatusDiffBaseStorage):
    """kopf's diff-base in ``status.kopf``, kept for the kinds with change handlers only.

    kopf builds the diff-base of every event of every watched kind (a deep copy of the body,
    and the decoded stored one) whether or not a handler of the kind looks at changes; a
    TenantQuota has only a low-level event handler, and the copies were about 7 % of the
    operator's CPU while 10,000 tenants were created. A TenantQuota gets an empty diff-base."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
              ) -> kopf.BodyEssence:
        if body.get("kind") == TENANT_QUOTA.kind:
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        if body.get("kind") == TENANT_QUOTA.kind:
            return None
        return super().fetch(body=body)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    # kopf's progress and diff-base live in status.kopf, never in annotations: Argo CD and
    # every other GitOps tool would show annotations written by the operator as drift.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field="status.kopf.progress", touch_field="status.kopf.dummy")
    settings.persistence.diffbase_storage = ProfilesDiffBase(
        field="status.kopf.lastHandledConfiguration")
    settings.persistence.finalizer = "perf.idp.io/finalizer"
    # Events are posted by kube.events (as perf-operator, repeats counted), not from log lines.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.execution.max_workers = 8
    # kopf keeps an object's worker (its queue, its last body) for this long after its last
    # event (default 5 s): 10,000 tenants created within a minute kept a few thousand idle
    # workers alive at once. A worker is cheap to start again when the next event comes.
    settings.queueing.idle_timeout = 0.5
    # kopf lists what exists in pages (default: one LIST of everything), so the first objects
    # are handled while the rest is still being fetched and decoded: an operator started over
    # 10,000 TenantQuotas has its first one Ready sooner.
    settings.watching.chunk_size = PAGE_SIZE
    # A deleted profile keeps its finalizer until its timers have exited; kopf looks again
    # only this often (default 60 s), which delayed every namespace deletion by up to a minute.
    settings.background.cancellation_polling = 1.0 if CONFIG.test_mode else 5.0
    # kopf serves a namespace it finds terminating at startup never (its namespace scan skips
    # it): a replica that became leader while a watched namespace was being deleted left that
    # namespace's profiles and tenants with their finalizers, and the namespace Terminating,
    # for ever. Namespaces given by name are watched as given, without the scan.
    settings.scanning.disabled = exact_names(namespaces)
    if CONFIG.test_mode:
        settings.watching.reconnect_backoff = 0.5


@kopf.on.startup()
async def elect_leader(memo: kopf.Memo, logger, **_) -> None:
    """Serve metrics, probes and the admission webhook (every replica, leader or not), then
    hold kopf's start until this replica leads: kopf starts no watcher before every startup
    handler has returned, so a standby never acts (DDL must never run twice; kopf's own
    peering only pauses peers of equal priority)."""
    gate = await LeaderGate.from_environment()
    memo.metrics_server = await metrics.start_metrics_server(CONFIG.metrics_port,
                                                             ready=gate.in_contact)
    memo.webhook = None if webhook is None else await start_webhook(webhook, namespaces)
    memo.leader_gate = gate
    memo.leader_task = asyncio.create_task(gate.run())
    logger.info("waiting to lead: Lease %s/%s as %s", gate.namespace, gate.name, gate.identity)
    await gate.elected.wait()
    # Only the leader replays deferred cleanups (they run DDL), from when it leads.
    # From now on every credential is escrowed before it is used (see handlers/escrow.py).
    set_read_hook(escrow.keep)
    memo.deferred_cleanups = asyncio.create_task(deferred.replay_forever(namespaces),
                                                 name="deferred-cleanups")


@kopf.on.startup()
async def seed_registries(memo: kopf.Memo, logger, **_) -> None:
    """Fill the indexes of profiles (see profile_registry) and the registry of tenants by
    profile (see tenants.registry) from one LIST each before any handler runs: kopf starts no
    handler before every startup handler has returned. First wait until both resources are
    served (see wait_until_served): kopf's watchers start next. What was deleted between
    these LISTs and kopf's own is forgotten later (:func:`forget_ghosts`)."""
    for plural in (PROFILES[2], TENANTS[2]):
        await wait_until_served(plural, namespaces)
    clear_profiles()
    profiles = 0
    async for body in list_objects(PROFILES[2], namespaces):
        seed_profile(body)
        profiles += 1
    TENANTS_BY_PROFILE.clear()
    tenants = 0
    async for body in list_objects(TENANTS[2], namespaces):
        TENANTS_BY_PROFILE.seed(body["metadata"]["namespace"], body)
        tenants += 1
    escrow.REGISTRY_SEEDED.set()
    logger.info("%d PerformanceProfiles and %d TenantQuotas known before the watch starts",
                profiles, tenants)
    memo.ghost_check = asyncio.create_task(forget_ghosts(logger), name="forget-ghosts")


#: How long after the startup LISTs the registries are checked against new ones: long after
#: kopf's watchers listed (they start when the startup handlers return).
GHOST_CHECK_DELAY = max(2 * CONFIG.resync_seconds, 10.0)


async def forget_ghosts(logger) -> None:
    """A profile or tenant deleted after the startup LIST but before kopf's own listing gets no
    DELETED event: the registries would keep it for ever (a tenant's tables safe from the
    orphan sweep, a profile its tenants still resolve). Once kopf has listed, LIST again and
    forget what was known from the startup LIST only and is gone."""
    while True:
        await asyncio.sleep(GHOST_CHECK_DELAY)
        try:
            profiles = {(body["metadata"]["namespace"], body["metadata"]["name"])
                        async for body in list_objects(PROFILES[2], namespaces)}
            tenants = {(body["metadata"]["namespace"], body["metadata"]["name"])
                       async for body in list_objects(TENANTS[2], namespaces)}
            break
        except (ApiException, aiohttp.ClientError, asyncio.TimeoutError) as err:
            logger.warning("registries not checked for objects deleted during startup, "
                           "retried: %s", scrub(err))
    ghosts = [f"PerformanceProfile {namespace}/{name}"
              for namespace, name in forget_absent_profiles(profiles)]
    ghosts += [f"TenantQuota {namespace}/{name}"
               for namespace, name in TENANTS_BY_PROFILE.forget_absent(tenants)]
    if ghosts:
        logger.info("deleted while the operator started, no watch event will tell: %s; "
                    "forgotten (what they left is swept)", ", ".join(ghosts))


@kopf.on.startup()
async def seed_target_registry(logger, **_) -> None:
    """Fill the registry target resolution reads (PerformanceTargets, namespace labels) from
    one LIST each before any handler runs: otherwise every profile on a target would report
    TargetNotFound until the watch events arrive."""
    await wait_until_served(TARGETS[2])
    REGISTRY.clear()
    async for body in list_cluster_objects(TARGETS[2]):
        try:
            REGISTRY.put_target(body["metadata"]["name"], body.get("spec") or {})
        except pydantic.ValidationError:
            pass  # its own status says why
    for name, labels in (await namespace_labels()).items():
        REGISTRY.put_namespace(name, labels)
    logger.info("%d PerformanceTargets and %d namespaces known before the watch starts",
                len(REGISTRY.targets), len(REGISTRY.namespace_labels))


@kopf.on.cleanup()
async def step_down(memo: kopf.Memo, **_) -> None:
    for task in ("deferred_cleanups", "ghost_check"):
        if getattr(memo, task, None) is not None:
            getattr(memo, task).cancel()
    try:
        await asyncio.wait_for(POSTER.flush(), timeout=5)
    except asyncio.TimeoutError:
        pass  # the API server is not answering: the queued Events are lost with the process
    await memo.leader_gate.release()
    if memo.webhook is not None:
        await memo.webhook.stop()
    await memo.metrics_server.cleanup()
    await postgres_connect.close_all()
    await redis_connect.close_all()
    await kube_client.close()
