"""Argo CD itself (application controller + repo-server built from the module proxy, headless on
the local control plane) syncing from local bare git repositories, with our health checks
registered in argocd-cm the way docs/gitops.md tells users:

* the operator's CRDs and RBAC, and a team's profile, tenants and Secrets reach Synced and
  Healthy as Argo CD computes them, and never show OutOfSync while the operator reconciles
  (sampled for ``PERF_OPERATOR_ARGOCD_SAMPLE_SECONDS``, 60 s by default; 300 gives the issue's
  five-minute figure);
* a commit that tightens a tenant's limit is synced and enforced in Redis (time printed);
* a profile naming a missing Secret shows Degraded at once with the operator's message naming
  the Secret (its Ready says SecretNotFound), while a profile whose Redis is down is
  Progressing; the fix brings them back to Healthy;
* removing the files (prune) deletes the profile; its finalizer drops its Redis records;
* pruning a profile with indexes (indexPrunePolicy Delete), a per-database parameter, an HPA and
  a PrometheusRule drops its indexes and lets its HPA and rule go, and leaves the application's
  table, an index, a database setting, an HPA and a PrometheusRule made by hand as they were
  (the profile's own parameter keeps its value, as documented);
* a profile whose two index builds on a 2 M-row table take several seconds is Progressing
  (IndexBuilding / IndexPending, never Degraded) until they are done, then Healthy;
* a profile pruned while its cleanup is held up (its index drop waiting for a lock on the
  table) is Progressing for as long as its finalizer runs, then gone.
"""
from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from perf_operator.devstack.argocd import GitRepository, application
from perf_operator.devstack.processes import free_port
from perf_operator.ratelimit.layout import record_key
from tests.e2e.postgres_support import database_section
from tests.e2e.test_kube_scaling import FOREIGN_HPA
from tests.support.kube import condition, eventually
from tests.support.rbac import rbac_documents

SAMPLE_SECONDS = float(os.environ.get("PERF_OPERATOR_ARGOCD_SAMPLE_SECONDS", "60"))
REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def argocd(stack):
    instance = stack.add_argocd()
    yield instance
    instance.stop()
    stack.argocd = None


def _status(argocd, name: str) -> tuple[str, str]:
    status = argocd.application_status(name)
    return (status.get("sync", {}).get("status", ""), status.get("health", {}).get("status", ""))


def _resource_health(argocd, name: str, kind: str, resource: str) -> dict:
    for item in argocd.application_status(name).get("resources") or []:
        if item["kind"] == kind and item["name"] == resource:
            return item.get("health") or {}
    return {}


def _synced_healthy(argocd, name: str, revision: str | None = None):
    status = argocd.application_status(name)
    ok = (status.get("sync", {}).get("status") == "Synced"
          and status.get("health", {}).get("status") == "Healthy"
          and (revision is None or status.get("sync", {}).get("revision") == revision))
    return status if ok else None


def _team_files(stack, namespace: str, database: dict, prefix: str, *, requests: int = 600,
                pg_secret: str = "pg-credentials") -> dict[str, str]:
    """The team's repository: Secrets, a profile and two tenants (examples/tenant-small.yaml,
    pointed at the stack)."""
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-credentials"},
         "stringData": {"username": stack.postgres.operator_user,
                        "password": stack.postgres.operator_password}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-credentials"},
         "stringData": {"password": stack.redis.password}},
    ]
    documents = [d for d in yaml.safe_load_all((REPO_ROOT / "examples/tenant-small.yaml")
                                               .read_text()) if d]
    for doc in documents:
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "PerformanceProfile":
            doc["spec"]["database"]["connection"].update(
                host="127.0.0.1", port=stack.postgres.port, database=database["database"])
            doc["spec"]["database"]["connection"]["secretRef"]["name"] = pg_secret
            doc["spec"]["redis"]["connection"].update(host="127.0.0.1", port=stack.redis.port)
            doc["spec"]["redis"]["keyPrefix"] = prefix
        elif doc["metadata"]["name"] == "hobby-labs":
            doc["spec"]["rateLimits"][0]["requests"] = requests
    for secret in secrets:
        secret["metadata"]["namespace"] = namespace
    return {"team/secrets.yaml": yaml.safe_dump_all(secrets),
            "team/performance.yaml": yaml.safe_dump_all(documents)}


