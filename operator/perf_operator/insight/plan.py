"""``kubectl perf plan``: what the operator would do for a profile, computed by the operator's
own planners from a read-only observation of the live servers, and nothing written.

Each part observes exactly what its reconciler observes (the index catalog, ``pg_settings``,
``CONFIG GET``, the tenants' records, the HPAs and rules objects in the namespace) and hands it
to the same pure planner (``postgres.indexes.plan_indexes``, ``postgres.settings.plan_settings``,
``redis.settings.plan_settings``, ``tenants.records.plan_record``, ``kube.hpa.plan_scaling``,
``kube.apply.plan_owned``); the steps are rendered as the statements and commands the executors
would send. Destructive steps (dropping an index, deleting an HPA) are marked.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from psycopg.sql import Composable

from ..api.optimization import adjustments
from ..api.parameters import refusal
from ..api.profile import PerformanceProfileSpec
from ..api.tenant import TenantQuotaSpec, effective_limits
from ..kube import apply as k8s
from ..kube.alerts import RuleTarget, desired_rules_object, profile_rule_group
from ..kube.hpa import PruneStep, desired_hpas, plan_scaling
from ..postgres import desired_indexes, postgres_peer
from ..postgres.connect import APPLICATION_NAME, target_for_profile
from ..postgres.index_builds import observe_catalog
from ..postgres.indexes import (BuildIndex, DropIndex, IndexDefinition, Phase, RefusedIndex,
                                definition_from_spec, plan_indexes, step_statement,
                                temporary_name)
from ..postgres.settings import (PostgresPeer, conflicting_settings, observe_settings,
                                 plan_settings, set_statement)
from ..reconcile import ProfileContext
from ..scrub import scrub
from ..redis import redis_peer
from ..redis.connect import RedisTarget, with_client
from ..redis.settings import config_get, contested_settings
from ..redis.settings import plan_settings as plan_redis_settings
from ..tenants.records import desired_record, observe_record, plan_record, record_owner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedStep:
    """One thing the operator would do: in which system, on what, the exact statement or
    command, and whether it destroys something."""

    system: str
    subject: str
    action: str
    destructive: bool = False
    note: str = ""

    def as_data(self) -> dict[str, Any]:
        return {"system": self.system, "subject": self.subject, "action": self.action,
                "destructive": self.destructive, "note": self.note}


@dataclass(frozen=True)
class Plan:
    profile: str
    steps: tuple[PlannedStep, ...]
    #: Parts that could not be observed (unreachable server, Secret not readable), and why.
    unknown: tuple[str, ...] = ()

    def as_data(self) -> dict[str, Any]:
        return {"profile": self.profile, "steps": [s.as_data() for s in self.steps],
                "unknown": list(self.unknown)}

    @property
    def statements(self) -> list[str]:
        """The SQL of the PostgreSQL steps, in order."""
        return [s.action for s in self.steps if s.system == "postgres"]


def render(plan: Plan) -> str:
    lines = [f"Plan for PerformanceProfile {plan.profile}:"]
    if not plan.steps:
        lines.append("  nothing to do: the live systems match the spec")
    for step in plan.steps:
        mark = "!" if step.destructive else "+"
        note = f"   # {step.note}" if step.note else ""
        lines.append(f"  {mark} [{step.system}] {step.subject}: {step.action}{note}")
    for part in plan.unknown:
        lines.append(f"  ? {part}")
    if any(s.destructive for s in plan.steps):
        lines.append("  (! marks a destructive step)")
    return "\n".join(lines)


async def plan_profile(namespace: str, name: str, spec: dict[str, Any],
                       live: dict[str, Any] | None, tenants: Sequence[dict[str, Any]],
                       peers: Sequence[dict[str, Any]]) -> Plan:
    """The plan for ``spec`` (from a file or the live object) of profile ``namespace/name``.
    ``live``: the profile as the API server has it (its uid and status), None when it does not
    exist yet; ``tenants``: the TenantQuotas referencing it; ``peers``: every profile the user
    can see (who else sets CONFIG on the same Redis)."""
    model = PerformanceProfileSpec.model_validate(spec)
    ctx = ProfileContext(name=name, namespace=namespace,
                         uid=(live or {}).get("metadata", {}).get("uid", ""),
                         generation=0, spec=model, status=dict((live or {}).get("status") or {}),
                         events=None, logger=log,  # type: ignore[arg-type]  # planning posts none
                         created=(live or {}).get("metadata", {}).get("creationTimestamp"))
    steps: list[PlannedStep] = []
    unknown: list[str] = []
    if model.target_ref is None:
        parts = [("postgres", _postgres(ctx, peers)), ("redis", _redis(ctx, spec, peers)),
                 ("tenants", _tenants(ctx, tenants))]
    else:
        # Its servers' credentials are in the operator's namespace: only the operator plans them.
        parts = []
        unknown.append(f"postgres, redis, tenants: not observed: the servers are those of "
                       f"PerformanceTarget {model.target_ref.name}, reached by the operator only")
    parts += [("scaling", _scaling(ctx)), ("alerts", _alerts(ctx))]
    for part, planned in parts:
        try:
            steps += await planned
        except Exception as err:  # noqa: BLE001 - a part not observable is reported, not fatal
            unknown.append(f"{part}: not observed: {type(err).__name__}: {scrub(err)}")
    return Plan(profile=f"{namespace}/{name}", steps=tuple(steps), unknown=tuple(unknown))


def _postgres_peers(peers: Sequence[dict[str, Any]]) -> list[PostgresPeer]:
    """The claims on System-scoped parameters of the profiles the user can see, as the
    operator's registry holds them (a spec that does not validate claims nothing)."""
    claims = []
    for other in peers:
        meta = other.get("metadata") or {}
        try:
            model = PerformanceProfileSpec.model_validate(other.get("spec") or {})
        except pydantic.ValidationError:
            continue
        claim = postgres_peer(meta.get("namespace", ""), meta.get("name", ""), meta, model,
                              other.get("status") or {})
        if claim is not None:
            claims.append(claim)
    return claims


