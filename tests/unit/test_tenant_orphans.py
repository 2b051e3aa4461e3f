"""The orphan sweep's judgement: which records and mirror rows belong to TenantQuotas that no
longer exist (the deletions themselves run against the real stack in
tests/e2e/test_tenant_orphans.py)."""
from perf_operator.tenants.orphans import orphaned, tenant_of_key
from perf_operator.tenants.registry import TenantRegistry

CREATED = "2026-01-01T00:00:00Z"


def registry_with(*names: str) -> TenantRegistry:
    registry = TenantRegistry()
    for name in names:
        registry.put("ns", {"metadata": {"name": name, "uid": f"uid-{name}",
                                         "creationTimestamp": CREATED},
                            "spec": {"tenantId": name, "profileRef": {"name": "p"}}})
    return registry


def test_a_record_of_a_deleted_tenant_of_the_namespace_is_orphaned():
    lookup = registry_with("alive").get
    assert orphaned("ns/gone", CREATED, "ns", lookup)
    assert orphaned("ns/gone", None, "ns", lookup)  # a mirror row: no ownerSince


def test_what_exists_or_is_not_the_namespaces_is_left_alone():
    lookup = registry_with("alive").get
    assert not orphaned("ns/alive", CREATED, "ns", lookup)
    assert not orphaned("ns/alive", None, "ns", lookup)
    # another namespace's tenant: its own profiles sweep it (this operator may not watch it)
    assert not orphaned("other/gone", CREATED, "ns", lookup)
    # no owner, or not one the operator writes: not the operator's
    for owner in (None, "", "ns", "ns/", "someone"):
        assert not orphaned(owner, CREATED, "ns", lookup)


def test_a_record_of_an_earlier_tenant_of_the_same_name_is_orphaned():
    lookup = registry_with("alive").get
    assert orphaned("ns/alive", "2025-12-31T23:59:59Z", "ns", lookup)
    # written before records carried ownerSince: the owner's own reconcile adds it
    assert not orphaned("ns/alive", None, "ns", lookup)


def test_the_tenant_of_a_record_key():
    assert tenant_of_key("app:", "app:{acme}:limits") == "acme"
    assert tenant_of_key("a*b:", "a*b:{x-1}:limits") == "x-1"
    # matched by the glob, but not a record of this prefix
    assert tenant_of_key("app:", "app:{x}:b:{y}:limits") is None
    assert tenant_of_key("app:", "app:{}:limits") is None
    assert tenant_of_key("app:", "other:{acme}:limits") is None
    assert tenant_of_key("app:", "app:{acme}:rl:limits") is None
