"""The operator runs against the real API server and reports in status, and only there."""
from __future__ import annotations

import json
import time

from tests.support.kube import condition, eventually

PROFILE = """
apiVersion: perf.idp.io/v1alpha1
kind: PerformanceProfile
metadata:
  name: smoke
  labels: {team: platform}
  annotations: {owner: "platform-team"}
spec:
  websocket:
    maxConnections: 5000
"""


def test_operator_patches_status_and_nothing_else(operator, kubectl, namespace):
    kubectl.apply(PROFILE, namespace)
    before = kubectl.get("pp", "smoke", namespace)

    def ready():
        obj = kubectl.get("pp", "smoke", namespace)
        cond = condition(obj, "Ready")
        return obj if cond and cond["status"] == "True" else None

    obj = eventually(ready, timeout=60, what="the profile to become Ready")
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    ready_condition = condition(obj, "Ready")
    assert ready_condition["reason"] == "Reconciled"
    assert ready_condition["observedGeneration"] == obj["metadata"]["generation"]
    # kopf keeps its bookkeeping in status, never in annotations or labels.
    assert obj["metadata"].get("annotations") == before["metadata"].get("annotations")
    assert obj["metadata"].get("labels") == before["metadata"].get("labels")
    assert json.dumps(obj["spec"], sort_keys=True) == json.dumps(before["spec"], sort_keys=True)
    assert "kopf" in status


def test_steady_state_writes_nothing(operator, kubectl, namespace):
    """Once Ready, resync timers run every 2 s in test mode but write nothing."""
    kubectl.apply(PROFILE, namespace)
    eventually(lambda: (condition(kubectl.get("pp", "smoke", namespace), "Ready") or {}).get(
        "status") == "True", timeout=60, what="Ready")
    first = kubectl.get("pp", "smoke", namespace)["metadata"]["resourceVersion"]
    time.sleep(8)  # four resync periods
    assert kubectl.get("pp", "smoke", namespace)["metadata"]["resourceVersion"] == first
