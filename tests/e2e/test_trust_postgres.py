"""The PostgreSQL trust boundary on the real stack: a team that may edit a profile gets
performance parameters and nothing more, and the operator's login (never a superuser) runs
nobody's code with its own rights.

* every forbidden parameter is refused at ``kubectl apply`` by a team's ServiceAccount bound to
  ``perf-operator-edit``, naming the parameter; an allowed one is applied; the reconciler
  refuses them again when they get past the API server;
* a list-valued parameter is written as a list;
* an IMMUTABLE function planted by the application's role and made hot in pg_stat_statements
  is never run by the index advisor, which still advises on the safe queries;
* a ``perf_operator`` schema someone else created first is refused, with a reason in status;
* two profiles on one server: one owns a parameter, the other reports Conflict, no flip;
* a parameter the server's command line overrides keeps one state across reloads.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import psycopg
import pytest
import yaml

from perf_operator.postgres.settings import PostgresPeer
from perf_operator.tenants.tables import reconcile_tenant
from tests.e2e.optimizer_support import (  # noqa: F401 - fixtures
    MISSING, Profile, exporter, operator_test_mode, optimized_profile, reference_plugins, until)
from tests.e2e.postgres_support import database_section, profile_context, reconcile
from tests.e2e.test_tenants_tables import profile_spec
from tests.support.contexts import tenant_context
from tests.support.kube import Kubectl, condition, eventually

REPO = pathlib.Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "archive_command": "cp %p /tmp/%f", "restore_command": "cp /tmp/%f %p",
    "ssl_passphrase_command": "echo x", "shared_preload_libraries": "pg_stat_statements,auto_explain",
    "session_preload_libraries": "auto_explain", "local_preload_libraries": "x",
    "dynamic_library_path": "/tmp", "log_directory": "/tmp", "log_filename": "x.log",
    "ssl": "on", "ssl_cert_file": "/tmp/cert.pem", "primary_conninfo": "host=10.0.0.1",
    "primary_slot_name": "x", "search_path": "evil, public",
    "standard_conforming_strings": "off", "password_encryption": "md5",
    "session_replication_role": "replica",
}


def test_the_operators_login_is_not_a_superuser(stack, psql, credentials, kubectl, namespace):
    """What every e2e test touching PostgreSQL runs the operator with (the ``credentials``
    fixture): the role sql/operator-role.sql creates, not a superuser."""
    secret = json.loads(kubectl.run("get", "secret", credentials["postgres"], "-o", "json",
                                    namespace=namespace).stdout)
    import base64
    login = base64.b64decode(secret["data"]["username"]).decode()
    assert login == stack.postgres.operator_user != stack.postgres.superuser
    assert psql("postgres", f"SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                            f"WHERE rolname = '{login}'").strip() == "f|f|f"


# ----------------------------------------------------------------------- parameters at apply

@pytest.fixture
def as_team(stack, crds, kubectl, namespace, tmp_path) -> Kubectl:
    """kubectl as a team's ServiceAccount, bound in its namespace to perf-operator-edit (and
    -view, which kubectl apply needs to read what it changes)."""
    kubectl.run("apply", "--server-side", "--field-manager=perf-operator-tests", "-f",
                str(REPO / "manifests" / "base" / "rbac" / "user-roles.yaml"))
    kubectl.run("create", "serviceaccount", "team", namespace=namespace)
    for role in ("perf-operator-edit", "perf-operator-view"):
        kubectl.run("create", "rolebinding", f"team-{role}", f"--clusterrole={role}",
                    f"--serviceaccount={namespace}:team", namespace=namespace)
    token = kubectl.run("create", "token", "team", namespace=namespace).stdout.strip()
    path = tmp_path / "team.kubeconfig"
    stack.control_plane.token_kubeconfig(path, token, namespace=namespace)
    return Kubectl(kubectl.binary, str(path))


def profile_with(name: str, parameters: dict[str, str]) -> str:
    return yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": name},
        "spec": {"paused": True, "database": {
            "connection": {"host": "127.0.0.1", "database": "app",
                           "secretRef": {"name": "pg-credentials"}},
            "settings": {"scope": "System", "parameters": parameters}}}})


def test_every_forbidden_parameter_is_refused_at_apply_naming_it(as_team, namespace):
    for name, value in FORBIDDEN.items():
        result = as_team.run("apply", "-f", "-", input=profile_with("p", {name: value}),
                             check=False)
        assert result.returncode != 0, f"{name} was accepted"
        assert f"not a performance parameter the operator may set: {name}" in result.stderr, \
            result.stderr
    # among allowed ones
    result = as_team.run("apply", "-f", "-", check=False, input=profile_with(
        "p", {"work_mem": "8MB", "archive_command": "x", "random_page_cost": "1.1"}))
    assert result.returncode != 0 and "may set: archive_command" in result.stderr
    # an allowed one is applied
    as_team.run("apply", "-f", "-", input=profile_with(
        "allowed", {"work_mem": "8MB", "temp_tablespaces": "pg_default, fast",
                    "pg_stat_statements.track": "all"}))
    assert as_team.get("performanceprofile", "allowed", namespace) is not None


async def test_the_reconciler_refuses_them_too_and_writes_lists_as_lists(
        pg_database, namespace, credentials, psql):
    """Past the API server (a CRD without the rule, an old object), the reconciler refuses the
    same parameters: Rejected, never sent. A list value is one literal per element."""
    wanted = {"archive_command": "cp %p /tmp/%f", "shared_preload_libraries": "auto_explain",
              "search_path": "evil", "temp_tablespaces": "pg_default, fast"}
    ctx = profile_context(namespace, database_section(pg_database, parameters=wanted,
                                                      scope="System"))
    try:
        outcome = await reconcile(ctx)
        states = {s["name"]: (s["state"], s.get("message", ""))
                  for s in outcome.status["database"]["settings"]}
        for name in ("archive_command", "shared_preload_libraries", "search_path"):
            assert states[name] == ("Rejected", f"{name} is not a performance parameter the "
                                                f"operator may set; it was not sent")
        assert states["temp_tablespaces"][0] == "Applied"
        assert not outcome.ready and outcome.reason == "SettingRejected"
        recorded = psql("postgres", "SELECT name, setting FROM pg_file_settings "
                                    "WHERE sourcefile LIKE '%postgresql.auto.conf'")
        assert "temp_tablespaces|pg_default, fast" in recorded.splitlines()
        assert not any(name in recorded for name in ("archive_command",
                                                     "shared_preload_libraries", "search_path"))
    finally:
        psql("postgres", "ALTER SYSTEM RESET temp_tablespaces")
        psql("postgres", "SELECT pg_reload_conf()")


# ------------------------------------------------------------------------------------ advisor

HOSTILE = "SELECT id, name FROM plugins WHERE tenant_id = planted() AND category = %s"


@pytest.fixture
def planted(stack, psql, pg_database):
    """The reference schema with data, and a function the application's role planted: an
    IMMUTABLE ``planted()`` (folded by the planner when a query calling it is planned) calling
    a VOLATILE one that leaves a trace in the server's log, tries to become its caller's login (SET ROLE NONE), make that login a
    superuser, and writes who ran it into a marker table. The application runs a query
    calling it more than any other, so it tops pg_stat_statements."""
    db = pg_database["database"]
    tenants = reference_plugins(psql, db)
    psql(db, """
        CREATE TABLE marker (current_login text, session_login text, superuser_attempt text);
        CREATE FUNCTION act() RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
        DECLARE attempt text := 'not tried';
        BEGIN
            -- a trace no rollback takes back: the server's log
            RAISE WARNING 'planted function ran: current_user=% session_user=%',
                current_user, session_user;
            BEGIN
                SET ROLE NONE;
                EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
                attempt := 'succeeded';
            EXCEPTION WHEN OTHERS THEN attempt := SQLERRM;
            END;
            INSERT INTO marker VALUES (current_user, session_user, attempt);
            RETURN (SELECT id FROM tenants ORDER BY slug LIMIT 1);
        END $$;
        CREATE FUNCTION planted() RETURNS uuid LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN RETURN act(); END $$;
        SELECT pg_stat_statements_reset();
    """)
    # the application, logged in as its role
    with psycopg.connect(stack.postgres.dsn(db, user=stack.postgres.app_user)) as conn:
        for i in range(300):
            conn.execute(HOSTILE, (f"category-{i % 20}",))
        for i in range(200):
            conn.execute(MISSING, (tenants[i % len(tenants)], f"category-{i % 20}"))
    psql(db, "TRUNCATE marker")  # the application's own calls ran it as the application
    return pg_database


async def test_the_advisor_never_runs_a_planted_function(stack, namespace, credentials, psql,
                                                         planted, exporter):
    db = planted["database"]
    top = psql(db, "SET ROLE NONE; SELECT query FROM pg_stat_statements "
                   "ORDER BY total_exec_time DESC LIMIT 3")
    assert "planted()" in top  # the hostile query is hot
    database = {"connection": {"host": planted["host"], "port": planted["port"],
                               "database": db, "secretRef": {"name": "pg-credentials"},
                               "sslMode": "disable"},
                "settings": {"scope": "Database", "parameters": {}},
                "applicationRole": stack.postgres.app_user}
    web = Profile(namespace, "web", optimized_profile(stack, mode="Recommend",
                                                      database=database))
    exporter.memory(namespace, "web", 0.5)
    exporter.traffic(namespace, "web", (20_000, 2.0, "200"))
    await until([web], lambda: web.state.recommendations, what="an index recommendation")
    # the advice on the safe query is there
    (rec,) = web.state.recommendations
    assert (rec.table, rec.columns) == ("plugins", ["tenant_id", "category", "downloads"])
    # the planted function never ran in the operator's sessions, with any rights: not even
    # in a read-only transaction that was rolled back (its trace in the server's log)
    assert psql(db, "SELECT count(*) FROM marker").strip() == "0"
    log = stack.postgres.process.log_path.read_text(errors="replace")
    assert "planted function ran" in log  # the application's own calls
    assert f"session_user={stack.postgres.operator_user}" not in log
    assert psql("postgres", f"SELECT rolsuper FROM pg_roles "
                            f"WHERE rolname = '{stack.postgres.operator_user}'").strip() == "f"


# -------------------------------------------------------------------------- the mirror schema

async def test_a_mirror_schema_someone_else_created_is_refused(
        stack, credentials, namespace, pg_database, psql, redis_prefix):
    """A role that is not the operator's login creates perf_operator first, with a trigger
    on a tenant_limits table of its own: the operator writes nothing there and says why."""
    db = pg_database["database"]
    psql(db, """
        SET ROLE NONE;
        CREATE ROLE squatter_%(db)s NOLOGIN;
        CREATE SCHEMA perf_operator AUTHORIZATION squatter_%(db)s;
        CREATE TABLE public.caught (who text);
        GRANT SELECT, INSERT ON public.caught TO PUBLIC;
        SET ROLE squatter_%(db)s;
        CREATE TABLE perf_operator.tenant_limits (profile_namespace text, profile_name text,
            tenant_id text, owner text, version bigint, digest text, limits jsonb,
            written_at timestamptz, PRIMARY KEY (profile_namespace, profile_name, tenant_id));
        CREATE FUNCTION perf_operator.catch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO public.caught VALUES (session_user); RETURN NEW; END $$;
        CREATE TRIGGER catch BEFORE INSERT OR UPDATE ON perf_operator.tenant_limits
            FOR EACH ROW EXECUTE FUNCTION perf_operator.catch();
        GRANT USAGE ON SCHEMA perf_operator TO PUBLIC;
        GRANT ALL ON perf_operator.tenant_limits TO PUBLIC;
    """ % {"db": db})
    try:
        profile = profile_spec(stack, credentials, redis_prefix, pg_database)
        ctx = tenant_context(namespace, profile, {"tenantId": "acme"}, name="acme")
        outcome = await reconcile_tenant(ctx)
        assert not outcome.ready and outcome.reason == "MirrorSchemaNotOwned", outcome.message
        assert f"schema perf_operator belongs to role squatter_{db}" in outcome.message
        assert stack.postgres.operator_user in outcome.message
        assert psql(db, "SELECT count(*) FROM perf_operator.tenant_limits").strip() == "0"
        assert psql(db, "SELECT count(*) FROM public.caught").strip() == "0"
    finally:
        psql(db, f"SET ROLE NONE; DROP SCHEMA perf_operator CASCADE; "
                 f"DROP ROLE squatter_{db}")


# ------------------------------------------------------------------ the settings owner rule

def pg_profile(stack, pg_database, name: str, **parameters: str) -> str:
    return json.dumps({"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                       "metadata": {"name": name}, "spec": {"database": {
                           "connection": {"host": "127.0.0.1", "port": stack.postgres.port,
                                          "database": pg_database["database"],
                                          "secretRef": {"name": "pg-credentials"},
                                          "sslMode": "disable"},
                           "settings": {"scope": "System", "parameters": parameters}}}})


def database_condition(kubectl, namespace: str, name: str) -> dict | None:
    return condition(kubectl.get("performanceprofile", name, namespace), "DatabaseReady")


ALTERS = r"""SET ROLE NONE; SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
             WHERE query ~* '^\s*ALTER SYSTEM'"""


def alter_count(psql, db: str) -> int:
    return int(psql(db, ALTERS).split()[-1])


def test_two_profiles_on_one_server_one_owns_the_parameter(
        operator, stack, kubectl, namespace, credentials, pg_database, psql, tmp_path):
    db = pg_database["database"]
    try:
        kubectl.apply(pg_profile(stack, pg_database, "first", autovacuum_naptime="30s"),
                      namespace)
        eventually(lambda: (c := database_condition(kubectl, namespace, "first"))
                   and c["status"] == "True", timeout=60, what="first DatabaseReady")
        time.sleep(1.1)  # a younger creationTimestamp
        kubectl.apply(pg_profile(stack, pg_database, "second", autovacuum_naptime="45s"),
                      namespace)
        cond = eventually(lambda: (c := database_condition(kubectl, namespace, "second"))
                          and c["status"] == "False" and c, timeout=60,
                          what="second DatabaseReady=False")
        assert cond["reason"] == "SettingConflict", cond
        assert f"by PerformanceProfile {namespace}/first" in cond["message"]
        second = kubectl.get("performanceprofile", "second", namespace)
        (entry,) = second["status"]["database"]["settings"]
        assert entry["state"] == "Conflict" and entry["desired"] == "45s"
        alters = alter_count(psql, db)
        time.sleep(6)  # three resyncs of each
        assert alter_count(psql, db) == alters  # nobody wrote it again
        assert psql("postgres", "SHOW autovacuum_naptime").strip() == "30s"
        assert database_condition(kubectl, namespace, "first")["status"] == "True"
        assert database_condition(kubectl, namespace, "second")["reason"] == "SettingConflict"
        events = json.loads(kubectl.run("get", "events", "-o", "json",
                                        namespace=namespace).stdout)["items"]
        reasons = [(e["involvedObject"]["name"], e["reason"]) for e in events]
        assert ("second", "SettingConflict") in reasons
        assert not [r for r in reasons if r[1] == "SettingDrifted"]

        # kubectl perf plan of a new value for the younger profile: not sent, and why
        changed = tmp_path / "second.json"
        changed.write_text(pg_profile(stack, pg_database, "second", autovacuum_naptime="50s"))
        planned = subprocess.run(
            [sys.executable, "-m", "perf_operator.insight", "plan", str(changed), "-n",
             namespace, "-o", "json"], env={**os.environ, "KUBECONFIG": kubectl.kubeconfig},
            capture_output=True, text=True, timeout=120)
        assert planned.returncode == 0, planned.stderr
        (plan,) = json.loads(planned.stdout)
        (step,) = [s for s in plan["steps"] if s["system"] == "postgres"]
        assert (step["subject"], step["action"]) == ("autovacuum_naptime", "not sent")
        assert f"by PerformanceProfile {namespace}/first" in step["note"]
    finally:
        kubectl.run("delete", "performanceprofile", "first", "second", "--wait=true",
                    namespace=namespace, check=False)
        psql("postgres", "ALTER SYSTEM RESET autovacuum_naptime")
        psql("postgres", "SELECT pg_reload_conf()")


async def test_profiles_that_cannot_log_in_or_use_another_server_own_nothing(
        pg_database, namespace, credentials, psql):
    """Reconciled directly: an older profile whose status names no server (it could not log
    in) or another server does not take the parameter from this one."""
    ghosts = [PostgresPeer(namespace, "no-login", "2000-01-01T00:00:00Z", None,
                           {"autovacuum_naptime": "99s"}),
              PostgresPeer(namespace, "elsewhere", "2000-01-01T00:00:00Z", "1",
                           {"autovacuum_naptime": "99s"})]
    ctx = profile_context(namespace, database_section(
        pg_database, parameters={"autovacuum_naptime": "40s"}, scope="System"), name="young")
    ctx.created, ctx.postgres_peers = "2026-01-01T00:00:00Z", ghosts
    try:
        outcome = await reconcile(ctx)
        assert outcome.ready, outcome.message
        assert outcome.status["database"]["settings"][0]["state"] == "Applied"
        assert outcome.status["database"]["serverId"] == psql(
            "postgres", "SELECT system_identifier FROM pg_control_system()").strip()
    finally:
        psql("postgres", "ALTER SYSTEM RESET autovacuum_naptime")
        psql("postgres", "SELECT pg_reload_conf()")


async def test_a_command_line_override_has_one_stable_state(pg_database, namespace,
                                                            credentials, psql):
    """max_locks_per_transaction is on the stack's command line (128): set in auto.conf it is
    pending a restart after every reload, and overridden after a restart. The report is the
    same whatever happens, and no Event speaks of a value changed to None."""
    ctx = profile_context(namespace, database_section(
        pg_database, parameters={"max_locks_per_transaction": "256"}, scope="System"))
    try:
        seen = set()
        for _ in range(4):
            outcome = await reconcile(ctx)
            (entry,) = outcome.status["database"]["settings"]
            seen.add((entry["state"], outcome.ready, outcome.reason))
            psql("postgres", "SELECT pg_reload_conf()")  # what any ALTER SYSTEM is followed by
            time.sleep(0.3)
        assert seen == {("Drifted", False, "SettingOverridden")}, seen
        assert "the server's command line" in entry["message"]
        # the auto.conf entry disappears behind the operator's back: re-written, and the
        # Event says what happened rather than "changed to None"
        psql("postgres", "ALTER SYSTEM RESET max_locks_per_transaction")
        await reconcile(ctx)
        messages = [e[2] for e in ctx.events.events]
        assert not [m for m in messages if "None" in m], messages
    finally:
        psql("postgres", "ALTER SYSTEM RESET max_locks_per_transaction")
        psql("postgres", "SELECT pg_reload_conf()")
