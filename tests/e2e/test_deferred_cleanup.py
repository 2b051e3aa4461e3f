"""A namespace deleted while PostgreSQL is down: it terminates promptly (no finalizer waits on
the server), and what its profile and tenants left in the database (an index under
indexPrunePolicy Delete, the tenants' mirror rows) is remembered in the operator's namespace,
with copies of the credentials the namespace's teardown deleted, and removed once PostgreSQL is
back, with an Event in the operator's namespace saying so. That holds when the deletion is
finished by an operator process that never read the namespace's Secrets (a leader handover):
every credential is escrowed in the operator's namespace before it is used. A profile and
tenant that never logged in (applied without their Secrets) are released with nothing to do,
not written into the ledger to fail for ever."""
from __future__ import annotations

import json
import secrets
import time

import pytest
import yaml

from perf_operator.leadership import LEASE_NAME
from tests.conftest import ISOLATED_PREFIX
from tests.e2e.postgres_support import database_section
from tests.e2e.test_tenants_tables import profile_spec
from tests.support.kube import condition, eventually
from tests.support.rbac import (OPERATOR_NAMESPACE, operator_kubeconfig,
                                operator_namespace_roles_in, start_operator_as_deployed)

INDEX = "orders_tenant_idx"
#: The test operators' resync (PERF_OPERATOR_TEST_MODE), which is also their ledger pass.
TEST_RESYNC_SECONDS = 2.0


def ready(kubectl, kind: str, name: str, namespace: str) -> bool:
    return (condition(kubectl.get(kind, name, namespace), "Ready") or {}).get("status") == "True"


def profile_and_tenants(stack, credentials: dict, redis_prefix: str, pg_database: dict,
                        tenants: tuple[str, ...]) -> str:
    """A profile "platform" with one index under indexPrunePolicy Delete, and its tenants."""
    spec = profile_spec(stack, credentials, redis_prefix, pg_database)
    spec["database"] = database_section(
        pg_database, indexPrunePolicy="Delete",
        indexes=[{"name": INDEX, "table": "orders", "columns": [{"column": "tenant"}]}])
    docs = [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
             "metadata": {"name": "platform"}, "spec": spec}]
    docs += [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
              "metadata": {"name": tenant},
              "spec": {"tenantId": tenant, "profileRef": {"name": "platform"}}}
             for tenant in tenants]
    return yaml.safe_dump_all(docs)


def create_orders(psql, db: str) -> None:
    psql(db, "CREATE TABLE orders AS SELECT g AS id, g % 10 AS tenant "
             "FROM generate_series(1, 1000) g")


def leftovers(psql, db: str, namespace: str) -> tuple[int, int]:
    """The profile's index and its tenants' mirror rows still in the database."""
    indexes = psql(db, f"SELECT count(*) FROM pg_indexes WHERE indexname = '{INDEX}'")
    rows = psql(db, "SELECT count(*) FROM perf_operator.tenant_limits "
                    f"WHERE profile_namespace = '{namespace}'")
    return int(indexes), int(rows)


def finished_events(kubectl, home: str, namespace: str) -> list[dict]:
    """CleanupFinished Events of the namespace's profile, in the operator's namespace."""
    items = json.loads(kubectl.run("get", "events", "-o", "json", namespace=home).stdout)["items"]
    return [e for e in items if e["reason"] == "CleanupFinished"
            and f"{namespace}/platform" in e["message"]]


