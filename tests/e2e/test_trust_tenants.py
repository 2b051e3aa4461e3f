"""The tenant side of the trust boundary, on the real stack: a password never shows in any
encoding in the operator's debug log, its Events or its statuses, while user names stay
readable."""
from __future__ import annotations

import base64
import json
import secrets
import urllib.parse

import pytest
import yaml

from tests.support.kube import condition, eventually
from tests.support.rbac import lease_election_in, operator_kubeconfig, start_operator_as_deployed

#: These tests run operators of their own (at debug level), alone in their namespace.
pytestmark = pytest.mark.isolated


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
    psql(pg_database["database"], f"CREATE TABLE orders (id bigserial PRIMARY KEY, "
                                  f"tenant_id bigint NOT NULL, total numeric); "
                                  f"ALTER TABLE orders OWNER TO {pg_user}")
    await redis.acl_setuser(redis_user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                            commands=["+@all"])
    yield {"password": password, "pg_user": pg_user, "redis_user": redis_user}
    await redis.acl_deluser(redis_user)
    psql(pg_database["database"], f"REASSIGN OWNED BY {pg_user} TO CURRENT_USER; "
                                  f"DROP OWNED BY {pg_user}")
    psql("postgres", f"DROP ROLE IF EXISTS {pg_user}")


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
                         "websocket": {"maxConnections": 1000}}}

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