async def _postgres(ctx: ProfileContext, peers: Sequence[dict[str, Any]]) -> list[PlannedStep]:
    database = ctx.spec.database
    if database is None:
        return []
    target = await target_for_profile(ctx.namespace, ctx.name, database.resolved_connection)
    declared = [d if isinstance(d, (IndexDefinition, RefusedIndex)) else definition_from_spec(d)
                for d in desired_indexes(ctx, database)]
    previous = (ctx.status.get("database") or {})
    withdrawn = ({entry.get("name") for entry in previous.get("indexes") or []}
                 - {index.name for index in declared})
    catalog = await observe_catalog(target, declared, withdrawn)
    # A build the operator is running shows as a backend of its application on the index (or
    # its temporary name): the operator's job, not something to cancel.
    busy = {}
    for d in declared:
        for name in (d.name, temporary_name(target.key.owner, d.name)):
            found = catalog.indexes.get((d.schema, name))
            if found is not None and found.builder_application == APPLICATION_NAME:
                busy[(d.schema, d.name)] = Phase.BUILDING
    plan = plan_indexes(target.key.owner, declared, catalog, busy=busy, failures={},
                        prune=database.index_prune_policy == "Delete", now=time.monotonic(),
                        withdrawn=withdrawn)
    steps: list[PlannedStep] = []
    async with target.connection() as conn:
        def text(statement: Composable) -> str:
            return statement.as_string(conn)

        for job in plan.jobs:
            for step in job.steps:
                steps.append(PlannedStep(
                    "postgres", ".".join(job.key), text(step_statement(step)),
                    destructive=isinstance(step, DropIndex),
                    note=(f"drop: {step.reason.value}" if isinstance(step, DropIndex) else
                          "builds without blocking writes" if isinstance(step, BuildIndex)
                          else "")))
        settings = database.settings
        wanted = {n: v for n, v in settings.parameters.items() if refusal(n) is None}
        observation = await observe_settings(conn, list(wanted), settings.scope)
        claim = PostgresPeer(namespace=ctx.namespace, name=ctx.name, created=ctx.created,
                             server=None, parameters={})
        conflicts = conflicting_settings(wanted, settings.scope, observation, claim,
                                         _postgres_peers(peers))
        steps += [PlannedStep("postgres", name, "not sent", note=why)
                  for name, why in conflicts.items()]
        before = {e.get("name"): e for e in previous.get("settings") or []}
        sendable = {n: v for n, v in wanted.items() if n not in conflicts}
        for change in plan_settings(sendable, observation, before):
            steps.append(PlannedStep(
                "postgres", change.name,
                text(set_statement(change.name, change.value, settings.scope,
                                   target.key.dbname)),
                note=(f"was {change.recorded!r}" if change.recorded is not None else "")
                + ("; then SELECT pg_reload_conf()" if settings.scope == "System" else "")))
    return steps


