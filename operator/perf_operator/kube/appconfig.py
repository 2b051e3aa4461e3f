"""The application's performance configuration, as a ConfigMap the profile owns.

Everything the platform's middleware enforces itself and that is not per tenant (per-tenant
limits live in the Redis tables): compression, maximum request size, cache headers, rate
limiting switches and the global per-IP limit, cache TTLs per data type, the database pool,
WebSocket limits and feature flags. It is published twice in the same ConfigMap:

* ``performance.json``: the whole document (canonical JSON, keys sorted), for applications
  that read a file;
* the seed's environment variables (``ENABLE_COMPRESSION``, ``DB_POOL_MIN`` ...), for
  ``envFrom``.

The sha256 of the data is reported in status and, for the Deployments the profile names,
stamped on their pod template (annotation ``perf.idp.io/config-hash``) with server-side apply,
owning only that annotation: a changed configuration rolls them, an unchanged one writes nothing.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from .. import FIELD_MANAGER
from ..api.conditions import APP_CONFIG_READY, CONFIG_APPLIED, NO_APP_CONFIG, STAMP_FAILED
from ..api.optimization import Adjustments, adjustments
from ..reconcile import Outcome, ProfileContext
from . import apply as k8s

CONDITION = APP_CONFIG_READY
DOCUMENT_KEY = "performance.json"
HASH_ANNOTATION = "perf.idp.io/config-hash"


def config_document(spec: Any, adj: Adjustments | None = None) -> dict[str, Any]:
    """What the middleware reads. Sections are dumped whole from the models, so a field added
    to the API reaches the application without a change here. ``adj``: the optimizer's
    adjustments in force (``api.optimization.adjustments``), which switch the circuit breaker
    and load shedding flags."""
    adj = adj or Adjustments()
    api = spec.api.model_dump(mode="json", by_alias=True)
    rate_limits = api.pop("rateLimits")
    document: dict[str, Any] = {
        "api": {**api, "rateLimiting": {"enabled": rate_limits["enabled"],
                                        "perIp": rate_limits["perIp"]}},
        "cache": spec.cache.model_dump(mode="json", by_alias=True),
        "websocket": spec.websocket.model_dump(mode="json", by_alias=True),
        # The seed's responses to an error-rate spike, off until the optimizer (Auto mode)
        # turns them on; load shedding itself is in the tenants' tables, the flag says it is on.
        "featureFlags": {
            "compression": spec.api.compression.enabled,
            "rateLimiting": spec.api.rate_limits.enabled,
            "monitoring": spec.alerts.enabled,
            "circuitBreaker": adj.circuit_breaker,
            "fallbackResponseCaching": False,
            "loadShedding": adj.load_shedding > 0,
        },
    }
    if spec.database is not None:
        document["database"] = {"pool": spec.database.pool.model_dump(mode="json",
                                                                       by_alias=True)}
    if spec.redis is not None:
        document["redis"] = {"keyPrefix": spec.redis.key_prefix}
    return document


def config_data(spec: Any, adj: Adjustments | None = None) -> dict[str, str]:
    """The ConfigMap's data: the document and the seed's environment variables."""
    document = config_document(spec, adj)
    flags = document["featureFlags"]
    data = {
        DOCUMENT_KEY: json.dumps(document, sort_keys=True, indent=2) + "\n",
        "ENABLE_COMPRESSION": _env(flags["compression"]),
        "ENABLE_RATE_LIMITING": _env(flags["rateLimiting"]),
        "ENABLE_MONITORING": _env(flags["monitoring"]),
        "COMPRESSION_MIN_SIZE_BYTES": str(spec.api.compression.min_size_bytes),
        "MAX_REQUEST_SIZE_BYTES": str(spec.api.max_request_size_bytes),
        "WEBSOCKET_MAX_CONNECTIONS": str(spec.websocket.max_connections),
    }
    if spec.database is not None:
        data["DB_POOL_MIN"] = str(spec.database.pool.min)
        data["DB_POOL_MAX"] = str(spec.database.pool.max)
    if spec.redis is not None:
        data["REDIS_KEY_PREFIX"] = spec.redis.key_prefix
    return data


def _env(flag: bool) -> str:
    return "true" if flag else "false"


def desired_config_map(name: str, data: dict[str, str], ctx: ProfileContext) -> dict[str, Any]:
    body = k8s.owned_object(k8s.CONFIG_MAP, name, ctx.name, ctx.namespace,
                            ctx.owner_reference(), component="app-config")
    body["data"] = data
    return body


@dataclass(frozen=True)
class StampStep:
    """Put the config hash on one Deployment's pod template (or report it missing)."""

    deployment: str
    action: str  # stamp | unchanged | missing
    force: bool = False


