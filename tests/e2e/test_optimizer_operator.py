"""The optimizer inside the running operator (kopf, 2 s resync in test mode): a profile in
Recommend mode reads the application's signals from the stack's real Prometheus, shows them in
status (a missing signal stale, never 0), records what it would do, and changes nothing: the
HPA keeps the rule's minReplicas. When the application's metrics disappear, MetricsStale turns
True, without making the profile not Ready."""
from __future__ import annotations

import json
import time

import yaml

from tests.e2e.optimizer_support import exporter, optimized_profile  # noqa: F401 - fixture
from tests.support.kube import condition, eventually

#: Every request takes a second: the p95 latency is far above its 200 ms target.
SLOW = (50, 1.0, "200")


def _profile(kubectl, namespace: str) -> dict:
    return kubectl.get("pp", "shop", namespace) or {}


def _optimization(kubectl, namespace: str) -> dict:
    return (_profile(kubectl, namespace).get("status") or {}).get("optimization") or {}


def _status_of(kubectl, namespace: str, type_: str) -> tuple[str, str] | None:
    found = condition(_profile(kubectl, namespace), type_)
    return (found["status"], found["reason"]) if found else None


def _eventually(kubectl, namespace: str, check, what: str, timeout: float = 30):
    """``eventually``, failing with the profile's status (what the operator last wrote)."""
    try:
        return eventually(check, timeout=timeout, interval=0.5, what=what)
    except AssertionError as err:
        status = _profile(kubectl, namespace).get("status")
        raise AssertionError(f"{err}; status: {json.dumps(status, indent=1)}") from None


def test_recommend_mode_through_the_operator(operator, stack, kubectl, namespace, exporter):
    exporter.memory(namespace, "shop", 0.5)
    exporter.traffic(namespace, "shop", SLOW)
    kubectl.apply(yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "shop"},
        "spec": optimized_profile(stack, mode="Recommend")}), namespace)

    # the signals, read from Prometheus and shown next to their targets
    def latency_breach():
        signal = (_optimization(kubectl, namespace).get("signals") or {}).get(
            "apiResponseTimeP95Ms") or {}
        return signal if (signal.get("value") or 0) > 200 else None

    latency = _eventually(kubectl, namespace, latency_breach,  # the operator may be starting
                          "the p95 latency breach in status", timeout=45)
    assert latency["target"] == 200 and latency["stale"] is False
    signals = _optimization(kubectl, namespace)["signals"]
    assert (signals["errorRate"]["value"], signals["errorRate"]["stale"]) == (0, False)
    assert signals["memoryUsage"]["value"] == 0.5
    # no metric of the database: stale, without a value (never 0)
    assert signals["dbQueryTimeMs"]["stale"] is True
    assert signals["dbQueryTimeMs"]["reason"] == "NoData"
    assert "value" not in signals["dbQueryTimeMs"]

    # what Auto would do, recorded only: the floor raised twice in the shadow (2 -> 4 -> 6)
    def recommended():
        history = _optimization(kubectl, namespace).get("history") or []
        floors = [h for h in history if h["action"] == "ScalingFloor"]
        return floors if len(floors) >= 2 else None

    floors = _eventually(kubectl, namespace, recommended,
                         "two recorded ScalingFloor decisions")
    assert all((h["direction"], h["cause"], h["applied"], h["signal"]) ==
               ("Apply", "Breach", False, "apiResponseTimeP95Ms") for h in floors)
    assert floors[0]["value"] > 200 and floors[0]["threshold"] == 200
    optimization = _optimization(kubectl, namespace)
    assert optimization["mode"] == "Recommend"
    assert optimization["shadow"]["adjustments"]["hpaFloors"] == [{"rule": "web",
                                                                   "minReplicas": 6}]
    assert optimization["enforced"]["adjustments"].get("hpaFloors", []) == []
    optimizing = condition(_profile(kubectl, namespace), "Optimizing")
    assert (optimizing["status"], optimizing["reason"]) == ("True", "Recommend")
    assert "would be in force: minReplicas web=6" in optimizing["message"]
    events = json.loads(kubectl.run(
        "get", "events", "-o", "json", "--field-selector",
        "involvedObject.kind=PerformanceProfile,involvedObject.name=shop",
        namespace=namespace).stdout)["items"]
    assert "OptimizerRecommended" in {e["reason"] for e in events}

    # shadow mode: the HPA keeps the rule's own floor, resync after resync
    time.sleep(5)
    assert kubectl.get("hpa", "shop-web", namespace)["spec"]["minReplicas"] == 2
    assert _status_of(kubectl, namespace, "MetricsStale") == ("False", "SignalsFresh")
    assert _status_of(kubectl, namespace, "Ready") == ("True", "Reconciled")

    # the application's metrics disappear from Prometheus
    stack.prometheus.set_targets([])
    _eventually(kubectl, namespace,
                lambda: _status_of(kubectl, namespace, "MetricsStale") == ("True",
                                                                           "SignalsStale"),
                "MetricsStale")
    stale = condition(_profile(kubectl, namespace), "MetricsStale")
    assert "apiResponseTimeP95Ms (NoData)" in stale["message"]
    signals = _optimization(kubectl, namespace)["signals"]
    assert signals["apiResponseTimeP95Ms"]["stale"] is True
    assert "value" not in signals["apiResponseTimeP95Ms"]
    # stale metrics freeze the optimizer; what the spec declares is still in place
    assert _status_of(kubectl, namespace, "Ready") == ("True", "Reconciled")
    assert kubectl.get("hpa", "shop-web", namespace)["spec"]["minReplicas"] == 2