def _unreachable_profile(namespace: str) -> dict:
    """A profile whose Redis listens nowhere (a free loopback port): a transient failure."""
    return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
            "metadata": {"name": "unreachable", "namespace": namespace},
            "spec": {"redis": {"connection": {
                "host": "127.0.0.1", "port": free_port(),
                "secretRef": {"name": "redis-credentials"}}}}}


def _operator_files(kubectl) -> dict[str, str]:
    """The operator's CRDs and RBAC (the Deployment is left out: no pod runs here)."""
    files = {f"operator/{p.name}": p.read_text() for p in sorted((REPO_ROOT / "crds").glob("*"))}
    files["operator/rbac.yaml"] = yaml.safe_dump_all(rbac_documents(kubectl))
    return files


async def _record(redis, prefix: str, tenant: str) -> dict | None:
    raw = await redis.hget(record_key(prefix, tenant), "limits")
    return json.loads(raw) if raw else None


async def test_gitops_flow(operator, stack, kubectl, namespace, pg_database, redis,
                           redis_prefix, argocd, tmp_path):
    repo = GitRepository(tmp_path / "git").create()
    repo.commit("operator and team", {
        **_operator_files(kubectl),
        **_team_files(stack, namespace, pg_database, redis_prefix)})
    argocd.apply_application(application("perf-operator", repo.url, "operator",
                                          "perf-operator-system", finalizer=False))
    team = f"team-{namespace}"
    argocd.apply_application(application(team, repo.url, "team", namespace))

    started = time.monotonic()
    eventually(lambda: _synced_healthy(argocd, "perf-operator"), timeout=180,
               what=lambda_what(argocd, "perf-operator"))
    eventually(lambda: _synced_healthy(argocd, team), timeout=180, what=lambda_what(argocd, team))
    print(f"\nteam Application Synced+Healthy {time.monotonic() - started:.1f}s after creation")
    health = _resource_health(argocd, team, "PerformanceProfile", "platform")
    assert health["status"] == "Healthy", health
    assert _resource_health(argocd, team, "TenantQuota", "hobby-labs")["status"] == "Healthy"

    # No drift while the operator resyncs (every 2 s in test mode) and Argo CD compares
    # (every APP_RESYNC_SECONDS).
    seen: dict[str, int] = {}
    deadline = time.monotonic() + SAMPLE_SECONDS
    while time.monotonic() < deadline:
        for name in ("perf-operator", team):
            sync, health = _status(argocd, name)
            seen[f"{name}:{sync}/{health}"] = seen.get(f"{name}:{sync}/{health}", 0) + 1
            assert sync == "Synced", (name, sync, argocd.application_status(name))
        time.sleep(0.5)
    print(f"sampled {SAMPLE_SECONDS:.0f}s: {seen}")

    # Tighten a tenant's limit in git: synced, enforced, Healthy again.
    before = await _record(redis, redis_prefix, "hobby-labs")
    assert before is not None
    committed = time.monotonic()
    revision = repo.commit("tighten hobby-labs", _team_files(
        stack, namespace, pg_database, redis_prefix, requests=300))
    argocd.refresh(team)

    async def tightened():
        record = await _record(redis, redis_prefix, "hobby-labs")
        return record if record and record != before else None

    record = await async_eventually(tightened, timeout=120, what="the tightened Redis record")
    enforced = time.monotonic() - committed
    assert json.dumps(record).count("300") >= 1
    eventually(lambda: _synced_healthy(argocd, team, revision), timeout=120,
               what=lambda_what(argocd, team))
    print(f"commit -> Redis record enforced in {enforced:.1f}s, "
          f"Synced+Healthy at {time.monotonic() - committed:.1f}s")

    # A profile naming a Secret that does not exist: Degraded at once (retrying cannot create
    # it), with the operator's message naming the Secret, and the profile's own Ready says the
    # same. A profile whose server is down, meanwhile, is a transient failure: Progressing.
    files = _team_files(stack, namespace, pg_database, redis_prefix, requests=300,
                        pg_secret="pg-missing")
    files["team/unreachable.yaml"] = yaml.safe_dump(_unreachable_profile(namespace))
    repo.commit("wrong secret, and a profile whose Redis is down", files)
    argocd.refresh(team)
    missing = eventually(
        lambda: (h := _resource_health(argocd, team, "PerformanceProfile", "platform"))
        .get("status") == "Degraded" and h, timeout=120, what=lambda_what(argocd, team))
    assert missing["message"] == (f"SecretNotFound: DatabaseReady: Secret {namespace}/pg-missing "
                                  "not found"), missing
    ready = condition(kubectl.get("pp", "platform", namespace), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound"), ready
    down = eventually(
        lambda: (h := _resource_health(argocd, team, "PerformanceProfile", "unreachable"))
        .get("status") == "Progressing" and "RedisUnavailable" in h.get("message", "") and h,
        timeout=120, what=lambda_what(argocd, team))
    assert down["message"].endswith("(retrying)"), down
    # A tenant naming a profile that does not exist: Degraded at once, with our message.
    files = _team_files(stack, namespace, pg_database, redis_prefix, requests=300)
    files["team/stray-tenant.yaml"] = yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
        "metadata": {"name": "stray", "namespace": namespace},
        "spec": {"tenantId": "stray", "profileRef": {"name": "no-such-profile"}}})
    repo.commit("tenant of a missing profile", files)
    argocd.refresh(team)
    degraded = eventually(
        lambda: (h := _resource_health(argocd, team, "TenantQuota", "stray"))
        .get("status") == "Degraded" and h, timeout=120, what=lambda_what(argocd, team))
    assert degraded["message"].startswith("ProfileNotFound") \
        and "no-such-profile" in degraded["message"], degraded
    eventually(lambda: _status(argocd, team)[1] == "Degraded", timeout=60,
               what=lambda_what(argocd, team))
    revision = repo.commit("fix", _team_files(stack, namespace, pg_database, redis_prefix,
                                              requests=300),
                           remove=("team/stray-tenant.yaml", "team/unreachable.yaml"))
    argocd.refresh(team)
    eventually(lambda: _synced_healthy(argocd, team, revision), timeout=120,
               what=lambda_what(argocd, team))

    # Prune: the files go, the profile and tenants go, the operator drops their records.
    repo.commit("remove the team's performance config", remove=("team/performance.yaml",))
    argocd.refresh(team)
    eventually(lambda: kubectl.get("pp", "platform", namespace) is None, timeout=120,
               what="Argo CD to prune the profile")

    async def records_gone():
        return await _record(redis, redis_prefix, "hobby-labs") is None

    await async_eventually(records_gone, timeout=60, what="the tenant's record to be deleted")
    eventually(lambda: _synced_healthy(argocd, team), timeout=120, what=lambda_what(argocd, team))


