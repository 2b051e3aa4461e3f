"""The orphan sweep's judgement: which records and mirror rows belong to TenantQuotas that no
longer exist (the deletions themselves run against the real stack in
tests/e2e/test_tenant_orphans.py)."""
import json

from perf_operator.api.profile import PostgresConnection, RedisConnection
from perf_operator.handlers.escrow import secret_names
from perf_operator.tenants.orphans import Location, orphaned, tenant_of_key
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


REDIS = {"host": "redis.example", "port": 6379, "secretRef": {"name": "redis-login"}}
DATABASE = {"host": "pg.example", "database": "app", "secretRef": {"name": "pg-login"}}


def location() -> Location:
    return Location("ns", "platform", "app:", RedisConnection.model_validate(REDIS),
                    PostgresConnection.model_validate(DATABASE))


def test_a_tenant_names_a_location_by_its_record_its_mirror_row_or_a_stale_one():
    here = location()
    record = {"key": "app:{acme}:limits", "redis": {**REDIS, "host": "REDIS.example."}}
    row = {"mirror": {"profile": "platform", "connection": DATABASE}}
    assert here.names(record) and here.names(row)
    assert here.names({"staleRecords": [record]}) and here.names({"staleRecords": [row]})
    # another prefix, another Redis database, another profile's rows, another server
    assert not here.names({**record, "key": "app:b:{acme}:limits"})
    assert not here.names({**record, "redis": {**REDIS, "db": 1}})
    assert not here.names({"mirror": {**row["mirror"], "profile": "other"}})
    assert not here.names({"mirror": {**row["mirror"],
                                      "connection": {**DATABASE, "host": "pg2.example"}}})
    assert not here.names({}) and not here.names({"key": "app:{acme}:limits"})


def test_a_watched_location_survives_the_ledger_with_its_grant():
    granted = Location("ns", "platform", "app:",
                       RedisConnection.model_validate(REDIS).granted("shared"), None)
    entry = granted.entry("uid-1")
    assert entry["kind"] == "TenantTables" and entry["uid"] == "uid-1"
    assert list(secret_names(entry)) == ["redis-login"]  # its credentials are copied
    back = Location.from_entry(json.loads(json.dumps(entry)))
    assert back == granted and back.redis is not None and back.redis.granted_by == "shared"
    assert Location.from_entry(location().entry("u")) == location()
