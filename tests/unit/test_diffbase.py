"""kopf's diff-base (handlers/startup.ProfilesDiffBase): empty for TenantQuotas, which have no
change handler, and kopf's own for the kinds that have (profiles)."""
import json

import kopf

from perf_operator.handlers.startup import ProfilesDiffBase

STORAGE = ProfilesDiffBase(field="status.kopf.lastHandledConfiguration")


def body(kind: str) -> kopf.Body:
    stored = json.dumps({"spec": {"old": True}})
    return kopf.Body({"apiVersion": "perf.idp.io/v1alpha1", "kind": kind,
                      "metadata": {"name": "x", "namespace": "ns", "uid": "u"},
                      "spec": {"tenantId": "acme"},
                      "status": {"kopf": {"lastHandledConfiguration": stored}}})


def test_a_tenant_quota_has_an_empty_diff_base():
    assert STORAGE.build(body=body("TenantQuota")) == {}
    assert STORAGE.fetch(body=body("TenantQuota")) is None


def test_a_profile_keeps_kopfs_diff_base():
    profile = body("PerformanceProfile")
    assert STORAGE.build(body=profile)["spec"] == {"tenantId": "acme"}
    assert STORAGE.fetch(body=profile) == {"spec": {"old": True}}