def test_namespace_deleted_while_postgres_is_down_is_cleaned_up_later(
        operator, stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix):
    db = pg_database["database"]
    create_orders(psql, db)
    kubectl.apply(profile_and_tenants(stack, credentials, redis_prefix, pg_database,
                                      ("acme", "initech")), namespace)
    eventually(lambda: ready(kubectl, "pp", "platform", namespace)
               and ready(kubectl, "tq", "acme", namespace)
               and ready(kubectl, "tq", "initech", namespace), timeout=90,
               what="the profile and its tenants Ready")

    assert leftovers(psql, db, namespace) == (1, 2)
    stack.postgres.stop()
    try:
        started = time.monotonic()
        kubectl.run("delete", "namespace", namespace, "--wait=false")
        try:
            eventually(lambda: kubectl.run("get", "namespace", namespace, check=False
                                           ).returncode != 0, timeout=60,
                       what="the namespace gone while PostgreSQL is down")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{operator.log_tail(60)}") from None
        print(f"namespace gone after {time.monotonic() - started:.1f} s")
        ledger = json.loads(kubectl.run("get", "configmap", "perf-operator-cleanup", "-o",
                                        "json", namespace=OPERATOR_NAMESPACE).stdout)
        assert any(f".{namespace}." in key for key in ledger.get("data") or {}), ledger
        assert stack.postgres.operator_password not in json.dumps(ledger)
    finally:
        stack.postgres.launch()

    eventually(lambda: leftovers(psql, db, namespace) == (0, 0), timeout=90,
               what="the index and the mirror rows removed once PostgreSQL is back")
    events = eventually(lambda: finished_events(kubectl, OPERATOR_NAMESPACE, namespace),
                        timeout=30, what="a CleanupFinished Event")
    assert events[0]["source"]["component"] == "perf-operator"
    eventually(lambda: not any(f".{namespace}." in key for key in (json.loads(kubectl.run(
        "get", "configmap", "perf-operator-cleanup", "-o", "json",
        namespace=OPERATOR_NAMESPACE).stdout).get("data") or {})), timeout=30,
        what="the ledger entries removed")


async def test_a_dropped_database_leaves_nothing_to_clean_up(stack, namespace, credentials,
                                                              psql):
    """A profile deleted after its database was dropped: its indexes went with the database,
    so the cleanup is done at once (it is not deferred and retried for ever)."""
    import secrets as tokens

    from perf_operator.postgres import cleanup_profile
    from tests.e2e.postgres_support import database_section, profile_context

    name = f"t_{tokens.token_hex(4)}"
    stack.postgres.create_database(name)
    psql("postgres", f"DROP DATABASE {name} WITH (FORCE)")
    pg = {"host": "127.0.0.1", "port": stack.postgres.port, "database": name}
    ctx = profile_context(namespace, database_section(pg, indexes=[
        {"name": "t_a_idx", "table": "t", "columns": [{"column": "a"}]}]))
    await cleanup_profile(ctx)  # returns: nothing raised, nothing to retry


def ledger_entries(kubectl, home: str, namespace: str) -> dict:
    """The cleanup ledger's entries (key -> entry) of objects in ``namespace``."""
    result = kubectl.run("get", "configmap", "perf-operator-cleanup", "-o", "json",
                         namespace=home, check=False)
    if result.returncode != 0:
        return {}
    data = json.loads(result.stdout).get("data") or {}
    return {key: json.loads(text) for key, text in data.items() if f".{namespace}." in key}


def escrows(kubectl, home: str, namespace: str) -> list[str]:
    """The sources (namespace/name) of the escrowed Secrets of ``namespace``."""
    items = json.loads(kubectl.run("get", "secrets", "-l", "perf.idp.io/escrow=true", "-o",
                                   "json", namespace=home).stdout)["items"]
    sources = [item["metadata"]["annotations"]["perf.idp.io/secret"] for item in items]
    return sorted(source for source in sources if source.startswith(f"{namespace}/"))


