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
from tests.e2e.test_deferred_cleanup import ledger_entries
from tests.e2e.test_tenants_tables import manifests, tables_ready
from tests.support.kube import eventually
from tests.support.rbac import (operator_kubeconfig, operator_namespace_roles_in,
                                start_operator_as_deployed)

pytestmark = pytest.mark.e2e

OLD_FINALIZER = "perf.idp.io/finalizer"


class Tables:
    """The tables of profile "platform"'s tenants acme and initech, written by an operator
    that is stopped once they are ready: the Redis client and the tenants' mirror rows."""

    def __init__(self, stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix,
                 tmp_path) -> None:
        self.kubectl, self.namespace, self.tmp_path = kubectl, namespace, tmp_path
        self.psql, self.db = psql, pg_database["database"]
        self.kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
        operator_namespace_roles_in(kubectl, namespace)  # lease, ledger, escrows
        self.client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password,
                                       decode_responses=True)
        first = self.start("first")
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

    def start(self, name: str):
        return start_operator_as_deployed(self.kubeconfig, self.tmp_path / name, name=name,
                                          namespace=self.namespace)

    def rows(self) -> list[str]:
        return self.psql(self.db, "SELECT tenant_id FROM perf_operator.tenant_limits WHERE "
                                  f"profile_namespace = '{self.namespace}' ORDER BY 1").split()


@pytest.mark.isolated
def test_a_tenant_deleted_while_the_operator_is_stopped_is_swept_after_it_starts(
        stack, kubectl, crds, namespace, credentials, pg_database, psql, redis_prefix,
        tmp_path):
    tables = Tables(stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix,
                    tmp_path)
    client, rows = tables.client, tables.rows

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

    second = tables.start("second")
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


@pytest.mark.isolated
def test_a_profile_deleted_after_a_tenant_deleted_while_no_operator_ran_sweeps_its_tables(
        stack, kubectl, crds, namespace, credentials, pg_database, psql, redis_prefix,
        tmp_path):
    """The short chaos run's orphans: a tenant deleted while no leader ran, then its profile,
    before the next leader's first re-check of the profile's location. The profile's deletion
    sweeps its location: the deleted tenant's record and row go, the tenant that still exists
    (it outlives its profile) keeps its own until it is deleted."""
    tables = Tables(stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix,
                    tmp_path)
    kubectl.run("delete", "tq", "acme", "--timeout=30s", namespace=namespace)
    kubectl.run("delete", "pp", "platform", "--wait=false", namespace=namespace)
    acme, initech = record_key(redis_prefix, "acme"), record_key(redis_prefix, "initech")
    second = tables.start("second")
    try:
        eventually(lambda: kubectl.get("pp", "platform", namespace) is None, timeout=60,
                   what="the profile deleted")
        assert not tables.client.exists(acme) and tables.rows() == ["initech"]
        assert tables.client.exists(initech)
        kubectl.run("delete", "tq", "initech", "--timeout=30s", namespace=namespace)
        eventually(lambda: not tables.client.exists(initech) and tables.rows() == [],
                   timeout=30, what="initech's tables removed, from its status")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{second.log_tail(60)}") from None
    finally:
        second.stop()
        tables.client.close()


@pytest.mark.isolated
def test_a_tenant_outliving_its_profile_and_deleted_while_no_operator_ran_is_swept(
        stack, kubectl, crds, namespace, credentials, pg_database, psql, redis_prefix,
        tmp_path):
    """The short chaos run's last orphans: tenants outlive their deleted profile (they keep
    their tables), then one is deleted while no operator leads. No DELETED event is seen and
    no profile re-checks that location, so the profile's deletion has the location watched
    from the cleanup ledger: the next leader sweeps it, the survivor keeps its tables, and the
    entry goes once no tenant names the location."""
    tables = Tables(stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix,
                    tmp_path)
    acme, initech = record_key(redis_prefix, "acme"), record_key(redis_prefix, "initech")
    uid = kubectl.get("pp", "platform", namespace)["metadata"]["uid"]
    second = tables.start("second")
    try:
        kubectl.run("delete", "pp", "platform", "--timeout=60s", namespace=namespace)
        eventually(lambda: list(ledger_entries(kubectl, namespace, namespace)) == [
            f"TenantTables.{namespace}.platform.{uid[:8]}"], timeout=30,
            what="the deleted profile's location watched from the ledger")
        assert tables.client.exists(acme) and tables.client.exists(initech)
        assert tables.rows() == ["acme", "initech"]
    except AssertionError as err:
        raise AssertionError(f"{err}\n{second.log_tail(60)}") from None
    finally:
        second.stop()

    kubectl.run("delete", "tq", "acme", "--timeout=30s", namespace=namespace)  # no operator
    third = tables.start("third")
    try:
        eventually(lambda: not tables.client.exists(acme) and tables.rows() == ["initech"],
                   timeout=60, interval=0.2, what="acme's tables swept by the next leader")
        assert tables.client.exists(initech)
        assert ledger_entries(kubectl, namespace, namespace), "still watched for initech"
        kubectl.run("delete", "tq", "initech", "--timeout=30s", namespace=namespace)
        eventually(lambda: not tables.client.exists(initech) and tables.rows() == []
                   and not ledger_entries(kubectl, namespace, namespace), timeout=60,
                   what="initech's tables removed and the ledger entry finished")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{third.log_tail(60)}") from None
    finally:
        third.stop()
        tables.client.close()