async def _redis(ctx: ProfileContext, raw_spec: dict[str, Any], peers: Sequence[dict[str, Any]]
                 ) -> list[PlannedStep]:
    spec = ctx.spec.redis
    if spec is None:
        return []
    me = redis_peer(ctx.namespace, ctx.name, {"creationTimestamp": ctx.created}, raw_spec)
    others = [p for p in (redis_peer(o["metadata"]["namespace"], o["metadata"]["name"],
                                     o["metadata"], o.get("spec") or {}) for o in peers) if p]
    contested = contested_settings(me, others) if me else {}
    desired = dict(spec.settings)
    observed = await with_client(RedisTarget.from_spec(ctx.namespace, spec.connection),
                                 lambda redis: config_get(redis, sorted(desired)))
    plan = plan_redis_settings(desired, observed, (ctx.status.get("redis") or {})
                               .get("settings") or [], persist=spec.persist_settings,
                               contested=contested)
    steps = [PlannedStep("redis", s.name, f"CONFIG SET {s.name} {s.value}",
                         note=f"was {observed.get(s.name)!r}") for s in plan.steps]
    if plan.rewrite:
        steps.append(PlannedStep("redis", "config file", "CONFIG REWRITE"))
    steps += [PlannedStep("redis", name, "not sent", note=why)
              for name, why in {**plan.rejected, **plan.conflicts}.items()]
    return steps


async def _tenants(ctx: ProfileContext, tenants: Sequence[dict[str, Any]]
                   ) -> list[PlannedStep]:
    spec = ctx.spec.redis
    if spec is None or not tenants:
        return []
    shed = adjustments(ctx.status)
    wanted = []
    for tenant in tenants:
        model = TenantQuotaSpec.model_validate(tenant["spec"])
        limits = effective_limits(ctx.spec, model, shed.load_shedding)
        wanted.append((tenant, desired_record(spec.key_prefix, limits, record_owner(
            tenant["metadata"]["namespace"], tenant["metadata"]["name"]))))

    async def observe(redis: Any) -> list[PlannedStep]:
        steps = []
        for tenant, desired in wanted:
            observed = await observe_record(redis, desired.key)
            reported = int(((tenant.get("status") or {}).get("table") or {}).get("version") or 0)
            for write in plan_record(desired, observed, reported):
                steps.append(PlannedStep(
                    "redis", f"tenant {tenant['spec']['tenantId']}",
                    f"HSET {desired.key} (whole record, version "
                    f"{max(write.floor, observed.version) + 1})",
                    note=f"{write.reason}: limits digest {observed.digest or '-'} -> "
                         f"{desired.digest}"))
            if observed.owner not in (None, desired.owner):
                steps.append(PlannedStep("redis", f"tenant {tenant['spec']['tenantId']}",
                                         "not written",
                                         note=f"{desired.key} belongs to {observed.owner}"))
        return steps

    return await with_client(RedisTarget.from_spec(ctx.namespace, spec.connection), observe)


async def _scaling(ctx: ProfileContext) -> list[PlannedStep]:
    rules = ctx.spec.scaling.rules
    previous = {r["name"]: r for r in (ctx.status.get("scaling") or {}).get("rules") or []}
    if not rules and not previous:
        return []
    observed = await k8s.list_objects(k8s.HPA, ctx.namespace)
    applied = {name for name, state in previous.items() if state.get("state") == "Applied"}
    steps = []
    for step in plan_scaling(desired_hpas(ctx), observed, ctx.uid, applied):
        if isinstance(step, PruneStep):
            steps.append(PlannedStep("kubernetes", f"HPA {step.hpa}", "delete",
                                     destructive=True, note="its rule left the spec"))
        elif step.apply.action != "unchanged":
            steps.append(PlannedStep("kubernetes", f"HPA {step.hpa}", step.apply.action,
                                     note=step.apply.detail))
    return steps


async def _alerts(ctx: ProfileContext) -> list[PlannedStep]:
    if not ctx.spec.alerts.enabled:
        return []
    kind = (k8s.PROMETHEUS_RULE if await k8s.served(k8s.PROMETHEUS_RULE.api_version,
                                                    k8s.PROMETHEUS_RULE.plural)
            else k8s.CONFIG_MAP)
    group = profile_rule_group(ctx.spec, RuleTarget.of_profile(ctx.name, ctx.namespace,
                                                               ctx.spec))
    desired = desired_rules_object(kind, ctx, group)
    name = desired["metadata"]["name"]
    observed = await k8s.get_object(kind, ctx.namespace, name)
    step = k8s.plan_owned(desired, observed, ctx.uid,
                          top_level="data" if kind == k8s.CONFIG_MAP else "spec",
                          previously_applied=(ctx.status.get("alerts") or {}).get("kind")
                          == kind.kind)
    if step.action == "unchanged":
        return []
    return [PlannedStep("kubernetes", f"{kind.kind} {name}", step.action, note=step.detail)]
