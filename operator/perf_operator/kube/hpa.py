"""HorizontalPodAutoscalers (autoscaling/v2) from a profile's ``scaling.rules``.

Each rule becomes one HPA named ``<profile>-<rule>``, owned by the profile (deleting the profile
garbage-collects it) and written with server-side apply as ``perf-operator``.

An HPA the operator does not own is never silently overwritten: not one of the same name, and
not one of any name that already scales the rule's workload (two HPAs on one workload fight
over its replica count). Such a rule reports ``Conflict`` until the rule says ``takeOver: true``;
then the existing HPA is taken over under its own name (its conflicting fields move to the
operator with a forced apply), so the workload still has exactly one HPA.

A deleted HPA is recreated and a hand-edited one is put back on the next resync; an HPA whose
rule left the spec is deleted. When nothing differs, nothing is written.

In Auto mode the optimizer may raise a rule's minReplicas (``status.optimization.enforced``,
never above the rule's maxReplicas); the HPA gets the raised floor on the next pass.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from ..api.conditions import APPLY_FAILED, HPAS_APPLIED, NO_RULES, RESOURCE_CONFLICT, SCALING_READY
from ..api.optimization import adjustments
from ..reconcile import Outcome, ProfileContext
from . import apply as k8s

CONDITION = SCALING_READY
RULE_LABEL = "perf.idp.io/scaling-rule"


def desired_hpa(rule: Any, profile: str, namespace: str, owner_reference: dict[str, Any]
                ) -> dict[str, Any]:
    """The apply body of one rule's HPA: exactly the fields the operator manages."""
    body = k8s.owned_object(k8s.HPA, k8s.object_name(profile, rule.name), profile, namespace,
                            owner_reference, component="scaling")
    body["metadata"]["labels"][RULE_LABEL] = rule.name
    metrics: list[dict[str, Any]] = []
    for resource, utilization in (("cpu", rule.cpu_utilization),
                                  ("memory", rule.memory_utilization)):
        if utilization is not None:
            metrics.append({"type": "Resource", "resource": {"name": resource, "target": {
                "type": "Utilization", "averageUtilization": utilization}}})
    for custom in rule.metrics or []:
        metric: dict[str, Any] = {"name": custom.name}
        if custom.selector:
            metric["selector"] = {"matchLabels": dict(sorted(custom.selector.items()))}
        key = "pods" if custom.type == "Pods" else "external"
        metrics.append({"type": custom.type, key: {"metric": metric, "target": {
            "type": "AverageValue", "averageValue": custom.target_average_value}}})
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": rule.target.api_version, "kind": rule.target.kind,
                           "name": rule.target.name},
        "minReplicas": rule.min_replicas,
        "maxReplicas": rule.max_replicas,
        "metrics": metrics,
    }
    behavior = {}
    for direction, rules in (("scaleUp", rule.behavior and rule.behavior.scale_up),
                             ("scaleDown", rule.behavior and rule.behavior.scale_down)):
        if rules is not None:
            behavior[direction] = _scaling_rules(rules)
    if behavior:
        spec["behavior"] = behavior
    body["spec"] = spec
    return body


