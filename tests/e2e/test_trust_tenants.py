"""The tenant side of the trust boundary, on the real stack: a password never shows in any
encoding in the operator's debug log, its Events or its statuses, while user names stay
readable; of two TenantQuotas (in two namespaces) claiming one tenant ID, the older owns the
record, also after Redis lost its data."""
from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import urllib.parse

import pytest
import yaml

from tests.support.kube import condition, eventually
from tests.support.rbac import lease_election_in, operator_kubeconfig, start_operator_as_deployed

@pytest.fixture
def own_operator(stack, kubectl, crds, namespace, tmp_path):
    """One operator, as deployed but with ``--verbose``, watching only the test's namespace."""
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    proc = start_operator_as_deployed(kubeconfig, tmp_path, name="operator", namespace=namespace)
    yield proc
    proc.stop()


def password_forms(password: str) -> dict[str, str]:
    """Every way the password could be written down by a careless log line or status."""
    raw = password.encode()
    return {"plain": password,
            "JSON-escaped": json.dumps(password)[1:-1],
            "repr-escaped": repr(password)[1:-1],
            "URL-encoded": urllib.parse.quote(password, safe=""),
            "URL-encoded (form)": urllib.parse.quote_plus(password),
            "base64": base64.b64encode(raw).decode(),
            "base64 (URL-safe)": base64.urlsafe_b64encode(raw).decode()}


def tenant(name: str, tenant_id: str, profile: str = "platform", **spec) -> dict:
    return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
            "metadata": {"name": name},
            "spec": {"tenantId": tenant_id, "profileRef": {"name": profile}, **spec}}


@pytest.fixture
async def app_logins(stack, psql, pg_database, redis):
    """A PostgreSQL role owning the test database and a Redis ACL user, both with a password
    full of URL-special and JSON-escape characters, and the user names."""
    suffix = secrets.token_hex(4)
    password = f'p@ss:w/rd?#%&+ "q\\\'é={suffix}'
    pg_user, redis_user = f"perf_app_{suffix}", f"perf-app-{suffix}"
    psql("postgres", f"CREATE ROLE {pg_user} LOGIN PASSWORD '{password.replace(chr(39), chr(39) * 2)}'")
    psql("postgres", f"ALTER DATABASE {pg_database['database']} OWNER TO {pg_user}")
    psql(pg_database["database"], f"RESET ROLE; SET ROLE {pg_user}; "
                                  f"CREATE TABLE orders (id bigserial PRIMARY KEY, "
                                  f"tenant_id bigint NOT NULL, total numeric)")
    await redis.acl_setuser(redis_user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                            commands=["+@all"])
    yield {"password": password, "pg_user": pg_user, "redis_user": redis_user}
    await redis.acl_deluser(redis_user)
    # the role owns the database and its objects: they go first
    psql("postgres", f"DROP DATABASE IF EXISTS {pg_database['database']} WITH (FORCE)")
    psql("postgres", f"DROP ROLE IF EXISTS {pg_user}")