class Team:
    """A team's namespace with its Secrets, watched by operator processes started as deployed
    (electing in ``home``, where the ledger and escrows are); on exit the processes stop and the
    namespace goes, and an assertion error carries their log tails."""

    def __init__(self, stack, kubectl, home: str, tmp_path) -> None:
        self.kubectl, self.home, self.tmp_path = kubectl, home, tmp_path
        self.name = f"{ISOLATED_PREFIX}{secrets.token_hex(4)}"
        kubectl.run("create", "namespace", self.name)
        kubectl.run("create", "secret", "generic", "pg-credentials",
                    "--from-literal=username=" + stack.postgres.operator_user,
                    "--from-literal=password=" + stack.postgres.operator_password,
                    namespace=self.name)
        kubectl.run("create", "secret", "generic", "redis-credentials",
                    "--from-literal=password=" + stack.redis.password, namespace=self.name)
        self.credentials = {"postgres": "pg-credentials", "redis": "redis-credentials"}
        self.kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
        operator_namespace_roles_in(kubectl, home)
        self.processes: list = []

    def start(self, name: str):
        proc = start_operator_as_deployed(self.kubeconfig, self.tmp_path / name, name=name,
                                          namespace=self.home,
                                          extra_args=(f"--namespace={self.name}",))
        self.processes.append(proc)
        return proc

    def platform_run_by(self, name: str, stack, pg_database: dict, redis_prefix: str):
        """Start operator ``name``, apply profile "platform" with its tenant "acme", wait for
        both Ready and for both Secrets escrowed; returns the operator process."""
        proc = self.start(name)
        self.kubectl.apply(profile_and_tenants(stack, self.credentials, redis_prefix,
                                               pg_database, ("acme",)), self.name)
        eventually(lambda: ready(self.kubectl, "pp", "platform", self.name)
                   and ready(self.kubectl, "tq", "acme", self.name),
                   timeout=90, what="the profile and its tenant Ready")
        self.assert_escrowed()
        return proc

    def assert_escrowed(self) -> None:
        assert escrows(self.kubectl, self.home, self.name) == [
            f"{self.name}/pg-credentials", f"{self.name}/redis-credentials"]

    def delete_while_postgres_is_down(self, stack, before_gone=lambda: None) -> None:
        """Delete the namespace with PostgreSQL stopped; ``before_gone`` runs once its Secrets
        are deleted. PostgreSQL is started again when the namespace is gone."""
        stack.postgres.stop()
        try:
            self.kubectl.run("delete", "namespace", self.name, "--wait=false")
            eventually(lambda: not self.kubectl.run("get", "secrets", "-o", "name",
                                                    namespace=self.name).stdout.strip(),
                       timeout=60, what="the namespace's Secrets deleted")
            before_gone()
            eventually(lambda: self.kubectl.run("get", "namespace", self.name, check=False
                                                ).returncode != 0, timeout=60,
                       what="the namespace gone")
            entries = ledger_entries(self.kubectl, self.home, self.name)
            assert entries, "nothing written into the ledger"
            assert all(not entry["neverRead"] for entry in entries.values()), entries
        finally:
            stack.postgres.launch()

    def __enter__(self) -> Team:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if isinstance(error, AssertionError):
                logs = "\n".join(proc.log_tail(60) for proc in self.processes)
                raise AssertionError(f"{error}\n{logs}") from None
        finally:
            for proc in self.processes:
                proc.stop()
            self.kubectl.run("delete", "namespace", self.name, "--wait=false", check=False)


def cleaned_up_after_postgres_is_back(kubectl, psql, db: str, home: str, team: str) -> None:
    eventually(lambda: leftovers(psql, db, team) == (0, 0), timeout=90,
               what="the index and the mirror rows removed")
    eventually(lambda: not ledger_entries(kubectl, home, team), timeout=30,
               what="the ledger entries removed")
    eventually(lambda: not escrows(kubectl, home, team), timeout=30,
               what="the escrows deleted once nothing needs them")


