"""Validating admission webhooks: refuse at ``kubectl apply`` what the schema cannot judge.

Served only when the operator runs with ``--webhook-listen`` (see cli.py); kopf then keeps the
ValidatingWebhookConfiguration up to date itself.
"""
from __future__ import annotations

import kopf

from ..api import PerformanceProfileSpec
from ..targets import inline_errors
from ..validation import profile_errors, tenant_errors
from .resources import PROFILES, TENANTS


@kopf.on.validate(*PROFILES, id="profile-sql", operations=["CREATE", "UPDATE"])
def validate_profile(spec: kopf.Spec, **_) -> None:
    errors = profile_errors(dict(spec)) or inline_errors(
        PerformanceProfileSpec.model_validate(dict(spec)))
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)


@kopf.on.validate(*TENANTS, id="tenant", operations=["CREATE", "UPDATE"])
def validate_tenant(spec: kopf.Spec, **_) -> None:
    errors = tenant_errors(dict(spec))
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)
