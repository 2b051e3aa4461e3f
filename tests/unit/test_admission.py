"""The admission webhook's pure decisions: which reviews are checked, what the
ValidatingWebhookConfiguration says, and when a live one counts as altered."""
from __future__ import annotations

import copy

from perf_operator.admission.configuration import Endpoint, desired_configuration, drifted
from perf_operator.admission.review import Check, Skip, plan_review, review_response

SPEC = {"websocket": {"maxConnections": 10}}


def request(operation="UPDATE", spec=SPEC, old_spec=SPEC, deleting=False, namespace="team-a"):
    metadata = {"name": "p", "finalizers": ["perf.idp.io/finalizer"]}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"uid": "u1", "operation": operation, "namespace": namespace,
            "object": {"metadata": metadata, "spec": spec},
            "oldObject": None if operation == "CREATE" else {"metadata": {}, "spec": old_spec}}


def test_creates_and_spec_changes_are_checked():
    assert plan_review(request("CREATE")) == Check(SPEC)
    changed = {"websocket": {"maxConnections": 20}}
    assert plan_review(request(spec=changed)) == Check(changed)


def test_updates_that_keep_the_spec_and_objects_being_deleted_are_not():
    """A finalizer-removal patch on a profile that got in while the webhook was away must
    pass, or its namespace hangs in Terminating."""
    assert isinstance(plan_review(request()), Skip)
    assert isinstance(plan_review(request(spec={"bad": 1}, deleting=True)), Skip)
    assert isinstance(plan_review(request("DELETE")), Skip)


def test_namespaces_the_operator_does_not_serve_are_not_checked():
    assert isinstance(plan_review(request("CREATE", namespace="iso-1"), ["!iso-*"]), Skip)
    assert isinstance(plan_review(request("CREATE", namespace="team-a"), ["!iso-*"]), Check)
    assert isinstance(plan_review(request("CREATE", namespace="other"), ["team-a"]), Skip)


def test_a_refusal_names_every_error_with_422():
    response = review_response("u1", ["spec.a: bad", "spec.b: worse"])["response"]
    assert response == {"uid": "u1", "allowed": False, "status": {
        "code": 422, "reason": "Invalid", "message": "spec.a: bad; spec.b: worse"}}
    assert review_response("u2", [])["response"] == {"uid": "u2", "allowed": True}


def test_configuration_by_url_or_service_and_namespace_selector():
    by_url = desired_configuration("c", Endpoint(b"CA", url="https://127.0.0.1:9443"))
    hooks = {w["name"]: w for w in by_url["webhooks"]}
    assert set(hooks) == {"performanceprofiles.perf.idp.io", "tenantquotas.perf.idp.io"}
    profiles = hooks["performanceprofiles.perf.idp.io"]
    assert profiles["clientConfig"] == {"caBundle": "Q0E=",
                                        "url": "https://127.0.0.1:9443/validate/performanceprofiles"}
    assert profiles["failurePolicy"] == "Fail" and profiles["namespaceSelector"] == {}
    assert profiles["matchConditions"][0]["name"] == "spec-changed"
    by_service = desired_configuration("c", Endpoint(b"CA", service_namespace="ops",
                                                     service_name="hook"), ["team-a"])
    webhook = by_service["webhooks"][0]
    assert webhook["clientConfig"]["service"] == {
        "namespace": "ops", "name": "hook", "path": "/validate/performanceprofiles", "port": 443}
    assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == ["team-a"]
    patterns = desired_configuration("c", Endpoint(b"CA", url="https://h"), ["!iso-*"])
    assert patterns["webhooks"][0]["namespaceSelector"] == {}


def test_drift_is_a_missing_extra_or_changed_webhook_not_a_defaulted_field():
    desired = desired_configuration("c", Endpoint(b"CA", url="https://127.0.0.1:9443"))
    live = copy.deepcopy(desired)
    for webhook in live["webhooks"]:
        webhook["reinvocationPolicy"] = "Never"  # a field the API server fills in
    assert not drifted(live, desired)
    live["webhooks"][0]["failurePolicy"] = "Ignore"
    assert drifted(live, desired)
    extra = copy.deepcopy(desired)
    extra["webhooks"].append({"name": "profile-sql.perf-operator.perf.idp.io"})
    assert drifted(extra, desired)
    assert drifted({"webhooks": desired["webhooks"][:1]}, desired)
