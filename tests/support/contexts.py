"""The contexts a test hands to a reconciler it calls directly: a ProfileContext, and a
TenantContext built by the operator's own builder (``tenants.reconciler.tenant_context``)."""
from __future__ import annotations

import logging
from typing import Any

from perf_operator.api import PerformanceProfileSpec
from perf_operator.reconcile import EventRecorder, ProfileContext, TenantContext
from perf_operator.tenants.reconciler import tenant_context as operator_tenant_context
from perf_operator.tenants.reconciler import tenant_profile
from perf_operator.tenants.registry import TenantEntry
from tests.support.events import RecordedEvents


def profile_context(namespace: str, spec: dict[str, Any] | PerformanceProfileSpec, *,
                    name: str = "p", uid: str | None = None, generation: int = 1,
                    status: dict[str, Any] | None = None, events: EventRecorder | None = None,
                    logger: str = "test") -> ProfileContext:
    """A context for profile ``name``: ``spec`` validated unless already parsed; ``status`` and
    ``events`` are kept as given (the same objects), fresh ones when not given."""
    if not isinstance(spec, PerformanceProfileSpec):
        spec = PerformanceProfileSpec.model_validate(spec)
    return ProfileContext(name=name, namespace=namespace, uid=uid or f"uid-{name}",
                          generation=generation, spec=spec,
                          status=status if status is not None else {},
                          events=events if events is not None else RecordedEvents(),
                          logger=logging.getLogger(logger))


def tenant_context(namespace: str, profile: dict[str, Any], tenant: dict[str, Any] | None = None,
                   *, name: str = "acme", profile_name: str = "platform",
                   status: dict[str, Any] | None = None,
                   profile_status: dict[str, Any] | None = None) -> TenantContext:
    """The context the operator builds for TenantQuota ``name`` (spec ``tenant``, default
    tenantId ``acme``, its profileRef filled in) under profile ``profile_name`` (spec
    ``profile``; ``profile_status``: the optimizer's enforced adjustments shed the limits), with
    Events recorded rather than posted."""
    profiles = {key: [entry] for key, entry in
                tenant_profile(namespace, profile_name, profile, profile_status or {}).items()}
    spec = {"tenantId": "acme", **(tenant or {}), "profileRef": {"name": profile_name}}
    entry = TenantEntry.of(name, f"uid-{name}", 1, spec, status if status is not None else {})
    ctx = operator_tenant_context(namespace, entry, profiles, logging.getLogger("test"))
    assert ctx is not None  # the profile is given
    ctx.events = RecordedEvents()
    return ctx


def apply_merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``current`` after a JSON merge patch (RFC 7386: what the API server does with the
    operator's status patch): nested objects are merged key by key, None removes a key."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = apply_merge_patch(out[key] if isinstance(out.get(key), dict) else {},
                                         value)
        else:
            out[key] = value
    return out
