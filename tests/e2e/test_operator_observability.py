"""The real operator, run as the manifests deploy it (ServiceAccount token, Lease, metrics
port): its counters move while it reconciles, and however often it reconciles it never changes
the spec, labels or annotations of the user's objects (Argo CD sees no drift)."""
from __future__ import annotations

import json

import pytest

from tests.support.kube import condition, eventually
from tests.support.metrics import scrape, total
from tests.support.rbac import lease_election_in, operator_kubeconfig, start_operator_as_deployed

OBJECTS = """
apiVersion: perf.idp.io/v1alpha1
kind: PerformanceProfile
metadata:
  name: platform
  labels: {{team: payments, app.kubernetes.io/managed-by: argocd}}
  annotations:
    argocd.argoproj.io/tracking-id: "team-a:perf.idp.io/PerformanceProfile:{namespace}/platform"
    note: "  spaces, ünïcode and a trailing newline\\n"
spec:
  redis:
    connection:
      host: 127.0.0.1
      port: {redis_port}
      secretRef:
        name: redis-credentials
  websocket:
    maxConnections: 1000
---
apiVersion: perf.idp.io/v1alpha1
kind: TenantQuota
metadata:
  name: initech
  labels: {{tier: standard}}
  annotations: {{owner: initech@example.com}}
spec:
  tenantId: initech
  profileRef:
    name: platform
  websocket:
    maxConnections: 100
"""

#: These tests run operators of their own; the session operator must not act here.
pytestmark = pytest.mark.isolated


@pytest.fixture
def deployed(stack, kubectl, crds, namespace, credentials, tmp_path):
    """One operator, as deployed, watching the test's namespace."""
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    proc = start_operator_as_deployed(kubeconfig, tmp_path, name="operator", namespace=namespace)
    yield proc
    proc.stop()


def reconciliations(proc, kind: str) -> float:
    return total(scrape(proc.metrics_port), "perf_operator_reconciliations_total", kind=kind)


def apply_objects(kubectl, stack, namespace) -> dict[str, dict]:
    """Apply as a user would; return the objects as the API server stored them."""
    text = OBJECTS.format(namespace=namespace, redis_port=stack.redis.port)
    out = kubectl.run("apply", "-o", "json", "-f", "-", input=text, namespace=namespace).stdout
    items = json.loads(out)
    items = items.get("items", [items])
    return {item["kind"]: item for item in items}


def user_fields(obj: dict) -> dict[str, str]:
    """What a GitOps tool compares, as the exact JSON text the API server returns."""
    return {"spec": json.dumps(obj["spec"]),
            "labels": json.dumps(obj["metadata"].get("labels")),
            "annotations": json.dumps(obj["metadata"].get("annotations"))}


def test_metrics_endpoint_shows_reconciliations_moving(deployed, kubectl, stack, namespace):
    apply_objects(kubectl, stack, namespace)
    eventually(lambda: reconciliations(deployed, "PerformanceProfile") > 0, timeout=30,
               what="a first counted reconciliation")
    first = scrape(deployed.metrics_port)
    eventually(lambda: reconciliations(deployed, "PerformanceProfile")
               >= total(first, "perf_operator_reconciliations_total",
                        kind="PerformanceProfile") + 2,
               timeout=30, what="the counter to move with the 2 s resync")
    later = scrape(deployed.metrics_port)
    for name in ("perf_operator_reconciliations_total",
                 "perf_operator_reconcile_duration_seconds_count"):
        assert total(later, name, kind="TenantQuota") > 0, name
        print(f"{name}: {total(first, name):g} -> {total(later, name):g}")
    assert total(later, "perf_operator_leader") == 1
    assert total(later, "perf_operator_reconcile_queue_depth") >= 0


def test_reconciling_never_changes_spec_labels_or_annotations(deployed, kubectl, stack,
                                                             namespace):
    before = {kind: user_fields(obj) for kind, obj in apply_objects(kubectl, stack,
                                                                     namespace).items()}

    def reconciled(kind: str, name: str) -> dict | None:
        obj = kubectl.get(kind, name, namespace)
        ready = condition(obj, "Ready")
        current = obj and (obj.get("status") or {}).get("observedGeneration") == obj[
            "metadata"]["generation"]
        return obj if ready and current else None

    eventually(lambda: reconciled("pp", "platform"), timeout=30, what="the profile reconciled")
    eventually(lambda: reconciled("tq", "initech"), timeout=30, what="the tenant reconciled")
    start = reconciliations(deployed, "PerformanceProfile")
    eventually(lambda: reconciliations(deployed, "PerformanceProfile") >= start + 3, timeout=30,
               what="three more resyncs")
    after = {"PerformanceProfile": user_fields(kubectl.get("pp", "platform", namespace)),
             "TenantQuota": user_fields(kubectl.get("tq", "initech", namespace))}
    assert after == before
    for kind, name in (("pp", "platform"), ("tq", "initech")):
        shown = kubectl.run("get", kind, name, "--show-managed-fields", "-o", "json",
                            namespace=namespace).stdout
        for entry in json.loads(shown)["metadata"]["managedFields"]:
            if entry["manager"].startswith("kubectl"):
                continue
            owned = entry.get("fieldsV1", {})
            assert set(owned) <= {"f:status", "f:metadata"}, (entry["manager"], owned)
            assert set(owned.get("f:metadata", {})) <= {"f:finalizers"}, (entry["manager"], owned)
