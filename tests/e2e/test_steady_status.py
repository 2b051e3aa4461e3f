"""Zero status writes in steady state, for an optimized profile too: once the optimizer has
read the application's (steady) signals from the stack's Prometheus and nothing changes, the
running operator leaves the profile's status alone resync after resync. Readings are written
again only when they move by more than ``status.READING_TOLERANCE``, rounded (no float noise),
and ``lastEvaluatedAt`` only with something else that changed."""
from __future__ import annotations

import time

import yaml

from tests.e2e.optimizer_support import exporter, optimized_profile  # noqa: F401 - fixture
from tests.support.kube import condition, eventually

#: Healthy traffic: 50 requests/s of 20 ms, no errors; half the heap used.
HEALTHY = (50, 0.02, "200")
RESYNCS = 10


def test_an_optimized_profile_in_steady_state_writes_no_status(operator, stack, kubectl,
                                                               namespace, exporter):
    exporter.memory(namespace, "shop", 0.5)
    exporter.traffic(namespace, "shop", HEALTHY)
    kubectl.apply(yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "shop"}, "spec": optimized_profile(stack, mode="Auto")}),
        namespace)

    def converged():
        profile = kubectl.get("pp", "shop", namespace) or {}
        signals = ((profile.get("status") or {}).get("optimization") or {}).get("signals") or {}
        fresh = all(not (signals.get(name) or {"stale": True})["stale"]
                    for name in ("apiResponseTimeP95Ms", "errorRate", "memoryUsage"))
        ready = (condition(profile, "Ready") or {}).get("status") == "True"
        return profile if fresh and ready else None

    eventually(converged, timeout=60, interval=0.5, what="the signals read and Ready")
    time.sleep(8)  # healthy streaks started, the HPA and app config written
    before = kubectl.get("pp", "shop", namespace)
    time.sleep(RESYNCS * 2)  # the 2 s resync of test mode
    after = kubectl.get("pp", "shop", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        before["status"], after["status"])
    for name, signal in after["status"]["optimization"]["signals"].items():
        value = signal.get("value")
        assert value is None or value == float(f"{value:.6g}"), (name, value)