@pytest.mark.isolated  # its own operator (at debug level), alone in its namespace
async def test_no_password_in_any_encoding_in_debug_log_events_or_status(
        own_operator, kubectl, stack, namespace, pg_database, redis_prefix, app_logins):
    password = app_logins["password"]
    kubectl.run("create", "secret", "generic", "pg-app",
                f"--from-literal=username={app_logins['pg_user']}",
                f"--from-literal=password={password}", namespace=namespace)
    kubectl.run("create", "secret", "generic", "redis-app",
                f"--from-literal=username={app_logins['redis_user']}",
                f"--from-literal=password={password}", namespace=namespace)
    # The same user with a wrong password: its error must name the user, not mask it.
    kubectl.run("create", "secret", "generic", "pg-wrong",
                f"--from-literal=username={app_logins['pg_user']}",
                f"--from-literal=password=not-{password}", namespace=namespace)
    database = {"host": "127.0.0.1", "port": stack.postgres.port,
                "database": pg_database["database"], "sslMode": "disable"}

    def profile(name: str, pg_secret: str) -> dict:
        return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                "metadata": {"name": name},
                "spec": {"database": {"connection": {**database,
                                                     "secretRef": {"name": pg_secret}},
                                      "settings": {"scope": "Database",
                                                   "parameters": {"work_mem": "8MB"}},
                                      "indexes": [{"name": "orders_tenant_idx",
                                                   "table": "orders",
                                                   "columns": [{"column": "tenant_id"}]}]},
                         "redis": {"connection": {"host": "127.0.0.1",
                                                  "port": stack.redis.port,
                                                  "secretRef": {"name": "redis-app",
                                                                "usernameKey": "username"}},
                                   "keyPrefix": redis_prefix},
                         "websocket": {"maxConnections": 2000}}}

    kubectl.apply(yaml.safe_dump_all([
        profile("platform", "pg-app"), profile("wrong", "pg-wrong"),
        tenant("acme", "acme", websocket={"maxConnections": 10}),
        tenant("initech", "initech")]), namespace)

    def ready(kind: str, name: str) -> bool:
        return (condition(kubectl.get(kind, name, namespace), "Ready") or {}).get(
            "status") == "True"

    eventually(lambda: ready("pp", "platform"), timeout=90, what="the profile Ready")
    eventually(lambda: ready("tq", "acme") and ready("tq", "initech"), timeout=60,
               what="both tenants Ready")
    wrong = eventually(lambda: condition(kubectl.get("pp", "wrong", namespace),
                                         "DatabaseReady"), timeout=60,
                       what="the wrong login reported")
    assert wrong["status"] == "False"
    # Usernames are not credentials: the failed login names its user.
    assert app_logins["pg_user"] in wrong["message"], wrong["message"]
    # A few more resyncs, then a tenant changed and one deleted, to log every path once more.
    kubectl.run("patch", "tq", "acme", "--type=merge", "-p",
                json.dumps({"spec": {"websocket": {"maxConnections": 20}}}), namespace=namespace)
    kubectl.run("delete", "tq", "initech", namespace=namespace)
    eventually(lambda: (kubectl.get("tq", "acme", namespace) or {}).get("status", {}).get(
        "observedGeneration") == 2 and ready("tq", "acme"), timeout=60, what="acme updated")

    log = own_operator.log_path.read_text(errors="replace")
    assert "DEBUG" in log, "the operator did not log at debug level"
    assert app_logins["pg_user"] in log
    shown = {
        "operator log": log,
        "Events": kubectl.run("get", "events", "-o", "json", namespace=namespace).stdout,
        "statuses": kubectl.run("get", "pp,tq", "-o", "json", namespace=namespace).stdout,
    }
    leaks = [f"{form} password in {where}" for where, text in shown.items()
             for form, encoded in password_forms(password).items() if encoded in text]
    assert not leaks, leaks


@pytest.fixture
def second_namespace(kubectl, stack):
    """Another namespace the session operator watches, with the Redis Secret."""
    name = f"t-{secrets.token_hex(4)}"
    kubectl.run("create", "namespace", name)
    kubectl.run("create", "secret", "generic", "redis-credentials",
                "--from-literal=password=" + stack.redis.password, namespace=name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


async def test_the_older_tenantquota_owns_a_contested_tenant_id_also_after_flushall(
        operator, kubectl, stack, namespace, credentials, second_namespace, redis,
        redis_prefix):
    def profile(paused: bool) -> dict:
        return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                "metadata": {"name": "platform"},
                "spec": {"paused": paused,
                         "redis": {"connection": {"host": "127.0.0.1", "port": stack.redis.port,
                                                  "secretRef": {"name": "redis-credentials"}},
                                   "keyPrefix": redis_prefix}}}

    older, younger = f"{namespace}/acme", f"{second_namespace}/acme"
    key = f"{redis_prefix}{{shared}}:limits"
    # The older TenantQuota's profile starts paused, so the younger writes the record first.
    kubectl.apply(yaml.safe_dump_all([profile(True), tenant(
        "acme", "shared", websocket={"maxConnections": 7})]), namespace)
    time.sleep(1.2)  # creationTimestamp has second precision
    kubectl.apply(yaml.safe_dump_all([profile(False), tenant(
        "acme", "shared", websocket={"maxConnections": 99})]), second_namespace)

    async def owner() -> str | None:
        return await redis.hget(key, "owner")

    async def wait_owner(expected: str, what: str) -> None:
        deadline = time.monotonic() + 30
        while await owner() != expected:
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {await owner()}"
            await asyncio.sleep(0.25)

    await wait_owner(younger, "the younger's record while the older is paused")
    kubectl.apply(yaml.safe_dump(profile(False)), namespace)
    await wait_owner(older, "the older TenantQuota taking its record over")
    assert json.loads(await redis.hget(key, "limits"))["websocket"]["maxConnections"] == 7

    def young_conflict():
        cond = condition(kubectl.get("tq", "acme", second_namespace), "TablesReady")
        return cond if cond and cond["reason"] == "TableConflict" else None

    cond = eventually(young_conflict, timeout=30, what="the younger reporting the conflict")
    assert cond["status"] == "False" and older in cond["message"], cond
    assert (condition(kubectl.get("tq", "acme", namespace), "TablesReady") or {}).get(
        "status") == "True"

    # Redis loses its data: the record comes back as the older's, never the younger's.
    await redis.flushall()
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen.add(await owner())
        await asyncio.sleep(0.05)
    assert younger not in seen, seen
    await wait_owner(older, "the older's record restored")
    assert json.loads(await redis.hget(key, "limits"))["websocket"]["maxConnections"] == 7
    assert young_conflict()