@pytest.fixture(scope="module")
def prometheus_rules(stack, crds):
    """The Prometheus Operator's CRDs for the prune test, so the profile's rules go into a
    PrometheusRule (the ConfigMap fallback otherwise); removed after the module: the session's
    other tests expect the fallback."""
    po = stack.add_prometheus_operator()
    yield po
    po.uninstall()
    stack.prometheus_operator = None


#: A table of the application's, an index and a per-database setting a person made on it: none
#: is the operator's, so pruning the profile must leave them exactly as they are.
ORDERS = """
CREATE TABLE orders (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, status text NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO orders (tenant_id, status)
SELECT g % 40, CASE WHEN g % 3 = 0 THEN 'open' ELSE 'closed' END FROM generate_series(1, 5000) g;
CREATE INDEX orders_by_hand_idx ON orders (created_at);
"""
OPERATOR_INDEXES = ("orders_tenant_idx", "orders_open_idx")


def _shop_profile(namespace: str, pg_database: dict) -> dict:
    """Indexes (pruned with the profile: indexPrunePolicy Delete), a per-database parameter,
    an HPA and alert rules: everything the operator creates for a profile but Redis."""
    return {
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "database": database_section(
                pg_database, parameters={"work_mem": "8MB"}, indexPrunePolicy="Delete",
                indexes=[{"name": "orders_tenant_idx", "table": "orders",
                          "columns": [{"column": "tenant_id"}, {"column": "created_at"}]},
                         {"name": "orders_open_idx", "table": "orders",
                          "columns": [{"column": "tenant_id"}], "where": "status = 'open'"}]),
            "scaling": {"rules": [{"name": "api", "target": {
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-api"},
                "minReplicas": 2, "maxReplicas": 6, "cpuUtilization": 70}]},
            "alerts": {"labels": {"team": "shop"}}}}


