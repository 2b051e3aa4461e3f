"""The real Prometheus Operator (built from the module proxy) on the local control plane: the
PrometheusRule the operator generates is selected by a ``Prometheus`` object, rendered into its
rule files, loaded by the stack's real Prometheus, and its alert fires when the test exporter
crosses the threshold; AlertsReady says ``RulesApplied`` only once Prometheus has the group, and
``RulesNotLoaded`` (naming the labels) when the Prometheus's ruleSelector does not match."""
from __future__ import annotations

import json

import pytest
import yaml

from perf_operator.devstack.prometheus_operator import RULE_SELECTOR
from tests.e2e.test_alerts_prometheus import _one_in_state, _rule_group_loaded, exporter
from tests.support.kube import condition, eventually

__all__ = ["exporter"]  # the fixture, shared with test_alerts_prometheus

HOLD_SECONDS = 3


@pytest.fixture(scope="module")
def prometheus_operator(stack, crds):
    """The Prometheus Operator and its Prometheus object for this module only: the other tests
    of the session expect the ConfigMap fallback, which the PrometheusRule CRD would replace."""
    po = stack.add_prometheus_operator()
    yield po
    po.uninstall()
    stack.prometheus_operator = None


def _profile(namespace: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {"prometheus": {"url": "PROMETHEUS_URL"},
                 "alerts": {"labels": {"team": "platform"},
                            "thresholds": {"websocketConnections": {
                                "warning": 8000, "critical": 9500,
                                "for": f"{HOLD_SECONDS}s"}}}}})


def _alerts_ready(kubectl, namespace: str) -> dict | None:
    return condition(kubectl.get("pp", "shop", namespace), "AlertsReady")


def _set_rule_selector(kubectl, po, selector: dict) -> None:
    kubectl.run("patch", "prometheus", po.name, "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/ruleSelector", "value": selector}]),
        namespace=po.namespace)


def test_generated_rule_is_selected_rendered_loaded_and_fires(
        operator, stack, kubectl, namespace, prometheus_operator, exporter):
    kubectl.apply(_profile(namespace).replace("PROMETHEUS_URL", stack.prometheus.url))
    group = f"perf-operator.{namespace}.shop"

    rule = eventually(lambda: kubectl.get("prometheusrule", "shop-alerts", namespace),
                      timeout=60, what="the operator's PrometheusRule")
    assert rule["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "perf-operator"
    rendered = eventually(lambda: {k: v for k, v in prometheus_operator.sync.rendered().items()
                                   if rule["metadata"]["uid"] in k},
                          timeout=60, what="the Prometheus Operator to render the rule file")
    (text,) = rendered.values()
    assert yaml.safe_load(text)["groups"][0]["name"] == group
    eventually(lambda: _rule_group_loaded(stack, group), timeout=60,
               what="Prometheus to load the rendered group")
    ready = eventually(lambda: (c := _alerts_ready(kubectl, namespace)) and
                       c["reason"] == "RulesApplied" and c, timeout=60,
                       what="AlertsReady=True once Prometheus has the group")
    assert ready["status"] == "True"

    exporter.set(9000)
    firing = eventually(lambda: _one_in_state(stack, namespace, "warning", "firing"),
                        timeout=60, what="the warning alert to fire in the real Prometheus")
    assert firing["labels"]["team"] == "platform"
    assert firing["annotations"]["value"] == "9k"


def test_rule_the_prometheus_does_not_select_is_reported(
        operator, stack, kubectl, namespace, prometheus_operator):
    """kube-prometheus-stack's Prometheus selects ``release: <its release>``; the operator's
    rules do not carry that label, so nothing is loaded, and AlertsReady says so."""
    kubectl.apply(_profile(namespace).replace("PROMETHEUS_URL", stack.prometheus.url))
    group = f"perf-operator.{namespace}.shop"
    eventually(lambda: _rule_group_loaded(stack, group), timeout=60,
               what="Prometheus to load the group")
    _set_rule_selector(kubectl, prometheus_operator, {"matchLabels": {"release": "monitoring"}})
    try:
        not_loaded = eventually(lambda: (c := _alerts_ready(kubectl, namespace)) and
                                c["reason"] == "RulesNotLoaded" and c, timeout=60,
                                what="AlertsReady=False, RulesNotLoaded")
        assert not_loaded["status"] == "False"
        message = not_loaded["message"]
        assert f"rule group {group} is not loaded by the Prometheus at {stack.prometheus.url}" \
            in message
        assert f"PrometheusRule {namespace}/shop-alerts is not selected" in message
        assert "app.kubernetes.io/managed-by=perf-operator" in message
        profile = kubectl.get("pp", "shop", namespace)
        assert condition(profile, "Ready")["status"] == "True", \
            "a Prometheus that selects nothing is not the profile's failure"
    finally:
        _set_rule_selector(kubectl, prometheus_operator, RULE_SELECTOR)
    eventually(lambda: (c := _alerts_ready(kubectl, namespace)) and
               c["reason"] == "RulesApplied", timeout=60,
               what="AlertsReady back to RulesApplied once the selector matches")
