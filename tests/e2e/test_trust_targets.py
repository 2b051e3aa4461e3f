"""The trust boundary around PerformanceTargets and the connection policy, on the real stack.

Every profile here is applied with kubectl as a team's ServiceAccount bound to
``perf-operator-edit`` in its namespace (no more): the team can name a target, never see its
credentials, and cannot make the operator connect where the policy does not allow."""
from __future__ import annotations

import json
import pathlib
import secrets
import socket
import threading
import time

import pytest
import redis as sync_redis

from perf_operator.ratelimit.layout import record_key
from tests.support.kube import Kubectl, condition, eventually
from tests.support.rbac import OPERATOR_NAMESPACE

API = "perf.idp.io/v1alpha1"


# ----------------------------------------------------------------------------------- helpers

def as_team(stack, kubectl: Kubectl, namespace: str, tmp_path: pathlib.Path) -> Kubectl:
    """kubectl as ServiceAccount ``team`` of ``namespace``, bound to perf-operator-edit there."""
    kubectl.run("create", "serviceaccount", "team", namespace=namespace)
    kubectl.run("create", "rolebinding", "team-perf-edit", "--clusterrole=perf-operator-edit",
                f"--serviceaccount={namespace}:team", namespace=namespace)
    token = kubectl.run("create", "token", "team", "--duration=1h",
                        namespace=namespace).stdout.strip()
    path = tmp_path / f"team-{namespace}.kubeconfig"
    stack.control_plane.token_kubeconfig(path, token, namespace=namespace)
    return Kubectl(kubectl.binary, str(path))


def team_apply(team: Kubectl, document: dict, *, check: bool = True):
    """Server-side apply: a PATCH, which perf-operator-edit grants (no GET needed)."""
    return team.run("apply", "--server-side", "--field-manager=team", "-f", "-",
                    input=json.dumps(document), check=check)


def profile(name: str, spec: dict) -> dict:
    return {"apiVersion": API, "kind": "PerformanceProfile", "metadata": {"name": name},
            "spec": spec}


def ready(kubectl: Kubectl, kind: str, name: str, namespace: str | None = None):
    return condition(kubectl.get(kind, name, namespace), "Ready")


def wait_ready(kubectl, kind, name, namespace=None, *, status="True", reason=None,
               timeout=90):
    def check():
        found = ready(kubectl, kind, name, namespace)
        if found and found["status"] == status and (reason is None
                                                    or found["reason"] == reason):
            return found
        return None
    try:
        return eventually(check, timeout=timeout, what=f"{kind} {name} Ready={status} {reason}")
    except AssertionError as err:
        conditions = ((kubectl.get(kind, name, namespace) or {}).get("status") or {}).get(
            "conditions")
        raise AssertionError(f"{err}; conditions: {conditions}") from None


