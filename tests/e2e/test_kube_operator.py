"""Through the running operator (kopf, 2 s resync): ``kubectl apply`` of a profile gives its
HPA, rule ConfigMap and application ConfigMap, the ScalingReady/AlertsReady/AppConfigReady
conditions and real Events; steady state sends no write; a deleted or hand-edited HPA comes back
on the next resync; a foreign HPA is reported, not touched; deleting the profile collects it all."""
from __future__ import annotations

import json
import time

import yaml

from tests.e2e.kube_outputs import writes_during
from tests.support.kube import eventually

SPEC = {
    "scaling": {"rules": [
        {"name": "api", "target": {"name": "api"}, "minReplicas": 2, "maxReplicas": 12,
         "cpuUtilization": 75},
    ]},
    "alerts": {"labels": {"team": "platform"}},
    "appConfig": {"configMapName": "shop-performance"},
}
OUTPUT_CONDITIONS = ("ScalingReady", "AlertsReady", "AppConfigReady")


def _apply(kubectl, namespace: str, spec: dict) -> None:
    kubectl.apply(yaml.safe_dump({"apiVersion": "perf.idp.io/v1alpha1",
                                  "kind": "PerformanceProfile",
                                  "metadata": {"name": "shop"}, "spec": spec}), namespace)


def _conditions(kubectl, namespace: str) -> dict[str, tuple[str, str]]:
    obj = kubectl.get("pp", "shop", namespace)
    return {c["type"]: (c["status"], c["reason"])
            for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _events(kubectl, namespace: str) -> list[tuple[str, str]]:
    result = kubectl.run("get", "events", "-o", "json", "--field-selector",
                         "involvedObject.kind=PerformanceProfile,involvedObject.name=shop",
                         namespace=namespace)
    items = sorted(json.loads(result.stdout)["items"],
                   key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [(e["reason"], e["message"]) for e in items]


def _reasons(kubectl, namespace: str) -> list[str]:
    return [reason for reason, _ in _events(kubectl, namespace)
            if reason in ("Created", "Updated", "Restored", "Conflict", "TakenOver", "Deleted")]


def test_operator_writes_the_kubernetes_outputs(operator, stack, kubectl, namespace):
    _apply(kubectl, namespace, SPEC)

    eventually(lambda: all(_conditions(kubectl, namespace).get(c, ("",))[0] == "True"
                           for c in OUTPUT_CONDITIONS),
               timeout=60, what="ScalingReady, AlertsReady and AppConfigReady")
    profile = kubectl.get("pp", "shop", namespace)
    status = profile["status"]
    assert status["scaling"]["rules"][0]["state"] == "Applied"
    assert status["alerts"] == {"kind": "ConfigMap", "name": "shop-alerts"}
    assert status["appConfig"]["name"] == "shop-performance"
    hpa = kubectl.get("hpa", "shop-api", namespace)
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == profile["metadata"]["uid"]
    assert hpa["spec"]["maxReplicas"] == 12
    eventually(lambda: sorted(_reasons(kubectl, namespace)) == ["Created"] * 3, timeout=20,
               what="one Created Event per object")

    # Steady state: three resync periods, not one write to the objects.
    with writes_during(stack, kubectl, "horizontalpodautoscalers", "configmaps") as writes:
        time.sleep(7)
    assert writes == {}

    kubectl.run("delete", "hpa", "shop-api", namespace=namespace)
    eventually(lambda: kubectl.get("hpa", "shop-api", namespace), timeout=30,
               what="the deleted HPA to be restored")
    kubectl.run("patch", "hpa", "shop-api", "--type=merge", "-p",
                '{"spec":{"maxReplicas":99}}', namespace=namespace)
    eventually(lambda: kubectl.get("hpa", "shop-api", namespace)["spec"]["maxReplicas"] == 12,
               timeout=30, what="the hand-edited HPA to be restored")
    eventually(lambda: _reasons(kubectl, namespace).count("Restored") == 2, timeout=20,
               what="a Restored Event for each")

    kubectl.apply("""apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: worker-by-hand}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  maxReplicas: 3
""", namespace, "--server-side", "--field-manager=kubectl-user")
    hand_made = kubectl.get("hpa", "worker-by-hand", namespace)
    _apply(kubectl, namespace, {**SPEC, "scaling": {"rules": [
        *SPEC["scaling"]["rules"],
        {"name": "worker", "target": {"name": "worker"}, "maxReplicas": 5,
         "cpuUtilization": 60}]}})
    eventually(lambda: _conditions(kubectl, namespace).get("ScalingReady") ==
               ("False", "ResourceConflict"), timeout=30, what="ScalingReady=False conflict")
    time.sleep(5)  # resyncs keep reporting it, but announce it once and never write it
    assert _reasons(kubectl, namespace).count("Conflict") == 1
    assert kubectl.get("hpa", "worker-by-hand", namespace)["metadata"]["resourceVersion"] == \
        hand_made["metadata"]["resourceVersion"]

    kubectl.run("delete", "pp", "shop", namespace=namespace)
    for kind, name in (("hpa", "shop-api"), ("configmap", "shop-alerts"),
                       ("configmap", "shop-performance")):
        eventually(lambda kind=kind, name=name: kubectl.get(kind, name, namespace) is None,
                   timeout=60, what=f"{kind} {name} to be garbage-collected")
    assert kubectl.get("hpa", "worker-by-hand", namespace) is not None
