"""The pure half of server-side apply: what counts as drift, and what to do about an object."""
from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from perf_operator import FIELD_MANAGER
from perf_operator.kube import apply as k8s

OWNER = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile", "name": "shop",
         "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}


def _desired() -> dict:
    body = k8s.owned_object(k8s.HPA, "shop-api", "shop", "prod", OWNER, component="scaling")
    body["spec"] = {"minReplicas": 2, "maxReplicas": 10, "metrics": [
        {"type": "Pods", "pods": {"metric": {"name": "rps"},
                                  "target": {"type": "AverageValue", "averageValue": "1000"}}}]}
    return body


def _as_stored(body: dict, *, managers: tuple[str, ...] = (FIELD_MANAGER,)) -> dict:
    """``body`` as the API server returns it: defaults, canonical quantities, managedFields."""
    stored = copy.deepcopy(body)
    stored["metadata"].update(uid="hpa-uid", resourceVersion="7", managedFields=[
        {"manager": m, "operation": "Apply" if m == FIELD_MANAGER else "Update",
         "fieldsV1": {"f:spec": {"f:maxReplicas": {}}}} for m in managers])
    stored["spec"]["metrics"][0]["pods"]["target"]["averageValue"] = "1k"
    stored["spec"]["behavior"] = {"scaleUp": {"selectPolicy": "Max"}}
    stored["status"] = {"currentReplicas": 3}
    return stored


def _applied(body: dict) -> dict:
    return k8s.plan_owned(body, None, "uid-1", top_level="spec").body


@pytest.mark.parametrize("text,value", [
    ("1k", Decimal(1000)), ("1000", Decimal(1000)), ("500m", Decimal("0.5")),
    ("2Gi", Decimal(2 ** 31)), ("1.5", Decimal("1.5")), ("+3", Decimal(3)), ("1e3", Decimal(1000)),
])
def test_quantities_compare_by_value(text, value):
    assert k8s.parse_quantity(text) == value


def test_defaults_canonical_quantities_and_status_are_not_drift():
    body = _applied(_desired())
    assert k8s.drifted(body, _as_stored(body)) == []


def test_changed_or_missing_fields_are_drift():
    body = _applied(_desired())
    stored = _as_stored(body)
    stored["spec"]["maxReplicas"] = 50
    stored["spec"]["metrics"][0]["pods"]["target"]["averageValue"] = "999"
    del stored["metadata"]["labels"][k8s.COMPONENT_LABEL]
    assert k8s.drifted(body, stored) == [
        f"metadata.labels.{k8s.COMPONENT_LABEL}", "spec.maxReplicas",
        "spec.metrics[0].pods.target.averageValue"]


def test_owner_references_match_by_uid_among_others():
    body = _applied(_desired())
    stored = _as_stored(body)
    other = {**OWNER, "uid": "someone-else", "controller": False}
    stored["metadata"]["ownerReferences"] = [other, OWNER]
    assert k8s.drifted(body, stored) == []
    stored["metadata"]["ownerReferences"] = [other]
    assert k8s.drifted(body, stored) == ["metadata.ownerReferences[uid-1]"]


def test_missing_object_is_created_or_restored():
    assert k8s.plan_owned(_desired(), None, "uid-1", top_level="spec").action == "create"
    step = k8s.plan_owned(_desired(), None, "uid-1", top_level="spec", previously_applied=True)
    assert (step.action, step.force, step.detail) == ("restore", False, "it was deleted")


def test_equal_object_is_left_alone():
    body = _applied(_desired())
    step = k8s.plan_owned(_desired(), _as_stored(body), "uid-1", top_level="spec")
    assert step.action == "unchanged" and not step.writes


def test_object_without_our_owner_reference_is_a_conflict_or_taken_over_with_force():
    foreign = _as_stored(_applied(_desired()), managers=("kubectl-user",))
    del foreign["metadata"]["ownerReferences"]

    conflict = k8s.plan_owned(_desired(), foreign, "uid-1", top_level="spec")
    taken = k8s.plan_owned(_desired(), foreign, "uid-1", top_level="spec", take_over=True)

    assert (conflict.action, conflict.writes) == ("conflict", False)
    assert conflict.detail == "exists and is not owned by this profile (managed by kubectl-user)"
    assert (taken.action, taken.force) == ("take-over", True)


def test_our_spec_change_is_an_update_and_a_hand_edit_a_forced_restore():
    stored = _as_stored(_applied(_desired()))
    changed = _desired()
    changed["spec"]["maxReplicas"] = 20
    update = k8s.plan_owned(changed, stored, "uid-1", top_level="spec")
    assert (update.action, update.force) == ("update", False)

    edited = _as_stored(_applied(_desired()), managers=(FIELD_MANAGER, "kubectl-edit"))
    edited["spec"]["maxReplicas"] = 50
    restore = k8s.plan_owned(_desired(), edited, "uid-1", top_level="spec")
    assert (restore.action, restore.force) == ("restore", True)
    assert restore.detail == "spec.maxReplicas (changed by kubectl-edit)"


def test_foreign_managers_ignore_ours_and_status_writers():
    obj = {"metadata": {"managedFields": [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "fieldsV1": {"f:status": {}}},
        {"manager": "keda", "operation": "Update", "fieldsV1": {"f:spec": {}}},
        {"manager": "kubectl-label", "operation": "Update", "fieldsV1": {"f:metadata": {}}},
    ]}}
    assert k8s.foreign_managers(obj, "spec") == ["keda"]


def test_long_names_are_shortened_stably():
    long = "p" * 250
    name = k8s.object_name(long, "api")
    assert len(name) == 253 and name == k8s.object_name(long, "api")
    assert name != k8s.object_name(long, "worker")
    assert k8s.object_name("shop", "api") == "shop-api"
    assert len(k8s.object_name(long, limit=63)) == 63


def test_content_hash_ignores_key_order():
    assert k8s.content_hash({"a": 1, "b": [1, 2]}) == k8s.content_hash({"b": [1, 2], "a": 1})
    assert k8s.content_hash({"a": 1}) != k8s.content_hash({"a": 2})
