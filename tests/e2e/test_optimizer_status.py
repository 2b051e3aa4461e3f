"""The optimizer's state survives the real API server: a structural schema generated from its
models (as the CRD generator would put it under ``status.optimization``) keeps every field,
and the handler's merge patches (explicit nulls) remove what the optimizer no longer holds.

The project's CRD carries the same schema (``api/optimization.py``, under ProfileStatus); this
test installs a probe CRD of its own group so the state's shape is checked on its own."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from perf_operator.api import PerformanceProfileSpec
from perf_operator.api.crdgen import openapi_schema
from perf_operator.optimizer.policy import Policy, ScalingBounds, evaluate
from perf_operator.optimizer.signals import SignalReading
from perf_operator.optimizer.state import IndexRecommendation, OptimizerState, SignalStatus
from perf_operator.status import merge_patch

GROUP = "optimizer-probe.perf.idp.io"


@pytest.fixture
def probe_crd(kubectl):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"probes.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "status": {"type": "object", "properties": {
                                       "optimization": openapi_schema(OptimizerState)}}}}}}]}}
    kubectl.apply(yaml.safe_dump(crd))
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", f"crd/probes.{GROUP}")
    yield f"probes.{GROUP}"
    kubectl.run("delete", "crd", f"probes.{GROUP}", "--wait=false", check=False)


def rich_state() -> OptimizerState:
    """A state with every part filled: adjustments, bookkeeping with a pending verification,
    a shadow-free Auto track, streaks, history, recommendations and a stale signal."""
    spec = PerformanceProfileSpec()
    policy = replace(Policy.from_spec(spec, connection_pruning=False), mode="Auto",
                     scaling=(ScalingBounds("web", 2, 8),), cache_cleanup=True,
                     index_creation=True)
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    state = OptimizerState(recommendations=[IndexRecommendation(
        name="perfop_plugins_tenant_id_idx", table="plugins", columns=["tenant_id"],
        cost_before=1000.5, cost_after=10.25, saving=0.99, calls=12, total_time_ms=3.5,
        query="SELECT * FROM plugins WHERE tenant_id = $1", since=now)])
    readings = {"apiResponseTimeP95Ms": SignalReading.fresh(900.0),
                "errorRate": SignalReading.fresh(0.2), "memoryUsage": SignalReading.fresh(0.9),
                "cacheHitRate": SignalReading.missing("NoData")}
    evaluation = evaluate(readings, policy, state, now)
    entries = [d.history_entry(now, "ok") for d in evaluation.decisions]
    return evaluation.state.with_history(entries).model_copy(update={"signals": {
        "errorRate": SignalStatus(value=0.2, target=0.05, observed_at=now),
        "cacheHitRate": SignalStatus(target=0.85, stale=True, reason="NoData",
                                     observed_at=now)},
        "last_evaluated_at": now + timedelta(seconds=1)})


def test_the_state_round_trips_through_the_api_server(kubectl, namespace, probe_crd):
    kubectl.apply(f"apiVersion: {GROUP}/v1\nkind: Probe\nmetadata: {{name: p}}\n", namespace)
    state = rich_state()
    assert state.enforced.adjustments.hpa_floors and state.enforced.adjustments.circuit_breaker
    assert state.enforced.adjustments.indexes and state.history and state.healthy == []
    assert any(a.verification for a in state.enforced.actions)

    def write(desired: dict) -> dict:
        current = (kubectl.get(probe_crd, "p", namespace) or {}).get("status") or {}
        patch = merge_patch(current, desired)
        kubectl.run("patch", probe_crd, "p", "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": patch}), namespace=namespace)
        return kubectl.get(probe_crd, "p", namespace)["status"]

    stored = write(state.to_status())
    assert OptimizerState.from_status(stored) == state

    # Off: the handler's patch carries explicit nulls, and the API server drops those fields
    off = evaluate({}, replace(Policy.from_spec(PerformanceProfileSpec(),
                                                connection_pruning=False), mode="Off"),
                   state, datetime(2025, 1, 1, 1, tzinfo=timezone.utc)).state
    stored = write(off.to_status())
    assert "signals" not in stored["optimization"]
    assert OptimizerState.from_status(stored) == off
    assert write(off.to_status()) == stored  # nothing differs: an empty patch