def _scaling_rules(rules: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rules.stabilization_window_seconds is not None:
        out["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    if rules.select_policy is not None:
        out["selectPolicy"] = rules.select_policy
    if rules.policies:
        out["policies"] = [{"type": p.type, "value": p.value, "periodSeconds": p.period_seconds}
                           for p in rules.policies]
    return out


@dataclass(frozen=True)
class RuleStep:
    """What to do for one rule: its HPA's name and the apply decision."""

    rule: str
    hpa: str
    apply: k8s.ApplyStep


@dataclass(frozen=True)
class PruneStep:
    """An HPA the profile owns that no rule wants any more."""

    hpa: str
    uid: str


def plan_scaling(desired: list[tuple[str, bool, dict[str, Any]]],
                 observed: list[dict[str, Any]], owner_uid: str,
                 previously_applied: set[str]) -> list[RuleStep | PruneStep]:
    """Decide, without I/O, what to do about every rule and every HPA in the namespace.

    ``desired``: (rule name, takeOver, apply body) per rule. ``observed``: every HPA in the
    namespace. ``previously_applied``: rules whose HPA the operator had applied (a missing one
    is then "restored" rather than "created")."""
    by_name = {h["metadata"]["name"]: h for h in observed}
    steps: list[RuleStep | PruneStep] = []
    kept: set[str] = set()
    for rule, take_over, body in desired:
        on_target = [h for h in observed if _same_target(h, body)]
        adopted = next((h for h in on_target if k8s.owned_by(h, owner_uid)), None)
        if adopted is not None:  # ours already (created by us, or taken over earlier)
            body = _renamed(body, adopted["metadata"]["name"])
        name = body["metadata"]["name"]
        current = by_name.get(name)
        rivals = [h for h in on_target
                  if h["metadata"]["name"] != name and not k8s.owned_by(h, owner_uid)]
        if current is not None and not k8s.owned_by(current, owner_uid):
            step = k8s.plan_owned(body, current, owner_uid, top_level="spec",
                                  take_over=take_over)
        elif rivals and current is None and take_over:
            rival = rivals[0]
            body = _renamed(body, rival["metadata"]["name"])
            step = k8s.plan_owned(body, rival, owner_uid, top_level="spec", take_over=True)
        elif rivals:
            rival = rivals[0]
            holders = ", ".join(k8s.foreign_managers(rival, "spec")) or "another manager"
            step = k8s.ApplyStep("conflict", body, detail=(
                f"is not written: HPA {rival['metadata']['name']} (managed by {holders}) "
                f"already scales {_target_text(body)}"))
        else:
            step = k8s.plan_owned(body, current, owner_uid, top_level="spec",
                                  previously_applied=rule in previously_applied)
        steps.append(RuleStep(rule, step.body["metadata"]["name"], step))
        kept.add(step.body["metadata"]["name"])
    for hpa in observed:
        meta = hpa["metadata"]
        if k8s.owned_by(hpa, owner_uid) and meta["name"] not in kept:
            steps.append(PruneStep(meta["name"], meta["uid"]))
    return steps


def _same_target(hpa: dict[str, Any], body: dict[str, Any]) -> bool:
    have = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    want = body["spec"]["scaleTargetRef"]
    return (have.get("kind"), have.get("name")) == (want["kind"], want["name"])


def _renamed(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "name": name}}


def _target_text(body: dict[str, Any]) -> str:
    ref = body["spec"]["scaleTargetRef"]
    return f"{ref['kind']}/{ref['name']}"


# --- executor -------------------------------------------------------------------------------

def desired_hpas(ctx: ProfileContext) -> list[tuple[str, bool, dict[str, Any]]]:
    """(rule, takeOver, HPA body) per scaling rule, with the optimizer's raised floors (Auto
    mode; none otherwise): what ``plan_scaling`` takes, for the reconciler and the plan."""
    adj = adjustments(ctx.status)
    return [(rule.name, rule.take_over,
             desired_hpa(rule.model_copy(update={"min_replicas": adj.min_replicas(
                 rule.name, rule.min_replicas, rule.max_replicas)}),
                 ctx.name, ctx.namespace, ctx.owner_reference()))
            for rule in ctx.spec.scaling.rules]


async def reconcile_scaling(ctx: ProfileContext) -> Outcome | None:
    """Make the profile's HPAs match ``scaling.rules``."""
    previous = {r["name"]: r for r in (ctx.status.get("scaling") or {}).get("rules") or []}
    rules = ctx.spec.scaling.rules
    if not rules and not previous:
        return None
    observed = await k8s.list_objects(k8s.HPA, ctx.namespace)
    applied = {name for name, state in previous.items() if state.get("state") == "Applied"}
    statuses: list[dict[str, Any]] = []
    for step in plan_scaling(desired_hpas(ctx), observed, ctx.uid, applied):
        if isinstance(step, PruneStep):
            if await k8s.delete_owned(k8s.HPA, ctx.namespace, step.hpa, step.uid):
                ctx.events.normal("Deleted", f"deleted HPA {step.hpa}: its rule left the spec")
            continue
        statuses.append(await _execute(ctx, step, previous.get(step.rule) or {}))
    if not rules:
        return Outcome(condition=CONDITION, ready=True, reason=NO_RULES,
                       message="no scaling rules", status={"scaling": None})
    return _outcome(statuses)


async def _execute(ctx: ProfileContext, step: RuleStep, previous: dict[str, Any]
                   ) -> dict[str, Any]:
    where = f"HPA {step.hpa}"
    plan = step.apply
    if plan.action == "conflict":
        if previous.get("state") != "Conflict":
            k8s.announce(ctx.events, plan, where)
        return _rule_status(step, "Conflict", f"{where} {plan.detail}; set takeOver: true to "
                                              f"take it over")
    if plan.writes:
        try:
            await k8s.apply(plan.body, force=plan.force)
        except ApiException as err:
            message = k8s.api_error_message(err)
            if err.status == 409:  # someone created or took it between our read and write
                if previous.get("state") != "Conflict":
                    k8s.announce(ctx.events, replace(plan, action="conflict", detail=message),
                                 where)
                return _rule_status(step, "Conflict", f"{where}: {message}")
            ctx.events.warning("ApplyFailed", f"{where}: {message}")
            return _rule_status(step, "Failed", f"{where}: {message}")
        k8s.announce(ctx.events, plan, where)
    spec = plan.body["spec"]
    return _rule_status(step, "Applied", f"{where} scales {_target_text(plan.body)} between "
                                         f"{spec['minReplicas']} and {spec['maxReplicas']} "
                                         f"replicas")


def _rule_status(step: RuleStep, state: str, message: str) -> dict[str, Any]:
    return {"name": step.rule, "state": state, "message": message}


def _outcome(statuses: list[dict[str, Any]]) -> Outcome:
    status = {"scaling": {"rules": statuses}}
    failing = [s for s in statuses if s["state"] != "Applied"]
    if not failing:
        return Outcome(condition=CONDITION, ready=True, reason=HPAS_APPLIED,
                       message=f"{len(statuses)} HPA(s) match the scaling rules", status=status)
    reason = (RESOURCE_CONFLICT if any(s["state"] == "Conflict" for s in failing)
              else APPLY_FAILED)
    return Outcome(condition=CONDITION, ready=False, reason=reason,
                   message="; ".join(f"rule {s['name']}: {s['message']}" for s in failing),
                   status=status)
