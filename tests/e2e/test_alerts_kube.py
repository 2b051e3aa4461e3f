"""Where the alert rules live: a ConfigMap holding a Prometheus rule file when the Prometheus
Operator's CRD is not installed, a PrometheusRule (validated by the real upstream CRD schema)
once it is; the status says which, a second reconcile writes nothing, hand edits are put back,
and disabling the alerts removes the operator's object."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from perf_operator.kube import reconcile_alerts
from perf_operator.kube import apply as k8s
from perf_operator.kube.alerts import RULE_FILE_KEY
from tests.e2e.kube_outputs import (PROMETHEUS_RULE_CRD, RecordedEvents, api_writes,
                                    apply_profile, context, remember, respec, writes_between,
                                    writes_during)

#: The test calls the reconcilers itself; the session operator must not act here too.
pytestmark = pytest.mark.isolated

SPEC = {"alerts": {"labels": {"team": "platform"},
                   "thresholds": {"errorRate": {"warning": 0.02, "critical": 0.05,
                                                "for": "2m"}}}}


async def _reconcile(ctx):
    return remember(ctx, await reconcile_alerts(ctx))


@pytest.fixture
def prometheus_operator_crd(kubectl):
    kubectl.run("apply", "--server-side", "-f", str(PROMETHEUS_RULE_CRD))
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                "crd/prometheusrules.monitoring.coreos.com")
    yield
    kubectl.run("delete", "crd", "prometheusrules.monitoring.coreos.com", "--wait=true")


async def test_rule_file_config_map_then_prometheus_rule(stack, kubectl, namespace, crds,
                                                         tmp_path, request):
    ctx = context(apply_profile(crds, namespace, "shop", SPEC), RecordedEvents())

    outcome = await _reconcile(ctx)

    assert outcome.ready and outcome.reason == "RulesApplied"
    assert ctx.status["alerts"] == {"kind": "ConfigMap", "name": "shop-alerts"}
    assert outcome.message == "18 alerting rules for 9 signals in ConfigMap shop-alerts"
    config_map = kubectl.get("configmap", "shop-alerts", namespace)
    assert k8s.owned_by(config_map, ctx.uid)
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(config_map["data"][RULE_FILE_KEY])
    check = subprocess.run(["promtool", "check", "rules", str(rule_file)],
                           capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 27 rules found" in check.stdout, check.stderr
    assert "> 0.02 <= 0.05" in rule_file.read_text()
    assert ctx.events.take() == ["Created"]

    with writes_during(stack, kubectl, "configmaps") as writes:
        for _ in range(3):
            assert (await _reconcile(ctx)).ready
    assert writes == {}

    request.getfixturevalue("prometheus_operator_crd")
    outcome = await _reconcile(ctx)

    assert outcome.ready
    assert ctx.status["alerts"] == {"kind": "PrometheusRule", "name": "shop-alerts"}
    assert ctx.events.take() == ["Deleted", "Created"]
    assert kubectl.get("configmap", "shop-alerts", namespace) is None
    rule = kubectl.get("prometheusrule", "shop-alerts", namespace)
    assert k8s.owned_by(rule, ctx.uid)
    assert rule["spec"]["groups"] == yaml.safe_load(config_map["data"][RULE_FILE_KEY])["groups"]

    before = api_writes(stack, "prometheusrules")
    for _ in range(3):
        assert (await _reconcile(ctx)).ready
    assert writes_between(before, api_writes(stack, "prometheusrules")) == {}

    kubectl.run("patch", "prometheusrule", "shop-alerts", "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/groups/0/rules/1/for", "value": "1h"}]),
        namespace=namespace)
    await _reconcile(ctx)
    assert ctx.events.take() == ["Restored"]
    restored = kubectl.get("prometheusrule", "shop-alerts", namespace)
    assert restored["spec"]["groups"][0]["rules"][1]["for"] == "5m"

    ctx = respec(ctx, kubectl, {"alerts": {"enabled": False}})
    outcome = await _reconcile(ctx)

    assert outcome.reason == "AlertsDisabled" and "alerts" not in ctx.status
    assert kubectl.get("prometheusrule", "shop-alerts", namespace) is None
    assert await reconcile_alerts(ctx) is None


async def test_rules_object_of_someone_else_is_a_conflict(kubectl, namespace, crds):
    kubectl.run("create", "configmap", "shop-alerts", "--from-literal=rules.yaml=groups: []",
                namespace=namespace)
    ctx = context(apply_profile(crds, namespace, "shop", SPEC), RecordedEvents())

    outcome = await _reconcile(ctx)
    await _reconcile(ctx)

    assert not outcome.ready and outcome.reason == "ResourceConflict"
    assert ctx.events.reasons() == ["Conflict"]
    assert kubectl.get("configmap", "shop-alerts", namespace)["data"] == {
        "rules.yaml": "groups: []"}
