"""The tenant table planners and the bounded-cost usage estimates, without Redis."""
from __future__ import annotations

import json

from perf_operator.api.profile import PerformanceProfileSpec
from perf_operator.api.tenant import TenantQuotaSpec, effective_limits
from perf_operator.ratelimit.rules import table_rules
from perf_operator.tenants.mirror import MirrorRow, UpsertMirror, plan_mirror
from perf_operator.tenants.records import (ObservedRecord, WriteRecord, desired_record,
                                        limits_document, plan_record)
from perf_operator.tenants.usage import estimate_keys, estimate_memory, spread_sample

PROFILE = PerformanceProfileSpec.model_validate({
    "redis": {"connection": {"host": "127.0.0.1"}, "keyPrefix": "idp:"},
    "api": {"rateLimits": {"endpoints": [
        {"pattern": "/api/plugins/**", "methods": ["GET"], "requests": 100},
        {"pattern": "/api/search", "requests": 30, "burst": 5, "critical": True}]}},
})


def limits(**tenant):
    spec = TenantQuotaSpec.model_validate({"tenantId": "acme", "profileRef": {"name": "p"},
                                           **tenant})
    return effective_limits(PROFILE, spec)


def test_the_document_is_the_effective_limits_with_the_cache_prefix():
    document = limits_document("idp:", limits(rateLimits=[{"pattern": "/api/search",
                                                           "requests": 3}]))
    assert document["schemaVersion"] == 1
    assert document["tenantId"] == "acme"
    assert document["cache"]["keyPrefix"] == "idp:{acme}:cache:"
    assert document["cache"]["ttlSeconds"]["sessions"] == 3600
    # the tenant's rule replaced the profile's overlapping one and comes first
    assert [(e["pattern"], e["requests"]) for e in document["endpoints"]] == [
        ("/api/search", 3), ("/api/plugins/**", 100)]
    # and the limiter reads it back as rules, the default budget last
    assert [r.pattern for r in table_rules(document)] == ["/api/search", "/api/plugins/**",
                                                          "/**"]


def test_the_digest_follows_the_content_only():
    a = desired_record("idp:", limits(), "ns/acme")
    assert a.key == "idp:{acme}:limits"
    assert a == desired_record("idp:", limits(), "ns/acme")
    assert a.digest != desired_record("idp:", limits(plugins={"maxPlugins": 5}), "ns/acme").digest
    assert json.loads(a.document)["plugins"]["maxPlugins"] == 10_000


def observed(owner="ns/acme", digest=None, version=0):
    return ObservedRecord(owner if digest else None, digest, version,
                          "2025-01-01T00:00:00Z" if digest else None)


def test_a_current_record_is_left_alone():
    desired = desired_record("idp:", limits(), "ns/acme")
    assert plan_record(desired, observed(digest=desired.digest, version=4), 4) == []


def test_a_changed_record_is_replaced_with_a_higher_version():
    desired = desired_record("idp:", limits(), "ns/acme")
    assert plan_record(desired, observed(digest="old", version=4), 4) == [WriteRecord("Changed", 4)]


def test_a_lost_record_comes_back_above_the_last_reported_version():
    """After Redis lost its data a reader may still cache version 7: the new one must differ."""
    desired = desired_record("idp:", limits(), "ns/acme")
    assert plan_record(desired, observed(), 7) == [WriteRecord("Missing", 7)]


def test_another_tenantquotas_record_is_never_written():
    desired = desired_record("idp:", limits(), "ns/acme")
    assert plan_record(desired, observed(owner="ns/other", digest="x", version=2), 0) == []


def test_mirror_plan():
    row = MirrorRow("ns", "p", "acme", "ns/acme", 3, "abc")
    assert plan_mirror(row, row, "{}", "t") == []
    assert plan_mirror(row, None, "{}", "t") == [UpsertMirror(row, "{}", "t")]
    older = MirrorRow("ns", "p", "acme", "ns/acme", 2, "abc")
    assert plan_mirror(row, older, "{}", "t") == [UpsertMirror(row, "{}", "t")]
    foreign = MirrorRow("ns", "p", "acme", "ns/other", 2, "abc")
    assert plan_mirror(row, foreign, "{}", "t") == []


def test_key_count_is_exact_when_the_scan_completed_else_extrapolated():
    assert estimate_keys(40, 4000, 100_000, complete=True) == 40
    assert estimate_keys(40, 4000, 100_000, complete=False) == 1000
    assert estimate_keys(40, 4000, 3000, complete=False) == 40
    assert estimate_keys(0, 4000, 100_000, complete=False) == 0


def test_memory_is_summed_for_small_tenants_else_extrapolated_from_the_sample():
    assert estimate_memory([], 0) == (0, False)
    assert estimate_memory([100, 200], 2) == (300, False)
    assert estimate_memory([100, 200], 10) == (1500, True)


def test_the_memory_sample_spreads_over_the_keys_found():
    keys = [f"k{i}" for i in range(100)]
    sample = spread_sample(keys, 4)
    assert sample == ["k0", "k25", "k50", "k75"]
    assert spread_sample(keys[:3], 4) == keys[:3]


OLD, YOUNG = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"


def test_the_oldest_claimant_owns_a_record_whoever_wrote_it_first():
    """After a data loss the younger of two TenantQuotas with one tenantId may write first:
    the older takes the record over; the younger never writes into the older's record."""
    older = desired_record("idp:", limits(), "b/acme", OLD)
    younger = desired_record("idp:", limits(), "a/acme", YOUNG)
    by_younger = ObservedRecord("a/acme", "d", 3, "t", YOUNG)
    by_older = ObservedRecord("b/acme", "d", 3, "t", OLD)
    assert plan_record(older, by_younger, 0) == [WriteRecord("TakenOver", 3)]
    assert plan_record(younger, by_older, 0) == []
    # same second: namespace/name decides
    tie = desired_record("idp:", limits(), "a/acme", OLD)
    assert plan_record(tie, by_older, 0) == [WriteRecord("TakenOver", 3)]
    assert plan_record(older, ObservedRecord("a/acme", "d", 3, "t", OLD), 0) == []


def test_a_record_without_owner_since_stays_its_owners_until_it_rewrites_it():
    older = desired_record("idp:", limits(), "b/acme", OLD)
    legacy = ObservedRecord("a/acme", older.digest, 3, "t", None)
    assert plan_record(older, legacy, 0) == []
    mine = ObservedRecord("b/acme", older.digest, 3, "t", None)
    assert plan_record(older, mine, 3) == [WriteRecord("Changed", 3)]
