"""The PostgreSQL trust boundary without a database: the parameter allow-list (and the SQL that
grants exactly it), list values, the settings owner rule, the stable report of an overridden
parameter, and the advisor's refusal of statements that could run someone else's code."""
from __future__ import annotations

import pathlib
import re

import pytest
from psycopg import sql

from perf_operator.api.crdgen import crd
from perf_operator.api.kinds import PERFORMANCE_PROFILE
from perf_operator.api.parameters import (ALLOWED_PARAMETERS, LIST_PARAMETERS, list_elements,
                                          refusal)
from perf_operator.optimizer.advisor import names_used, parse_select, unsafe_names
from perf_operator.postgres.settings import (ParameterInfo, PostgresPeer, SettingsObservation,
                                             State, set_statement, contested_parameters,
                                             setting_report)

REPO = pathlib.Path(__file__).resolve().parents[2]
FORBIDDEN = ("archive_command", "restore_command", "archive_cleanup_command",
             "recovery_end_command", "ssl_passphrase_command", "shared_preload_libraries",
             "session_preload_libraries", "local_preload_libraries", "dynamic_library_path",
             "archive_library", "log_directory", "log_filename", "ssl", "ssl_cert_file",
             "ssl_key_file", "primary_conninfo", "primary_slot_name", "search_path",
             "standard_conforming_strings", "password_encryption", "session_replication_role",
             "fsync", "full_page_writes", "data_directory", "wal_level", "log_statement")


@pytest.mark.parametrize("name", FORBIDDEN)
def test_forbidden_parameters_are_refused_naming_them(name):
    reason = refusal(name)
    assert reason is not None and reason.startswith(f"{name} is not a performance parameter")


def test_performance_parameters_are_allowed():
    for name in ("work_mem", "shared_buffers", "random_page_cost", "autovacuum_naptime",
                 "max_wal_size", "statement_timeout", "pg_stat_statements.max"):
        assert refusal(name) is None
    assert not any(re.search(r"command|librar|^ssl|^primary_|^restore_|^log_(directory|file)",
                             name) for name in ALLOWED_PARAMETERS)