def _foreign_rule(name: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": name},
        "spec": {"groups": [{"name": "by-hand", "rules": [
            {"alert": "ShopDown", "expr": "up{job=\"shop\"} == 0", "for": "5m"}]}]}})


def _index_definitions(psql, db: str) -> dict[str, str]:
    rows = psql(db, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orders'")
    return dict(line.split("|", 1) for line in rows.splitlines() if line)


def _database_settings(psql, db: str) -> list[str]:
    return sorted(psql(db, "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database "
                           "d ON d.oid = s.setdatabase WHERE d.datname = current_database() "
                           "AND s.setrole = 0").split())


def _owned_by(obj: dict | None, profile: dict) -> bool:
    return bool(obj) and any(ref["uid"] == profile["metadata"]["uid"]
                             for ref in obj["metadata"].get("ownerReferences") or [])


async def test_prune_removes_what_the_profile_owned_and_nothing_else(
        operator, stack, kubectl, namespace, pg_database, psql, argocd, prometheus_rules,
        tmp_path):
    """Removing a profile's file with prune on: its indexes are dropped (indexPrunePolicy
    Delete), its HPA and PrometheusRule go with it; the application's table, an index, a
    database setting, an HPA and a PrometheusRule made by hand stay as they were, and the
    profile's own parameter keeps its value (documented: the operator cannot know what it was
    before)."""
    db = pg_database["database"]
    psql(db, ORDERS)
    psql("postgres", f"ALTER DATABASE {db} SET random_page_cost = '1.5'")
    kubectl.apply(FOREIGN_HPA.format(name="shop-worker", target="shop-worker"), namespace)
    kubectl.apply(_foreign_rule("shop-by-hand"), namespace)

    repo = GitRepository(tmp_path / "git").create()
    secrets = _team_files(stack, namespace, pg_database, "unused:")["team/secrets.yaml"]
    repo.commit("shop", {"shop/secrets.yaml": secrets,
                         "shop/profile.yaml": yaml.safe_dump(_shop_profile(namespace,
                                                                           pg_database))})
    app = f"shop-{namespace}"
    argocd.apply_application(application(app, repo.url, "shop", namespace))
    eventually(lambda: _synced_healthy(argocd, app), timeout=240, what=lambda_what(argocd, app))

    profile = kubectl.get("pp", "shop", namespace)
    indexes = _index_definitions(psql, db)
    assert set(OPERATOR_INDEXES) <= set(indexes), indexes
    hpa = kubectl.get("hpa", "shop-api", namespace)
    rule = kubectl.get("prometheusrule", "shop-alerts", namespace)
    assert _owned_by(hpa, profile) and _owned_by(rule, profile), (hpa, rule)
    settings = _database_settings(psql, db)
    assert "random_page_cost=1.5" in settings and any(
        s.startswith("work_mem=") for s in settings), settings
    foreign = {kind: kubectl.get(kind, name, namespace) for kind, name in (
        ("hpa", "shop-worker"), ("prometheusrule", "shop-by-hand"))}
    rows = psql(db, "SELECT count(*) FROM orders").strip()

    repo.commit("prune the profile", remove=("shop/profile.yaml",))
    argocd.refresh(app)
    eventually(lambda: kubectl.get("pp", "shop", namespace) is None, timeout=120,
               what="Argo CD to prune the profile and the operator's finalizer to finish")
    remaining = _index_definitions(psql, db)
    assert not set(OPERATOR_INDEXES) & set(remaining), remaining
    assert remaining == {k: v for k, v in indexes.items() if k not in OPERATOR_INDEXES}
    eventually(lambda: kubectl.get("hpa", "shop-api", namespace) is None
               and kubectl.get("prometheusrule", "shop-alerts", namespace) is None,
               timeout=60, what="the garbage collector to remove the profile's HPA and rule")

    # Nothing the operator does not own was touched.
    for (kind, name), before in zip((("hpa", "shop-worker"), ("prometheusrule", "shop-by-hand")),
                                    foreign.values()):
        after = kubectl.get(kind, name, namespace)
        assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"][
            "resourceVersion"], (kind, name)
    assert _database_settings(psql, db) == settings
    assert psql(db, "SELECT count(*) FROM orders").strip() == rows
    assert kubectl.get("secret", "pg-credentials", namespace) is not None  # still in git
    eventually(lambda: _synced_healthy(argocd, app), timeout=120, what=lambda_what(argocd, app))


