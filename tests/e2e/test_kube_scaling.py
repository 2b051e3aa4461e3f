"""HPAs on the real control plane: created with server-side apply and owned by a real
PerformanceProfile, updated, restored after deletion and hand edits, never overwriting an HPA
another manager owns unless told to take it over, byte-stable (a second reconcile sends no
write), and garbage-collected with the profile by kube-controller-manager."""
from __future__ import annotations

import copy

import pytest

from perf_operator import FIELD_MANAGER
from perf_operator.kube import apply as k8s
from perf_operator.kube import reconcile_alerts, reconcile_app_config, reconcile_scaling
from perf_operator.kube.hpa import desired_hpa
from tests.e2e.kube_outputs import (RecordedEvents, api_writes, apply_profile, context,
                                    managers, remember, respec, writes_between)
from tests.support.kube import eventually

#: The test calls the reconcilers itself; the session operator must not act here too.
pytestmark = pytest.mark.isolated

API_RULE = {
    "name": "api",
    "target": {"name": "api"},
    "minReplicas": 2,
    "maxReplicas": 10,
    "cpuUtilization": 70,
    "memoryUtilization": 80,
    "metrics": [{"type": "Pods", "name": "http_requests_per_second",
                 "selector": {"route": "plugins"}, "targetAverageValue": "1000"},
                {"type": "External", "name": "queue_depth", "targetAverageValue": "500m"}],
    "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0,
                             "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15},
                                          {"type": "Pods", "value": 4, "periodSeconds": 15}],
                             "selectPolicy": "Max"},
                 "scaleDown": {"stabilizationWindowSeconds": 120,
                               "policies": [{"type": "Percent", "value": 10,
                                             "periodSeconds": 60}]}},
}

FOREIGN_HPA = """apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
"""


def _spec(*rules: dict) -> dict:
    return {"scaling": {"rules": [copy.deepcopy(r) for r in rules]}}


@pytest.fixture
def profile(crds, namespace):
    return apply_profile(crds, namespace, "shop", _spec(API_RULE))


async def _reconcile(ctx):
    return remember(ctx, await reconcile_scaling(ctx))


