"""A rate-limit rule listed after a broader one that matches every request it does would never
apply (the first matching rule wins). CEL refuses the ``/**`` prefix case at apply (see
test_api_validation); the admission webhook refuses the rest, naming both rules; what got
past a missing webhook is reported by the reconciler as RuleShadowed."""
from __future__ import annotations

import pytest
import yaml

from tests.support.kube import condition, eventually
from tests.support.rbac import (lease_election_in, operator_kubeconfig,
                                start_operator_as_deployed)

pytestmark = pytest.mark.e2e

SHADOWING = [{"pattern": "/api/*", "methods": ["GET", "POST"], "requests": 1000},
             {"pattern": "/api/search", "methods": ["GET"], "requests": 20}]


def tenant(rules: list[dict]) -> str:
    return yaml.safe_dump({"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
                           "metadata": {"name": "shadow"},
                           "spec": {"tenantId": "shadow", "profileRef": {"name": "p"},
                                    "rateLimits": rules}})


def profile(rules: list[dict]) -> str:
    return yaml.safe_dump({"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                           "metadata": {"name": "shadow"},
                           "spec": {"api": {"rateLimits": {"endpoints": rules}}}})


WEBHOOK = "perf-operator.perf.idp.io"


@pytest.fixture
def webhook(operator, kubectl) -> dict:
    """The operator's webhook configuration, once the operator has registered it."""
    return eventually(lambda: kubectl.get("validatingwebhookconfiguration", WEBHOOK),
                      timeout=60, what="the webhook configuration")


def test_webhook_refuses_a_shadowed_rule_naming_both(webhook, kubectl, namespace):
    result = kubectl.apply(tenant(SHADOWING), namespace, check=False)
    assert result.returncode != 0 and "admission webhook" in result.stderr, result.stderr
    assert ("RuleShadowed: spec.rateLimits[1] (/api/search GET) would never apply: "
            "spec.rateLimits[0] (/api/* GET,POST)") in result.stderr
    assert kubectl.get("tq", "shadow", namespace) is None
    # the narrower rule first is what the user meant, and is admitted
    kubectl.apply(tenant(list(reversed(SHADOWING))), namespace)


@pytest.mark.isolated
def test_reconciler_reports_what_got_past_a_missing_webhook(stack, kubectl, crds, namespace,
                                                           tmp_path):
    """A namespace the session operator does not serve is admitted unchecked (its webhook cannot
    select by pattern), and the operator serving it here runs without a webhook: what gets in
    is reported by the reconciler. (Deleting the configuration does not make an outage: every
    replica puts it back within a second.)"""
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    proc = start_operator_as_deployed(kubeconfig, tmp_path, name="no-webhook",
                                      namespace=namespace)
    try:
        kubectl.apply(profile(SHADOWING), namespace)

        def shadowed():
            ready = condition(kubectl.get("pp", "shadow", namespace), "Ready")
            return ready if ready and ready["reason"] == "RuleShadowed" else None

        ready = eventually(shadowed, timeout=30, what="a RuleShadowed Ready condition")
        assert ready["status"] == "False"
        assert "spec.api.rateLimits.endpoints[1] (/api/search GET)" in ready["message"]
        assert "spec.api.rateLimits.endpoints[0] (/api/* GET,POST)" in ready["message"]
    finally:
        proc.stop()