class Listener:
    """A TCP socket that counts the connections it is offered."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def target_secrets(stack, kubectl):
    """The shared servers' credentials, in the operator's namespace (never the team's)."""
    suffix = secrets.token_hex(3)
    pg, rd = f"shared-postgres-{suffix}", f"shared-redis-{suffix}"
    kubectl.run("create", "secret", "generic", pg, f"--from-literal=username="
                f"{stack.postgres.operator_user}",
                f"--from-literal=password={stack.postgres.operator_password}",
                namespace=OPERATOR_NAMESPACE)
    kubectl.run("create", "secret", "generic", rd,
                f"--from-literal=password={stack.redis.password}", namespace=OPERATOR_NAMESPACE)
    yield {"postgres": pg, "redis": rd}
    kubectl.run("delete", "secret", pg, rd, namespace=OPERATOR_NAMESPACE, check=False)


@pytest.fixture
def target(stack, kubectl, pg_database, target_secrets):
    """A PerformanceTarget over the stack's PostgreSQL (one test database) and Redis, selecting
    namespaces labelled with a label of its own; yields (name, label, owner namespace)."""
    name = f"shared-{secrets.token_hex(3)}"
    label = f"trust-{secrets.token_hex(3)}"

    def create(owner: tuple[str, str] | None = None) -> str:
        spec = {
            "namespaceSelector": {"matchLabels": {"perf.idp.io/target": label}},
            "postgres": {"host": "127.0.0.1", "port": stack.postgres.port,
                         "database": pg_database["database"], "sslMode": "disable",
                         "secretRef": {"name": target_secrets["postgres"]},
                         "allowedParameters": ["work_mem", "random_page_cost"]},
            "redis": {"host": "127.0.0.1", "port": stack.redis.port,
                      "secretRef": {"name": target_secrets["redis"]}},
        }
        if owner:
            spec["serverSettingsOwner"] = {"namespace": owner[0], "name": owner[1]}
        kubectl.apply(json.dumps({"apiVersion": API, "kind": "PerformanceTarget",
                                  "metadata": {"name": name}, "spec": spec}))
        return name

    yield create, label
    kubectl.run("delete", "performancetarget", name, "--wait=false", check=False)


@pytest.fixture
def other_namespace(kubectl):
    name = f"t-{secrets.token_hex(4)}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


# -------------------------------------------------------------------------------- the tests

def test_profile_on_a_target_works_end_to_end_without_any_credential_in_the_namespace(
        operator, stack, kubectl, namespace, psql, pg_database, target, target_secrets,
        tmp_path):
    create, label = target
    name = create(owner=(namespace, "shared-app"))
    kubectl.run("label", "namespace", namespace, f"perf.idp.io/target={label}")
    psql(pg_database["database"], "CREATE TABLE users (id int, tenant_id int, email text)")
    team = as_team(stack, kubectl, namespace, tmp_path)
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password,
                              decode_responses=True)
    slowlog_before = client.config_get("slowlog-max-len")["slowlog-max-len"]
    try:
        team_apply(team, profile("shared-app", {
            "targetRef": {"name": name},
            "database": {"indexes": [{"name": "users_tenant_idx", "table": "users",
                                      "columns": [{"column": "tenant_id"}]}],
                         "settings": {"scope": "Database", "parameters": {"work_mem": "7MB"}}},
            "redis": {"keyPrefix": "app:", "settings": {"slowlog-max-len": "131"}}}))
        team_apply(team, {"apiVersion": API, "kind": "TenantQuota",
                          "metadata": {"name": "acme"},
                          "spec": {"tenantId": "acme", "profileRef": {"name": "shared-app"}}})
        found = wait_ready(kubectl, "performanceprofile", "shared-app", namespace, timeout=120)
        assert found["reason"] == "Reconciled", found
        granted = condition(kubectl.get("performanceprofile", "shared-app", namespace),
                            "TargetResolved")
        assert granted["status"] == "True" and granted["reason"] == "TargetGranted"
        # the index, the Database-scope setting, the owner's Redis setting
        assert psql(pg_database["database"], "SELECT count(*) FROM pg_indexes WHERE "
                                             "indexname = 'users_tenant_idx'").strip() == "1"
        assert "work_mem=7MB" in psql("postgres", "SELECT setconfig::text FROM "
                                                  "pg_db_role_setting s JOIN pg_database d ON "
                                                  f"d.oid = s.setdatabase WHERE d.datname = "
                                                  f"'{pg_database['database']}'")
        assert client.config_get("slowlog-max-len")["slowlog-max-len"] == "131"
        # the tenant record, under the prefix derived from the namespace
        wait_ready(kubectl, "tenantquota", "acme", namespace)
        key = record_key(f"{namespace}:app:", "acme")
        assert client.exists(key) == 1
        tenant = kubectl.get("tenantquota", "acme", namespace)
        assert tenant["status"]["table"]["key"] == key
        # no credential anywhere in the team's namespace, and the team cannot read the target's
        assert kubectl.run("get", "secrets", "-o", "name", namespace=namespace).stdout == ""
        denied = team.run("get", "secret", target_secrets["postgres"],
                          namespace=OPERATOR_NAMESPACE, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
        # the target reports its user and its reachable servers
        def target_reports():
            body = kubectl.get("performancetarget", name) or {}
            status = body.get("status") or {}
            return status if status.get("namespaces") == [namespace] else None
        status = eventually(target_reports, timeout=60, what="target status")
        assert status["profiles"] == 1
        assert {s["server"]: s["reachable"] for s in status["servers"]} == {
            "postgres": True, "redis": True}
    finally:
        client.config_set("slowlog-max-len", slowlog_before)
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
        client.close()


def test_target_status_names_unreachable_servers_and_never_dials_metadata(operator, kubectl):
    """A target's own status: a closed port is Unreachable (with a Warning Event about the
    cluster-scoped target, in namespace default), a metadata address AddressRefused without a
    connection attempt."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    name = f"broken-{secrets.token_hex(3)}"
    kubectl.apply(json.dumps({"apiVersion": API, "kind": "PerformanceTarget",
                              "metadata": {"name": name},
                              "spec": {"namespaceSelector": {},
                                       "redis": {"host": "127.0.0.1", "port": port},
                                       "prometheus": {"url": "http://169.254.169.254/"}}}))
    try:
        found = wait_ready(kubectl, "performancetarget", name, status="False")
        body = kubectl.get("performancetarget", name)
        servers = {s["server"]: s for s in body["status"]["servers"]}
        assert not servers["redis"]["reachable"] and not servers["prometheus"]["reachable"]
        assert condition(body, "RedisReachable")["reason"] == "Unreachable"
        assert condition(body, "PrometheusReachable")["reason"] == "AddressRefused"
        assert found["reason"] in ("Unreachable", "AddressRefused")

        def warned():
            events = json.loads(kubectl.run("get", "events", "-o", "json",
                                            namespace="default").stdout)["items"]
            return [e for e in events if e["involvedObject"].get("name") == name
                    and e["involvedObject"].get("kind") == "PerformanceTarget"
                    and e["type"] == "Warning"]
        assert eventually(warned, timeout=30, what="a Warning Event about the target")
    finally:
        kubectl.run("delete", "performancetarget", name, "--wait=false", check=False)


def test_a_namespace_the_target_does_not_select_gets_nothing(
        operator, stack, kubectl, namespace, other_namespace, psql, pg_database, target,
        tmp_path):
    create, label = target
    name = create()
    kubectl.run("label", "namespace", namespace, f"perf.idp.io/target={label}")
    psql(pg_database["database"], "CREATE TABLE users (id int, tenant_id int)")
    team_b = as_team(stack, kubectl, other_namespace, tmp_path)
    team_apply(team_b, profile("squatter", {
        "targetRef": {"name": name},
        "database": {"indexes": [{"name": "squatter_idx", "table": "users",
                                  "columns": [{"column": "tenant_id"}]}]},
        "redis": {"keyPrefix": "app:"}}))
    team_apply(team_b, {"apiVersion": API, "kind": "TenantQuota", "metadata": {"name": "acme"},
                        "spec": {"tenantId": "acme", "profileRef": {"name": "squatter"}}})
    found = wait_ready(kubectl, "performanceprofile", "squatter", other_namespace,
                       status="False", reason="NamespaceNotSelected")
    assert name in found["message"] and other_namespace in found["message"]
    wait_ready(kubectl, "tenantquota", "acme", other_namespace, status="False",
               reason="NamespaceNotSelected")
    # nothing was done on the target's servers for B
    status = kubectl.get("performanceprofile", "squatter", other_namespace)["status"]
    assert "database" not in status and "redis" not in status
    assert psql(pg_database["database"], "SELECT count(*) FROM pg_indexes WHERE "
                                         "indexname = 'squatter_idx'").strip() == "0"
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password)
    try:
        assert list(client.scan_iter(f"{other_namespace}:*")) == []
    finally:
        client.close()


def test_an_address_outside_policy_is_refused_without_any_connection(
        operator, stack, kubectl, namespace, tmp_path):
    """The session operator allows inline connections to 127.0.0.1 only: a listener on
    127.0.0.2 (loopback too, but not on the allow-list) and the metadata address are refused
    before any connection attempt."""
    listener = Listener("127.0.0.2")
    team = as_team(stack, kubectl, namespace, tmp_path)
    try:
        team_apply(team, profile("elsewhere", {
            "redis": {"connection": {"host": "127.0.0.2", "port": listener.port},
                      "settings": {}}}))
        team_apply(team, profile("metadata", {
            "redis": {"connection": {"host": "169.254.169.254", "port": 80}, "settings": {}}}))
        found = wait_ready(kubectl, "performanceprofile", "elsewhere", namespace,
                           status="False", reason="HostNotAllowed")
        assert "127.0.0.2" in found["message"]
        wait_ready(kubectl, "performanceprofile", "metadata", namespace, status="False",
                   reason="AddressRefused")
        # a few resyncs (2 s each in test mode) later, still not one connection
        time.sleep(5)
        assert listener.accepted == 0
    finally:
        listener.close()


def test_prometheus_url_with_credentials_is_refused_at_apply(crds, stack, kubectl, namespace,
                                                              tmp_path):
    team = as_team(stack, kubectl, namespace, tmp_path)
    result = team_apply(team, profile("leaky", {
        "prometheus": {"url": "http://admin:hunter2@127.0.0.1:9090"}}), check=False)
    assert result.returncode != 0
    assert "must not carry credentials" in result.stderr
    # the same for a platform admin's target
    target = {"apiVersion": API, "kind": "PerformanceTarget",
              "metadata": {"name": f"leaky-{secrets.token_hex(3)}"},
              "spec": {"namespaceSelector": {},
                       "prometheus": {"url": "https://token@prometheus.example"}}}
    refused = kubectl.apply(json.dumps(target), None, check=False)
    assert refused.returncode != 0 and "must not carry credentials" in refused.stderr


def test_teams_may_not_create_targets(crds, stack, kubectl, namespace, tmp_path):
    team = as_team(stack, kubectl, namespace, tmp_path)
    result = team_apply(team, {"apiVersion": API, "kind": "PerformanceTarget",
                               "metadata": {"name": f"mine-{secrets.token_hex(3)}"},
                               "spec": {"namespaceSelector": {},
                                        "redis": {"host": "127.0.0.1"}}}, check=False)
    assert result.returncode != 0 and "forbidden" in result.stderr.lower()


@pytest.mark.isolated
def test_inline_connections_refused_by_an_operator_not_started_to_allow_them(
        stack, crds, kubectl, namespace, tmp_path):
    """An operator as the cluster-wide overlay runs it (no --allow-inline-connections): a
    profile writing its own connection is refused with a reason, nothing connected."""
    from tests.support.operator import start_operator
    from tests.support.rbac import lease_election_in, operator_kubeconfig

    listener = Listener("127.0.0.1")
    lease_election_in(kubectl, namespace)
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "operator.kubeconfig")
    proc = start_operator(kubeconfig, tmp_path / "log", name="closed",
                          extra_args=("--standalone", f"--namespace={namespace}"),
                          env={"POD_NAME": "closed", "PERF_OPERATOR_NAMESPACE": namespace,
                               "PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS": "0",
                               "PERF_OPERATOR_INLINE_HOSTS": ""})
    team = as_team(stack, kubectl, namespace, tmp_path)
    try:
        team_apply(team, profile("inline", {
            "redis": {"connection": {"host": "127.0.0.1", "port": listener.port},
                      "settings": {}}}))
        found = wait_ready(kubectl, "performanceprofile", "inline", namespace, status="False",
                           reason="InlineConnectionsRefused", timeout=120)
        assert "targetRef" in found["message"]
        assert listener.accepted == 0
    finally:
        proc.stop()
        listener.close()
