"""The operator's ServiceAccount, as the cluster-wide overlay defines it, asked through its own
token: it may do what the operator does and nothing more."""
from __future__ import annotations

import json

import pytest

from tests.support.kube import Kubectl
from tests.support.rbac import OPERATOR_NAMESPACE, operator_kubeconfig

# (verb, "resource[.group][/subresource]", namespace or None for all namespaces / cluster scope,
#  resource name or None)
ALLOWED = [
    ("watch", "performanceprofiles.perf.idp.io", None, None),
    ("list", "tenantquotas.perf.idp.io", None, None),
    ("patch", "performanceprofiles.perf.idp.io/status", "team-a", None),
    ("patch", "tenantquotas.perf.idp.io", "team-a", None),
    ("update", "performanceprofiles.perf.idp.io/finalizers", "team-a", None),
    ("create", "events", "team-a", None),
    ("create", "events.events.k8s.io", "team-a", None),
    ("get", "secrets", "team-a", "pg-credentials"),
    ("create", "horizontalpodautoscalers.autoscaling", "team-a", None),
    ("delete", "configmaps", "team-a", None),
    ("patch", "prometheusrules.monitoring.coreos.com", "team-a", None),
    ("delete", "prometheusrules.monitoring.coreos.com", "team-a", "platform-alerts"),
    ("patch", "deployments.apps", "team-a", "web"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", None, None),
    ("watch", "namespaces", None, None),
    ("watch", "performancetargets.perf.idp.io", None, None),
    ("patch", "performancetargets.perf.idp.io/status", None, "shared"),
    ("get", "secrets", OPERATOR_NAMESPACE, "shared-postgres"),  # a target's credentials
    ("create", "leases.coordination.k8s.io", OPERATOR_NAMESPACE, None),
    ("update", "leases.coordination.k8s.io", OPERATOR_NAMESPACE, "perf-operator-leader"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", None, None),
    ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", None,
     "perf-operator.perf.idp.io"),
    ("create", "secrets", OPERATOR_NAMESPACE, None),
    ("list", "secrets", OPERATOR_NAMESPACE, None),  # the escrows, by label
    ("get", "secrets", OPERATOR_NAMESPACE, "perf-operator-webhook-tls"),
]

DENIED = [
    ("list", "secrets", "team-a", None),        # read only the Secret a profile names
    ("watch", "secrets", None, None),
    ("update", "performanceprofiles.perf.idp.io", "team-a", None),  # never replaces spec
    ("delete", "performanceprofiles.perf.idp.io", "team-a", None),
    ("create", "tenantquotas.perf.idp.io", "team-a", None),
    ("delete", "deployments.apps", "team-a", None),
    ("create", "pods", "team-a", None),
    ("create", "leases.coordination.k8s.io", "team-a", None),
    ("update", "leases.coordination.k8s.io", OPERATOR_NAMESPACE, "kube-scheduler"),
    ("create", "clusterroles.rbac.authorization.k8s.io", None, None),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None, None),
    ("delete", "namespaces", None, "team-a"),
    ("update", "performancetargets.perf.idp.io", None, "shared"),  # never a target's spec
    ("delete", "performancetargets.perf.idp.io", None, "shared"),
    ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", None,
     "someone-elses"),
    ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io", None,
     "perf-operator.perf.idp.io"),
    ("update", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None, None),
]


@pytest.fixture(scope="module")
def as_operator(stack, kubectl, tmp_path_factory) -> Kubectl:
    path = operator_kubeconfig(stack, kubectl, tmp_path_factory.mktemp("rbac") / "kubeconfig")
    return Kubectl(kubectl.binary, path)


def can_i(as_operator: Kubectl, verb: str, resource: str, namespace: str | None,
          name: str | None) -> bool:
    """A SelfSubjectAccessReview, so kinds whose CRD is not installed (PrometheusRule) can be
    asked about too."""
    resource, _, subresource = resource.partition("/")
    plural, _, group = resource.partition(".")
    attributes = {"verb": verb, "group": group, "resource": plural}
    attributes.update({k: v for k, v in (("subresource", subresource), ("namespace", namespace),
                                         ("name", name)) if v})
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": attributes}}
    result = as_operator.run("create", "-o", "json", "-f", "-", input=json.dumps(review))
    return json.loads(result.stdout)["status"]["allowed"]


def test_token_kubeconfig_authenticates_as_the_service_account(as_operator):
    who = as_operator.run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    assert who == f"system:serviceaccount:{OPERATOR_NAMESPACE}:perf-operator"


@pytest.mark.parametrize("check", ALLOWED, ids=lambda c: f"{c[0]} {c[1]}")
def test_operator_may(as_operator, check):
    assert can_i(as_operator, *check)


@pytest.mark.parametrize("check", DENIED, ids=lambda c: f"{c[0]} {c[1]}")
def test_operator_may_not(as_operator, check):
    assert not can_i(as_operator, *check)
