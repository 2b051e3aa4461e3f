"""What a TenantQuota's watch event asks of the operator (tenants.reconciler.quota_event): a
spec the status does not report on yet is reconciled into kopf's one patch, a reported one is
left to the re-check, and the finalizer earlier versions added is taken off. A paused profile
keeps the reconcile free of I/O (its tenants report Paused)."""
import logging

import kopf

from perf_operator.api import PerformanceProfileSpec
from perf_operator.api.optimization import Adjustments
from perf_operator.tenants.reconciler import LEGACY_FINALIZER, ProfileEntry, quota_event
from perf_operator.tenants.registry import TENANTS_BY_PROFILE

LOGGER = logging.getLogger("test")
PROFILES = {("ns", "p"): [ProfileEntry({"paused": True}, PerformanceProfileSpec(paused=True),
                                       Adjustments())]}


def body(*, generation=1, status=None, finalizers=None):
    metadata = {"name": "acme", "uid": "uid-acme", "generation": generation,
                "creationTimestamp": "2026-01-01T00:00:00Z"}
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    return {"metadata": metadata, "spec": {"tenantId": "acme", "profileRef": {"name": "p"}},
            "status": status or {}}


async def test_a_spec_not_reported_on_is_reconciled_into_the_patch():
    patch = kopf.Patch()
    await quota_event("ns", body(generation=2, status={"observedGeneration": 1}), PROFILES,
                      patch, LOGGER)
    status = patch["status"]
    assert status["observedGeneration"] == 2
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Paused")
    assert TENANTS_BY_PROFILE.get("ns", "acme").generation == 2  # registered too
    TENANTS_BY_PROFILE.forget("ns", "acme")


async def test_a_reported_spec_writes_nothing():
    patch = kopf.Patch()
    await quota_event("ns", body(status={"observedGeneration": 1}), PROFILES, patch, LOGGER)
    assert not patch
    TENANTS_BY_PROFILE.forget("ns", "acme")


async def test_the_legacy_finalizer_is_taken_off_and_others_kept():
    patch = kopf.Patch()
    await quota_event("ns", body(status={"observedGeneration": 1},
                                 finalizers=["other.io/keep", LEGACY_FINALIZER]),
                      PROFILES, patch, LOGGER)
    assert patch == {"metadata": {"finalizers": ["other.io/keep"]}}
    TENANTS_BY_PROFILE.forget("ns", "acme")