def test_the_crd_refuses_what_is_not_allowed_naming_it():
    schema = crd(PERFORMANCE_PROFILE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    parameters = (schema["properties"]["spec"]["properties"]["database"]["properties"]
                  ["settings"]["properties"]["parameters"])
    (rule,) = [r for r in parameters["x-kubernetes-validations"]
               if "messageExpression" in r]
    assert all(f"'{name}'" in rule["rule"] for name in ALLOWED_PARAMETERS)
    assert "self.filter(k, " in rule["messageExpression"]
    assert rule["messageExpression"].endswith("[0]")  # join() is over the API's cost budget


def test_operator_role_sql_grants_exactly_the_allowed_parameters():
    text = (REPO / "sql" / "operator-role.sql").read_text()
    match = re.search(r"GRANT SET, ALTER SYSTEM ON PARAMETER(.*?)TO :\"operator\";", text, re.S)
    assert match
    granted = [name.strip() for name in match.group(1).split(",")]
    assert granted == list(ALLOWED_PARAMETERS)
    assert "SUPERUSER" not in text.replace("NOSUPERUSER", "")
    deploy = (REPO / "docs" / "deploy.md").read_text()
    for name in ("operator-role.sql", "operator-database.sql"):
        for line in (REPO / "sql" / name).read_text().splitlines():
            if line and not line.startswith("--"):
                assert line in deploy, f"docs/deploy.md does not give {name} exactly: {line}"


def test_list_values_are_written_as_lists():
    assert list_elements('fast, "slow one" ,, cold') == ["fast", "slow one", "cold"]
    assert "temp_tablespaces" in LIST_PARAMETERS
    statement = set_statement("temp_tablespaces", "fast, cold", "System", "db")
    assert isinstance(statement, sql.Composed)
    rendered = repr(statement)
    assert "Literal('fast')" in rendered and "Literal('cold')" in rendered
    assert "Literal('fast, cold')" not in rendered


# ------------------------------------------------------------------------- settings owner rule

def peer(name, created, server="7001", **parameters) -> PostgresPeer:
    return PostgresPeer("team", name, created, server, parameters)


WORK_MEM = ParameterInfo("work_mem", "4096", "kB", "integer", "default", False, "4MB")


def test_the_oldest_profile_on_a_server_owns_a_parameter():
    old = peer("old", "2026-01-01T00:00:00Z", work_mem="8MB")
    young = peer("young", "2026-02-01T00:00:00Z", work_mem="16MB")
    agreeing = peer("agreeing", "2026-03-01T00:00:00Z", work_mem="8192kB")
    elsewhere = peer("elsewhere", "2025-01-01T00:00:00Z", server="9999", work_mem="1MB")
    cannot_login = peer("no-login", "2020-01-01T00:00:00Z", server=None, work_mem="2MB")
    peers = [old, young, agreeing, elsewhere, cannot_login]
    params = {"work_mem": WORK_MEM}
    assert contested_parameters(old, "7001", peers, params) == {}
    assert contested_parameters(young, "7001", peers, params) == {"work_mem": old}
    assert contested_parameters(agreeing, "7001", peers, params) == {}


def test_a_conflict_is_reported_and_not_sent():
    observation = SettingsObservation({"work_mem": WORK_MEM}, recorded={})
    report = setting_report("work_mem", "16MB", "System", observation, error=None,
                            drifted=False, conflict="owned by team/old")
    assert report.state is State.CONFLICT and report.message == "owned by team/old"


@pytest.mark.parametrize("pending", [True, False])
def test_a_command_line_override_has_one_state_whatever_pending_restart_says(pending):
    info = ParameterInfo("max_locks_per_transaction", "128", None, "integer", "command line",
                         pending, "128")
    observation = SettingsObservation({info.name: info}, recorded={info.name: "256"})
    report = setting_report(info.name, "256", "System", observation, error=None, drifted=False)
    assert (report.state, report.overridden) == (State.DRIFTED, True)
    assert "command line" in report.message


# ------------------------------------------------------------------------------------ advisor

def used(query: str):
    statement = parse_select(query)
    assert statement is not None
    return names_used(statement)


def test_names_used_by_a_statement():
    names = used("WITH recent AS (SELECT * FROM plugins WHERE created_at > now()) "
                 "SELECT p.id, lower(p.name)::text FROM recent r JOIN public.tenants p "
                 "ON p.id = r.tenant_id WHERE p.slug = ANY($1) ORDER BY p.x USING <")
    assert {("public", "tenants"), (None, "plugins")} == set(names.relations)
    assert {(None, "now"), (None, "lower")} <= set(names.functions)
    assert {(None, ">"), (None, "="), (None, "<")} <= set(names.operators)
    assert (None, "text") in names.types


def test_statements_naming_code_outside_pg_catalog_are_refused():
    assert unsafe_names(used("SELECT id FROM plugins WHERE tenant_id = $1"), {}) is None
    assert "evil" in unsafe_names(used("SELECT id FROM plugins WHERE id = evil()"),
                                  {"function": frozenset({"evil"})})
    assert "outside pg_catalog" in unsafe_names(
        used("SELECT id FROM plugins WHERE id = public.lower($1)"), {})
    assert "operator" in unsafe_names(used("SELECT id FROM plugins WHERE a === $1"),
                                      {"operator": frozenset({"==="})})
    assert "evil" in unsafe_names(used("SELECT p.evil FROM plugins p"),
                                  {"function": frozenset({"evil"})})
    assert "type" in unsafe_names(used("SELECT $1::mood FROM plugins"),
                                  {"type": frozenset({"mood"})})
    assert "RangeTableSample" in unsafe_names(
        used("SELECT id FROM plugins TABLESAMPLE SYSTEM (1)"), {})