@pytest.mark.isolated
def test_a_leader_that_never_read_the_secrets_finishes_the_cleanup(
        stack, kubectl, crds, namespace, pg_database, psql, redis_prefix, tmp_path):
    """The chaos run's orphans: operator A reconciles a profile and its tenant, A stops,
    PostgreSQL stops, the namespace is deleted (its Secrets with it), and a fresh process B,
    which never read those Secrets, finalizes the profile and tenant. B's ledger entries get
    their credentials from the escrow A wrote before it logged in, so once PostgreSQL is back
    the index and the mirror row are removed, with a CleanupFinished Event, and the escrows go
    when nothing needs them any more."""
    db = pg_database["database"]
    create_orders(psql, db)
    with Team(stack, kubectl, namespace, tmp_path) as team:
        first = team.platform_run_by("operator-a", stack, pg_database, redis_prefix)
        assert leftovers(psql, db, team.name) == (1, 1)
        first.stop()
        # Teardown deletes the Secrets; the profile and tenant wait for their finalizers.
        team.delete_while_postgres_is_down(stack, lambda: team.start("operator-b"))
        assert {entry["kind"] for entry in ledger_entries(
            kubectl, namespace, team.name).values()} >= {"PerformanceProfile"}
        cleaned_up_after_postgres_is_back(kubectl, psql, db, namespace, team.name)
        assert finished_events(kubectl, namespace, team.name)


@pytest.mark.isolated
def test_a_tenant_outliving_its_profile_keeps_the_escrow_its_cleanup_needs(
        stack, kubectl, crds, namespace, pg_database, psql, redis_prefix, tmp_path):
    """Found analysing the chaos run's last orphan: a profile deleted first takes away the
    profile that named its Secrets, but its TenantQuota stays, its status saying where its
    tables are (the Secrets to log in there). The escrows of those Secrets stay while it does:
    a leader that never read them (B) deletes the namespace's tenant while PostgreSQL is down
    and still removes its mirror row once PostgreSQL is back."""
    db = pg_database["database"]
    create_orders(psql, db)
    with Team(stack, kubectl, namespace, tmp_path) as team:
        first = team.platform_run_by("operator-a", stack, pg_database, redis_prefix)
        kubectl.run("delete", "pp", "platform", "--timeout=60s", namespace=team.name)
        assert leftovers(psql, db, team.name) == (0, 1)  # the index went with its profile
        time.sleep(4 * TEST_RESYNC_SECONDS)  # a few ledger passes, each collecting escrows
        team.assert_escrowed()
        first.stop()
        team.start("operator-b")
        eventually(lambda: ((kubectl.get("lease", LEASE_NAME, namespace) or {}).get("spec") or {}
                            ).get("holderIdentity", "").startswith("operator-b"),
                   timeout=60, what="operator-b leading")
        team.delete_while_postgres_is_down(stack)
        cleaned_up_after_postgres_is_back(kubectl, psql, db, namespace, team.name)


def test_a_profile_that_never_logged_in_is_released_with_nothing_to_do(
        operator, stack, kubectl, namespace, pg_database, redis_prefix):
    """Applied without its Secrets, a profile (indexes under Delete) and its tenant never
    reached a server; deleting them finishes at once: no ledger entry that fails for ever."""
    kubectl.apply(profile_and_tenants(stack, {"postgres": "pg-credentials",
                                              "redis": "redis-credentials"},
                                      redis_prefix, pg_database, ("acme",)), namespace)

    def reason(kind: str, name: str, type_: str) -> str | None:
        return (condition(kubectl.get(kind, name, namespace), type_) or {}).get("reason")

    eventually(lambda: reason("pp", "platform", "DatabaseReady") == "SecretNotFound"
               and reason("tq", "acme", "Ready") is not None, timeout=60,
               what="the profile reporting its missing Secret")
    kubectl.run("delete", "tq", "acme", "--timeout=30s", namespace=namespace)
    kubectl.run("delete", "pp", "platform", "--timeout=30s", namespace=namespace)
    assert ledger_entries(kubectl, OPERATOR_NAMESPACE, namespace) == {}
    assert escrows(kubectl, OPERATOR_NAMESPACE, namespace) == []
