"""The HPA builder and the scaling planner, without an API server."""
from __future__ import annotations

import copy

from perf_operator import FIELD_MANAGER
from perf_operator.api import PerformanceProfileSpec
from perf_operator.kube import apply as k8s
from perf_operator.kube.hpa import PruneStep, RuleStep, desired_hpa, plan_scaling

OWNER = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile", "name": "shop",
         "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}


def _rule(**overrides):
    rule = {"name": "api", "target": {"name": "api"}, "maxReplicas": 10, "cpuUtilization": 70}
    rule.update(overrides)
    spec = PerformanceProfileSpec.model_validate({"scaling": {"rules": [rule]}})
    return spec.scaling.rules[0]


def _body(**overrides) -> dict:
    return desired_hpa(_rule(**overrides), "shop", "prod", OWNER)


def _stored(body: dict, *, owner: bool = True, manager: str = FIELD_MANAGER,
            name: str | None = None) -> dict:
    """``body`` as the API server would hold it after the operator applied it (under ``name``)."""
    body = copy.deepcopy(body)
    if name:
        body["metadata"]["name"] = name
    stored = k8s.plan_owned(body, None, "uid-1", top_level="spec").body
    meta = stored["metadata"]
    meta.update(uid=f"uid-of-{meta['name']}", managedFields=[
        {"manager": manager, "operation": "Apply", "fieldsV1": {"f:spec": {}}}])
    if not owner:
        del meta["ownerReferences"]
    return stored


def test_hpa_has_every_part_of_the_rule():
    body = _body(minReplicas=3, memoryUtilization=80,
                 metrics=[{"type": "Pods", "name": "rps", "selector": {"b": "2", "a": "1"},
                           "targetAverageValue": "100"},
                          {"type": "External", "name": "queue", "targetAverageValue": "30"}],
                 behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 4,
                                                     "periodSeconds": 15}]},
                           "scaleDown": {"stabilizationWindowSeconds": 600,
                                         "selectPolicy": "Min"}})
    assert body["metadata"]["name"] == "shop-api"
    assert body["metadata"]["ownerReferences"] == [OWNER]
    assert body["metadata"]["labels"]["perf.idp.io/scaling-rule"] == "api"
    assert body["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
        "minReplicas": 3, "maxReplicas": 10,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 70}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {
                "type": "Utilization", "averageUtilization": 80}}},
            {"type": "Pods", "pods": {
                "metric": {"name": "rps", "selector": {"matchLabels": {"a": "1", "b": "2"}}},
                "target": {"type": "AverageValue", "averageValue": "100"}}},
            {"type": "External", "external": {
                "metric": {"name": "queue"},
                "target": {"type": "AverageValue", "averageValue": "30"}}},
        ],
        "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 4,
                                               "periodSeconds": 15}]},
                     "scaleDown": {"stabilizationWindowSeconds": 600, "selectPolicy": "Min"}},
    }


def test_no_behavior_means_the_hpa_defaults():
    assert "behavior" not in _body()["spec"]


def _only(steps) -> RuleStep:
    [step] = steps
    return step


def test_new_rule_is_created_and_an_unchanged_one_left_alone():
    body = _body()
    assert _only(plan_scaling([("api", False, body)], [], "uid-1", set())).apply.action == \
        "create"
    step = _only(plan_scaling([("api", False, body)], [_stored(body)], "uid-1", {"api"}))
    assert (step.hpa, step.apply.action) == ("shop-api", "unchanged")


def test_same_name_of_another_manager_is_a_conflict_unless_taken_over():
    body = _body()
    foreign = _stored(body, owner=False, manager="kubectl-user")
    conflict = _only(plan_scaling([("api", False, body)], [foreign], "uid-1", set()))
    taken = _only(plan_scaling([("api", True, body)], [foreign], "uid-1", set()))
    assert conflict.apply.action == "conflict" and "kubectl-user" in conflict.apply.detail
    assert (taken.apply.action, taken.apply.force, taken.hpa) == ("take-over", True, "shop-api")


def test_another_hpa_on_the_same_workload_is_a_conflict_then_adopted_under_its_name():
    body = _body()
    rival = _stored(body, owner=False, manager="keda", name="keda-hpa-api")
    conflict = _only(plan_scaling([("api", False, body)], [rival], "uid-1", set()))
    assert conflict.apply.action == "conflict"
    assert conflict.apply.detail == ("is not written: HPA keda-hpa-api (managed by keda) "
                                     "already scales Deployment/api")

    adopted = _only(plan_scaling([("api", True, body)], [rival], "uid-1", set()))
    assert (adopted.hpa, adopted.apply.action) == ("keda-hpa-api", "take-over")
    owned_now = _stored(body, name="keda-hpa-api")
    again = _only(plan_scaling([("api", True, body)], [owned_now], "uid-1", {"api"}))
    assert (again.hpa, again.apply.action) == ("keda-hpa-api", "unchanged")


def test_our_hpa_next_to_a_rival_is_reported_but_kept():
    body = _body()
    rival = _stored(body, owner=False, manager="kubectl-user", name="legacy")
    steps = plan_scaling([("api", False, body)], [_stored(body), rival], "uid-1", {"api"})
    assert _only(steps).apply.action == "conflict"  # and no PruneStep for ours


def test_hpas_of_removed_rules_are_pruned_but_never_others():
    body = _body()
    ours = _stored(_body(), name="shop-old")
    ours["spec"]["scaleTargetRef"]["name"] = "old"
    theirs = _stored(body, owner=False, name="theirs")
    theirs["spec"]["scaleTargetRef"]["name"] = "other"
    steps = plan_scaling([("api", False, body)], [ours, theirs], "uid-1", set())
    assert [s for s in steps if isinstance(s, PruneStep)] == [PruneStep("shop-old",
                                                                         "uid-of-shop-old")]


def test_a_rule_moved_to_another_workload_updates_its_hpa():
    stored = _stored(_body())
    moved = _body(target={"name": "api-v2"})
    step = _only(plan_scaling([("api", False, moved)], [stored], "uid-1", {"api"}))
    assert (step.hpa, step.apply.action) == ("shop-api", "update")
