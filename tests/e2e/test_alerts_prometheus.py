"""The generated rules in the stack's real Prometheus, fed by a test exporter whose values the
test sets: the alert goes pending, then firing after its ``for``, with the right severity and
the measured value; past the critical level it escalates to critical and the warning clears."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from perf_operator.api import PerformanceProfileSpec
from perf_operator.devstack.processes import free_port
from perf_operator.kube.alerts import RuleTarget, alert_signals, rule_file, rule_group
from tests.support.kube import eventually

HOLD_SECONDS = 4


@pytest.fixture
def exporter(stack, namespace):
    """A prometheus_client HTTP server on a free loopback port that Prometheus scrapes: the
    profile's series (labelled with its namespace and name, as the default queries group by)
    and, far past every level, another profile's, which its alerts must ignore."""
    registry = CollectorRegistry()
    connections = Gauge("websocket_connections_active", "Open WebSocket connections",
                        ["namespace", "profile"], registry=registry)
    connections.labels(namespace=namespace, profile="other").set(99_999)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    stack.prometheus.set_targets([f"127.0.0.1:{port}"])
    yield connections.labels(namespace=namespace, profile="shop")
    stack.prometheus.set_targets([])
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def loaded_rules(stack, namespace):
    """Write the profile's rule file where the stack's Prometheus loads rules, and reload."""
    spec = PerformanceProfileSpec.model_validate({"alerts": {
        "labels": {"team": "platform"},
        "thresholds": {"websocketConnections": {"warning": 8000, "critical": 9500,
                                                "for": f"{HOLD_SECONDS}s"}}}})
    target = RuleTarget("shop", namespace, (("team", "platform"),))
    path = stack.prometheus.rules_dir / f"{namespace}.yaml"
    path.write_text(rule_file(rule_group(alert_signals(spec), target)))
    stack.prometheus.reload()
    eventually(lambda: _rule_group_loaded(stack, f"perf-operator.{namespace}.shop"),
               timeout=30, what="Prometheus to load the rule group")
    yield namespace
    path.unlink()
    stack.prometheus.reload()


def _get(stack, path: str) -> dict:
    with urllib.request.urlopen(stack.prometheus.url + path, timeout=5) as response:
        return json.load(response)["data"]


def _rule_group_loaded(stack, name: str) -> bool:
    return any(group["name"] == name for group in _get(stack, "/api/v1/rules")["groups"])


def _alerts(stack, namespace: str) -> list[dict]:
    return [a for a in _get(stack, "/api/v1/alerts")["alerts"]
            if a["labels"].get("alertname") == "WebSocketConnectionsHigh"
            and a["labels"].get("profile_namespace") == namespace]


def _one_in_state(stack, namespace: str, severity: str, state: str) -> dict | None:
    alerts = _alerts(stack, namespace)
    if len(alerts) == 1 and alerts[0]["labels"]["severity"] == severity \
            and alerts[0]["state"] == state:
        return alerts[0]
    return None


def test_alert_goes_pending_then_firing_then_escalates(stack, exporter, loaded_rules):
    namespace = loaded_rules
    exporter.set(7990)  # healthy: just short of the warning level
    eventually(lambda: _recorded(stack, namespace) == 7990, timeout=30,
               what="Prometheus to scrape the exporter and record the signal")
    assert _alerts(stack, namespace) == []

    exporter.set(8001)
    pending = eventually(lambda: _one_in_state(stack, namespace, "warning", "pending"),
                         timeout=20, interval=0.1, what="the warning alert to go pending")
    pending_seen = time.monotonic()
    firing = eventually(lambda: _one_in_state(stack, namespace, "warning", "firing"),
                        timeout=20, interval=0.1, what="the warning alert to fire")
    # not before its ``for`` (pending is seen at most one evaluation after it began)
    assert time.monotonic() - pending_seen >= HOLD_SECONDS - 1.5

    assert pending["labels"] == {"alertname": "WebSocketConnectionsHigh", "severity": "warning",
                                 "profile": "shop", "profile_namespace": namespace,
                                 "team": "platform"}
    assert firing["annotations"]["value"] == "8.001k"
    assert firing["annotations"]["summary"] == (
        f"Open WebSocket connection count of profile {namespace}/shop is above 8k (warning)")
    assert "POST /api/websocket/cleanup" in firing["annotations"]["recommendation"]

    exporter.set(9600)  # past critical: escalates, the warning band no longer holds
    eventually(lambda: _one_in_state(stack, namespace, "critical", "pending"), timeout=20,
               interval=0.1, what="the critical alert to go pending")
    critical = eventually(lambda: _one_in_state(stack, namespace, "critical", "firing"),
                          timeout=20, interval=0.1, what="the critical alert to fire")
    assert critical["annotations"]["value"] == "9.6k"

    exporter.set(100)
    eventually(lambda: _alerts(stack, namespace) == [], timeout=20,
               what="the alert to resolve")


def _recorded(stack, namespace: str) -> float | None:
    query = (f'perf_operator:websocket_connections{{profile="shop",'
             f'profile_namespace="{namespace}"}}')
    request = "/api/v1/query?query=" + urllib.request.quote(query)
    result = _get(stack, request)["result"]
    return float(result[0]["value"][1]) if result else None