#: Two indexes on random text values, one build at a time.
BIG_TABLE = """
CREATE TABLE events (id bigint, payload text, digest text);
INSERT INTO events SELECT g, md5(g::text), md5((-g)::text) FROM generate_series(1, 200000) g;
ANALYZE events;
"""

#: How long the test's open write may hold the first build (its lockTimeoutSeconds is longer).
HOLD_SECONDS = 120


async def test_a_long_index_build_is_progressing_then_healthy(
        operator, stack, kubectl, namespace, pg_database, psql, argocd, tmp_path):
    """Argo CD shows the profile Progressing (IndexBuilding / IndexPending, never Degraded)
    for as long as its builds run, and Healthy once they are done. A write left open on the
    table holds the first build (CREATE INDEX CONCURRENTLY waits for the table's writers)
    until Argo CD has shown it: a build that outran Argo CD's refresh on a loaded machine
    showed nothing to judge (seen in CI)."""
    import psycopg

    db = pg_database["database"]
    psql(db, BIG_TABLE)
    repo = GitRepository(tmp_path / "git").create()
    secrets = _team_files(stack, namespace, pg_database, "unused:")["team/secrets.yaml"]
    profile = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
               "metadata": {"name": "big", "namespace": namespace},
               "spec": {"database": database_section(
                   pg_database, maxConcurrentBuilds=1, lockTimeoutSeconds=HOLD_SECONDS + 60,
                   indexes=[{"name": f"events_{column}_idx", "table": "events",
                             "columns": [{"column": column}]}
                            for column in ("payload", "digest")])}}
    repo.commit("big", {"big/secrets.yaml": secrets, "big/profile.yaml": yaml.safe_dump(profile)})
    app = f"big-{namespace}"
    seen: list[tuple[str, str]] = []
    with psycopg.connect(stack.postgres.dsn(db)) as writer:
        writer.execute("INSERT INTO events VALUES (0, 'held', 'held')")  # open until commit
        started = time.monotonic()
        argocd.apply_application(application(app, repo.url, "big", namespace))
        held = True
        while time.monotonic() < started + HOLD_SECONDS + 180:
            health = _resource_health(argocd, app, "PerformanceProfile", "big")
            if health and (not seen or seen[-1] != (health["status"], health.get("message", ""))):
                seen.append((health["status"], health.get("message", "")))
            if held and (_building(seen) or time.monotonic() > started + HOLD_SECONDS):
                writer.commit()  # the build goes on
                held = False
            if health.get("status") == "Healthy":
                break
            time.sleep(0.25)
    print(f"\nprofile health as Argo CD showed it, in order ({time.monotonic() - started:.1f}s): "
          f"{seen}")
    assert seen and seen[-1][0] == "Healthy", seen
    assert not [s for s in seen if s[0] == "Degraded"], seen
    assert _building(seen), f"never Progressing with a build under way: {seen}"
    assert psql(db, "SELECT indexname FROM pg_indexes WHERE tablename = 'events' "
                    "ORDER BY 1").split() == ["events_digest_idx", "events_payload_idx"]
    eventually(lambda: _synced_healthy(argocd, app), timeout=60, what=lambda_what(argocd, app))