def plan_stamps(names: list[str], observed: dict[str, dict[str, Any] | None],
                config_hash: str) -> list[StampStep]:
    """Pure: which Deployments need the annotation. Force only takes the annotation back when
    another manager wrote it (it is ours by name); other fields are never in our apply."""
    steps = []
    for name in names:
        deployment = observed.get(name)
        if deployment is None:
            steps.append(StampStep(name, "missing"))
            continue
        template = (deployment.get("spec") or {}).get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if annotations.get(HASH_ANNOTATION) == config_hash:
            steps.append(StampStep(name, "unchanged"))
            continue
        holders = _annotation_managers(deployment) - {FIELD_MANAGER}
        steps.append(StampStep(name, "stamp", force=bool(holders)))
    return steps


def _annotation_managers(deployment: dict[str, Any]) -> set[str]:
    path = ("f:spec", "f:template", "f:metadata", "f:annotations", f"f:{HASH_ANNOTATION}")
    managers = set()
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        for key in path:
            fields = fields.get(key) if isinstance(fields, dict) else None
        if fields is not None:
            managers.add(entry["manager"])
    return managers


def stamp_body(deployment: str, namespace: str, config_hash: str) -> dict[str, Any]:
    """The whole apply body: the one annotation, nothing else of the Deployment."""
    return {"apiVersion": k8s.DEPLOYMENT.api_version, "kind": k8s.DEPLOYMENT.kind,
            "metadata": {"name": deployment, "namespace": namespace},
            "spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: config_hash}}}}}


# --- executor -------------------------------------------------------------------------------

async def reconcile_app_config(ctx: ProfileContext) -> Outcome | None:
    previous = ctx.status.get("appConfig") or {}
    wanted = ctx.spec.app_config
    if previous.get("name") and (wanted is None or wanted.config_map_name != previous["name"]):
        await _remove(ctx, previous["name"])
    if wanted is None:
        if not previous:
            return None
        return Outcome(condition=CONDITION, ready=True, reason=NO_APP_CONFIG,
                       message="spec.appConfig is not set", status={"appConfig": None})
    name = wanted.config_map_name
    data = config_data(ctx.spec, adjustments(ctx.status))
    config_hash = k8s.content_hash(data)
    where = f"ConfigMap {name}"
    observed = await k8s.get_object(k8s.CONFIG_MAP, ctx.namespace, name)
    step = k8s.plan_owned(desired_config_map(name, data, ctx), observed, ctx.uid,
                          top_level="data", previously_applied=previous.get("name") == name)
    failed = await k8s.carry_out(step, status=ctx.status, events=ctx.events,
                                 condition=CONDITION, where=where,
                                 conflict_hint="choose another configMapName or delete it")
    if failed is not None:
        return failed
    status = {"appConfig": {"name": name, "hash": config_hash}}
    names = wanted.stamp_deployments or []
    missing, unstamped = await _stamp(ctx, names, config_hash)
    message = f"{where} (sha256 {config_hash[:12]})"
    if unstamped:
        return Outcome(condition=CONDITION, ready=False, reason=STAMP_FAILED,
                       message=f"{message} applied; " + "; ".join(unstamped), status=status)
    if len(missing) < len(names):
        message += f", stamped on {len(names) - len(missing)} Deployment(s)"
    if missing:
        # Like an HPA whose workload is not there yet: the Deployment may come later (another
        # sync wave); it is stamped on the resync after it appears. Said, not held against Ready.
        message += (f"; Deployment(s) {', '.join(missing)} not found: stamped once they "
                    f"exist")
    return Outcome(condition=CONDITION, ready=True, reason=CONFIG_APPLIED, message=message,
                   status=status)


async def _stamp(ctx: ProfileContext, names: list[str], config_hash: str
                 ) -> tuple[list[str], list[str]]:
    found = await asyncio.gather(*(k8s.get_object(k8s.DEPLOYMENT, ctx.namespace, n)
                                   for n in names))
    observed = dict(zip(names, found, strict=True))
    missing, failed = [], []
    for step in plan_stamps(names, observed, config_hash):
        if step.action == "missing":
            missing.append(step.deployment)
        elif step.action == "stamp":
            try:
                await k8s.apply(stamp_body(step.deployment, ctx.namespace, config_hash),
                                force=step.force)
            except ApiException as err:
                failed.append(f"Deployment {step.deployment}: {k8s.api_error_message(err)}")
                continue
            ctx.events.normal("Stamped", f"Deployment {step.deployment} rolls to config "
                                         f"{config_hash[:12]}")
    return missing, failed


async def _remove(ctx: ProfileContext, name: str) -> None:
    observed = await k8s.get_object(k8s.CONFIG_MAP, ctx.namespace, name)
    if observed and k8s.owned_by(observed, ctx.uid):
        if await k8s.delete_owned(k8s.CONFIG_MAP, ctx.namespace, name,
                                  observed["metadata"]["uid"]):
            ctx.events.normal("Deleted", f"deleted ConfigMap {name}")