async def test_creates_an_owned_hpa_and_a_second_reconcile_writes_nothing(
        stack, kubectl, namespace, profile):
    ctx = context(profile, RecordedEvents())
    before = api_writes(stack, "horizontalpodautoscalers")
    outcome = await _reconcile(ctx)
    # the counter sees the one apply that created it (so it would see any other write)
    assert writes_between(before, api_writes(stack, "horizontalpodautoscalers")) == {
        "horizontalpodautoscalers:APPLY": 1}

    assert outcome.ready and outcome.reason == "HPAsApplied"
    assert ctx.status["scaling"]["rules"] == [{
        "name": "api", "state": "Applied",
        "message": "HPA shop-api scales Deployment/api between 2 and 10 replicas"}]
    assert ctx.events.take() == ["Created"]
    hpa = kubectl.get("hpa", "shop-api", namespace)
    assert hpa["metadata"]["ownerReferences"] == [{
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile", "name": "shop",
        "uid": profile["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert managers(kubectl, "hpa", "shop-api", namespace) == {FIELD_MANAGER: "Apply"}
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    assert [m["type"] for m in spec["metrics"]] == ["Resource", "Resource", "Pods", "External"]
    assert spec["metrics"][2]["pods"]["target"]["averageValue"] == "1k"  # canonical on server
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    assert spec["behavior"]["scaleUp"]["policies"][1] == {"type": "Pods", "value": 4,
                                                          "periodSeconds": 15}

    before = api_writes(stack, "horizontalpodautoscalers")
    for _ in range(3):
        again = await _reconcile(ctx)
        assert again.ready and again.status == outcome.status
    after = api_writes(stack, "horizontalpodautoscalers")
    assert writes_between(before, after) == {}
    assert kubectl.get("hpa", "shop-api", namespace)["metadata"]["resourceVersion"] == \
        hpa["metadata"]["resourceVersion"]
    assert ctx.events.take() == []


async def test_a_changed_rule_updates_the_hpa(kubectl, namespace, profile):
    ctx = context(profile, RecordedEvents())
    await _reconcile(ctx)
    changed = copy.deepcopy(API_RULE)
    changed["maxReplicas"] = 25
    del changed["memoryUtilization"]
    del changed["behavior"]["scaleDown"]
    ctx = respec(ctx, kubectl, _spec(changed))
    ctx.events.take()

    outcome = await _reconcile(ctx)

    assert outcome.ready
    assert ctx.events.reasons() == ["Updated"]
    spec = kubectl.get("hpa", "shop-api", namespace)["spec"]
    assert spec["maxReplicas"] == 25
    assert [m.get("resource", {}).get("name") for m in spec["metrics"]][:2] == ["cpu", None]
    # no longer applied, so removed: the API server's defaults for scale-down are back
    scale_down = spec["behavior"]["scaleDown"]
    assert "stabilizationWindowSeconds" not in scale_down
    assert scale_down["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 15}]


async def test_restores_a_deleted_hpa(kubectl, namespace, profile):
    ctx = context(profile, RecordedEvents())
    await _reconcile(ctx)
    uid = kubectl.get("hpa", "shop-api", namespace)["metadata"]["uid"]
    kubectl.run("delete", "hpa", "shop-api", namespace=namespace)
    ctx.events.take()

    outcome = await _reconcile(ctx)

    assert outcome.ready
    assert ctx.events.reasons() == ["Restored"]
    restored = kubectl.get("hpa", "shop-api", namespace)
    assert restored["metadata"]["uid"] != uid and restored["spec"]["maxReplicas"] == 10


async def test_restores_a_hand_edited_hpa(stack, kubectl, namespace, profile):
    ctx = context(profile, RecordedEvents())
    await _reconcile(ctx)
    kubectl.run("patch", "hpa", "shop-api", "--type=merge",
                "-p", '{"spec":{"maxReplicas":50,"minReplicas":1}}', namespace=namespace)
    assert "kubectl-patch" in managers(kubectl, "hpa", "shop-api", namespace)
    ctx.events.take()

    outcome = await _reconcile(ctx)

    assert outcome.ready
    [(kind, reason, message)] = ctx.events.events
    assert (kind, reason) == ("Normal", "Restored")
    assert "spec.maxReplicas" in message and "kubectl-patch" in message
    hpa = kubectl.get("hpa", "shop-api", namespace)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert managers(kubectl, "hpa", "shop-api", namespace) == {FIELD_MANAGER: "Apply"}
    before = api_writes(stack, "horizontalpodautoscalers")
    await _reconcile(ctx)
    assert writes_between(before, api_writes(stack, "horizontalpodautoscalers")) == {}


async def test_an_hpa_of_another_manager_is_a_conflict_until_taken_over(
        stack, kubectl, namespace, crds):
    kubectl.apply(FOREIGN_HPA.format(name="shop-api", target="api"), namespace,
                  "--server-side", "--field-manager=kubectl-user")
    foreign = kubectl.get("hpa", "shop-api", namespace)
    profile = apply_profile(crds, namespace, "shop", _spec(API_RULE))
    ctx = context(profile, RecordedEvents())

    before = api_writes(stack, "horizontalpodautoscalers")
    outcome = await _reconcile(ctx)
    await _reconcile(ctx)  # the conflict is announced once, not on every resync

    assert not outcome.ready and outcome.reason == "ResourceConflict"
    [rule] = ctx.status["scaling"]["rules"]
    assert rule["state"] == "Conflict" and "kubectl-user" in rule["message"]
    assert ctx.events.reasons() == ["Conflict"]
    assert writes_between(before, api_writes(stack, "horizontalpodautoscalers")) == {}
    untouched = kubectl.get("hpa", "shop-api", namespace)
    assert untouched["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]

    taking = copy.deepcopy(API_RULE)
    taking["takeOver"] = True
    ctx = respec(ctx, kubectl, _spec(taking))
    ctx.events.take()
    outcome = await _reconcile(ctx)

    assert outcome.ready and ctx.status["scaling"]["rules"][0]["state"] == "Applied"
    assert ctx.events.reasons() == ["TakenOver"]
    hpa = kubectl.get("hpa", "shop-api", namespace)
    assert hpa["metadata"]["uid"] == foreign["metadata"]["uid"]  # taken over, not replaced
    assert k8s.owned_by(hpa, profile["metadata"]["uid"])
    assert hpa["spec"]["maxReplicas"] == 10
    assert managers(kubectl, "hpa", "shop-api", namespace)[FIELD_MANAGER] == "Apply"


async def test_an_hpa_of_another_name_on_the_same_workload_is_a_conflict_then_adopted(
        kubectl, namespace, crds):
    kubectl.apply(FOREIGN_HPA.format(name="legacy-api", target="api"), namespace,
                  "--server-side", "--field-manager=kubectl-user")
    profile = apply_profile(crds, namespace, "shop", _spec(API_RULE))
    ctx = context(profile, RecordedEvents())

    outcome = await _reconcile(ctx)

    assert outcome.reason == "ResourceConflict"
    assert "legacy-api" in ctx.status["scaling"]["rules"][0]["message"]
    assert kubectl.get("hpa", "shop-api", namespace) is None  # no second HPA on the workload

    taking = copy.deepcopy(API_RULE)
    taking["takeOver"] = True
    ctx = respec(ctx, kubectl, _spec(taking))
    outcome = await _reconcile(ctx)

    assert outcome.ready
    assert ctx.status["scaling"]["rules"][0]["message"].startswith("HPA legacy-api scales")
    legacy = kubectl.get("hpa", "legacy-api", namespace)
    assert k8s.owned_by(legacy, profile["metadata"]["uid"])
    assert legacy["spec"]["maxReplicas"] == 10
    assert kubectl.get("hpa", "shop-api", namespace) is None
    await _reconcile(ctx)  # stays adopted under its own name
    assert kubectl.get("hpa", "shop-api", namespace) is None


async def test_an_hpa_whose_rule_left_the_spec_is_deleted(kubectl, namespace, profile):
    worker = {"name": "worker", "target": {"name": "worker"}, "maxReplicas": 4,
              "cpuUtilization": 60}
    ctx = respec(context(profile, RecordedEvents()), kubectl, _spec(API_RULE, worker))
    await _reconcile(ctx)
    assert kubectl.get("hpa", "shop-worker", namespace) is not None
    kubectl.apply(FOREIGN_HPA.format(name="someone-elses", target="other"), namespace)
    ctx = respec(ctx, kubectl, _spec(API_RULE))
    ctx.events.take()

    await _reconcile(ctx)

    assert kubectl.get("hpa", "shop-worker", namespace) is None
    assert ctx.events.reasons() == ["Deleted"]
    assert kubectl.get("hpa", "someone-elses", namespace) is not None
    ctx = respec(ctx, kubectl, {"scaling": {"rules": []}})
    outcome = await _reconcile(ctx)
    assert outcome.reason == "NoRules" and "scaling" not in ctx.status
    assert kubectl.get("hpa", "shop-api", namespace) is None
    assert await reconcile_scaling(ctx) is None


async def test_server_side_dry_run_accepts_every_generated_object(kubectl, namespace, profile):
    """The API server validates and defaults what the builders produce, persisting nothing."""
    from perf_operator.kube.alerts import (RuleTarget, alert_signals, desired_rules_object,
                                           rule_group)
    from perf_operator.kube.appconfig import config_data, desired_config_map

    spec = {**_spec(API_RULE, {"name": "worker", "target": {"name": "worker", "kind":
                                                              "StatefulSet"},
                               "maxReplicas": 4, "memoryUtilization": 60}),
            "appConfig": {"configMapName": "shop-performance"},
            "alerts": {"labels": {"team": "platform"}}}
    ctx = respec(context(profile, RecordedEvents()), kubectl, spec)
    bodies = [desired_hpa(rule, ctx.name, ctx.namespace, ctx.owner_reference())
              for rule in ctx.spec.scaling.rules]
    group = rule_group(alert_signals(ctx.spec), RuleTarget.of_profile(ctx.name, ctx.namespace,
                                                                    ctx.spec))
    bodies.append(desired_rules_object(k8s.CONFIG_MAP, ctx, group))
    bodies.append(desired_config_map("shop-performance", config_data(ctx.spec), ctx))

    for body in bodies:
        result = await k8s.apply(body, dry_run=True)
        assert result["metadata"]["name"] == body["metadata"]["name"]
        assert k8s.drifted(body, result) == []  # what we compare against is what it stores
        assert await k8s.get_object(k8s.kind_of(body), namespace,
                                    body["metadata"]["name"]) is None


async def test_deleting_the_profile_garbage_collects_its_objects(kubectl, namespace, crds):
    spec = {**_spec(API_RULE), "appConfig": {"configMapName": "shop-performance"}}
    profile = apply_profile(crds, namespace, "shop", spec)
    ctx = context(profile, RecordedEvents())
    for reconciler in (reconcile_scaling, reconcile_alerts, reconcile_app_config):
        assert (await reconciler(ctx)).ready
    kubectl.apply(FOREIGN_HPA.format(name="not-ours", target="other"), namespace)
    assert kubectl.get("configmap", "shop-alerts", namespace) is not None

    kubectl.run("delete", "performanceprofile", "shop", "--wait=false", namespace=namespace)

    for kind, name in (("hpa", "shop-api"), ("configmap", "shop-alerts"),
                       ("configmap", "shop-performance")):
        eventually(lambda kind=kind, name=name: kubectl.get(kind, name, namespace) is None,
                   timeout=60, what=f"the garbage collector to delete {kind} {name}")
    assert kubectl.get("hpa", "not-ours", namespace) is not None