def _building(seen: list[tuple[str, str]]) -> bool:
    return any(status == "Progressing" and message.startswith(("IndexBuilding", "IndexPending"))
               for status, message in seen)


async def test_a_pruned_profile_is_progressing_while_its_cleanup_runs(
        operator, stack, kubectl, namespace, pg_database, psql, argocd, tmp_path):
    """Removing a profile from git with prune on while its index drop waits for a lock a
    session of the application holds on the table: Argo CD shows the profile Progressing
    (blocked by the operator's finalizer) while it runs, not Healthy or missing; once the lock is
    released the index is dropped, the profile goes and the Application is Synced+Healthy."""
    import psycopg

    db = pg_database["database"]
    psql(db, ORDERS)
    repo = GitRepository(tmp_path / "git").create()
    secrets = _team_files(stack, namespace, pg_database, "unused:")["team/secrets.yaml"]
    profile = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
               "metadata": {"name": "held", "namespace": namespace},
               "spec": {"database": database_section(
                   pg_database, indexPrunePolicy="Delete", lockTimeoutSeconds=60,
                   indexes=[{"name": "orders_tenant_idx", "table": "orders",
                             "columns": [{"column": "tenant_id"}]}])}}
    repo.commit("held", {"held/secrets.yaml": secrets,
                         "held/profile.yaml": yaml.safe_dump(profile)})
    app = f"held-{namespace}"
    argocd.apply_application(application(app, repo.url, "held", namespace))
    eventually(lambda: _synced_healthy(argocd, app), timeout=240, what=lambda_what(argocd, app))
    assert "orders_tenant_idx" in _index_definitions(psql, db)

    with psycopg.connect(stack.postgres.dsn(db)) as holder:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")  # until the commit
        repo.commit("prune the profile", remove=("held/profile.yaml",))
        argocd.refresh(app)
        deleting = eventually(
            lambda: (h := _resource_health(argocd, app, "PerformanceProfile", "held"))
            .get("status") == "Progressing" and h, timeout=120, what=lambda_what(argocd, app))
        # Argo CD (gitops-engine) judges an object being deleted itself, before any health
        # check: "Pending deletion; blocked by finalizers: perf.idp.io/finalizer". health.lua's
        # own branch for it says the same (Progressing) where the Lua does run.
        assert "perf.idp.io/finalizer" in deleting["message"], deleting
        live = kubectl.get("pp", "held", namespace)
        assert live is not None and live["metadata"].get("deletionTimestamp"), live
        time.sleep(3)  # held up: still there, still Progressing
        assert kubectl.get("pp", "held", namespace) is not None
        assert _resource_health(argocd, app, "PerformanceProfile", "held")["status"] \
            == "Progressing"
    # The lock is released (commit): the drop finishes, then the finalizer goes.
    eventually(lambda: kubectl.get("pp", "held", namespace) is None, timeout=60,
               what="the profile gone once its cleanup could finish")
    assert "orders_tenant_idx" not in _index_definitions(psql, db)
    eventually(lambda: _synced_healthy(argocd, app) and not _resource_health(
        argocd, app, "PerformanceProfile", "held"), timeout=120, what=lambda_what(argocd, app))


def lambda_what(argocd, name: str):
    """A description that is computed when the wait fails: the Application's status and the
    Argo CD logs."""
    class _What:
        def __str__(self) -> str:
            return (f"Application {name} Synced+Healthy; status: "
                    f"{json.dumps(argocd.application_status(name))[:3000]}\n"
                    f"{argocd.log_tail()[-3000:]}")
    return _What()


async def async_eventually(check, *, timeout: float, what: str, interval: float = 0.25):
    import asyncio

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
