"""What the webhook decides for one AdmissionReview: a pure function of the request.

Only a change of ``spec`` is judged. An update that leaves the spec alone (kopf's finalizer
and status bookkeeping, labels, annotations) and any update of an object being deleted are
admitted unchecked: otherwise an object that got in while the webhook was absent could never
lose its finalizer, and its namespace would hang in Terminating. Objects in namespaces this
operator does not serve are admitted unchecked too: their operator (or none) judges them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


from ..api import PerformanceProfileSpec
from ..kube.namespaces import serves
from ..targets import inline_errors
from ..validation import profile_errors, tenant_errors


def profile_admission_errors(spec: dict[str, Any]) -> list[str]:
    """The profile's own errors, then the connection policy's (inline connections)."""
    return profile_errors(spec) or inline_errors(PerformanceProfileSpec.model_validate(spec))


#: The kinds the webhook validates, by the path the API server calls.
CHECKS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "performanceprofiles": profile_admission_errors,
    "tenantquotas": tenant_errors,
}


@dataclass(frozen=True)
class Skip:
    """Admit without checking; ``why`` is logged at debug level."""

    why: str


@dataclass(frozen=True)
class Check:
    """Validate this spec."""

    spec: dict[str, Any]


def plan_review(request: dict[str, Any], namespaces: Sequence[str] = ()) -> Skip | Check:
    """Whether the ``request`` of an AdmissionReview needs its spec checked. ``namespaces``:
    the operator's ``--namespace`` patterns (empty: every namespace)."""
    namespace = request.get("namespace") or ""
    if not serves(namespace, namespaces):
        return Skip(f"namespace {namespace!r} is not served by this operator")
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE"):
        return Skip(f"{operation} is not validated")
    obj = request.get("object") or {}
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return Skip("the object is being deleted")
    spec = obj.get("spec") or {}
    if operation == "UPDATE" and spec == ((request.get("oldObject") or {}).get("spec") or {}):
        return Skip("the spec is unchanged")
    return Check(spec)


def review_response(uid: str, errors: list[str]) -> dict[str, Any]:
    """The AdmissionReview answer: allowed, or refused (422) with every error, field-named."""
    response: dict[str, Any] = {"uid": uid, "allowed": not errors}
    if errors:
        response["status"] = {"code": 422, "reason": "Invalid", "message": "; ".join(errors)}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
