"""TenantQuotas have no finalizer: a deleted tenant's tables are removed on its DELETED event,
and what no event reported (a tenant deleted while the operator was stopped) by its profile's
orphan sweep within one re-check after the operator starts. A finalizer an earlier version put
on a TenantQuota is taken off, so an upgrade leaves no tenant undeletable."""
from __future__ import annotations

import json
import time

import pytest
import redis as sync_redis

from perf_operator.ratelimit.layout import record_key
from tests.e2e.test_tenants_tables import manifests, tables_ready
from tests.support.kube import eventually
from tests.support.rbac import (lease_election_in, operator_kubeconfig,
                                start_operator_as_deployed)

pytestmark = pytest.mark.e2e

OLD_FINALIZER = "perf.idp.io/finalizer"


@pytest.mark.isolated
def test_a_tenant_deleted_while_the_operator_is_stopped_is_swept_after_it_starts(
        stack, kubectl, crds, namespace, credentials, pg_database, psql, redis_prefix,
        tmp_path):
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password,
                              decode_responses=True)
    db = pg_database["database"]

    def rows() -> list[str]:
        return psql(db, "SELECT tenant_id FROM perf_operator.tenant_limits WHERE "
                        f"profile_namespace = '{namespace}' ORDER BY 1").split()

    first = start_operator_as_deployed(kubeconfig, tmp_path / "first", name="first",
                                       namespace=namespace)
    try:
        kubectl.apply(manifests(stack, credentials, redis_prefix, {"acme": 3, "initech": 4},
                                pg_database), namespace)
        for tenant in ("acme", "initech"):
            eventually(lambda: tables_ready(kubectl, namespace, tenant), timeout=60,
                       what=f"{tenant} TablesReady")
        for tenant in ("acme", "initech"):
            assert not kubectl.get("tq", tenant, namespace)["metadata"].get("finalizers")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{first.log_tail(40)}") from None
    finally:
        first.stop()

    # Not the operator's, under the same prefix: left alone whatever happens.
    foreign = {record_key(redis_prefix, "foreign"): {"owner": "elsewhere/foreign",
                                                      "version": "1"},
               record_key(redis_prefix, "ownerless"): {"version": "1"}}
    for key, fields in foreign.items():
        client.hset(key, mapping=fields)

    kubectl.run("delete", "tq", "acme", "--timeout=30s", namespace=namespace)  # no finalizer
    # As an earlier version left it: a tenant with the operator's old finalizer.
    kubectl.apply(json.dumps({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
        "metadata": {"name": "legacy", "finalizers": [OLD_FINALIZER]},
        "spec": {"tenantId": "legacy", "profileRef": {"name": "platform"}}}), namespace)
    assert client.exists(record_key(redis_prefix, "acme")) and rows() == ["acme", "initech"]

    second = start_operator_as_deployed(kubeconfig, tmp_path / "second", name="second",
                                        namespace=namespace)
    started = time.monotonic()
    try:
        eventually(lambda: not client.exists(record_key(redis_prefix, "acme"))
                   and "acme" not in rows(), timeout=60, interval=0.2,
                   what="the deleted tenant's record and mirror row swept")
        swept = time.monotonic() - started
        print(f"swept {swept:.1f} s after the operator started")
        assert "deleted the limits record" in second.log_path.read_text()
        assert client.exists(record_key(redis_prefix, "initech")) and "initech" in rows()
        for key, fields in foreign.items():
            assert client.hgetall(key) == fields, key

        # The upgrade: the old finalizer is taken off, the tenant is served and deletable.
        eventually(lambda: tables_ready(kubectl, namespace, "legacy"), timeout=60,
                   what="the legacy tenant TablesReady")
        eventually(lambda: not kubectl.get("tq", "legacy", namespace)["metadata"].get(
            "finalizers"), timeout=30, what="the old finalizer removed")
        kubectl.run("delete", "tq", "legacy", "--timeout=30s", namespace=namespace)
        # while the operator runs, the DELETED event removes the tables
        eventually(lambda: not client.exists(record_key(redis_prefix, "legacy"))
                   and rows() == ["initech"], timeout=30,
                   what="the legacy tenant's tables removed on its deletion")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{second.log_tail(60)}") from None
    finally:
        second.stop()
        client.delete(*foreign)
        client.close()
    # startup (election, one LIST) plus one 2 s test-mode re-check; generous for a loaded
    # machine, and never reached by a tenant nothing sweeps
    assert swept < 20
