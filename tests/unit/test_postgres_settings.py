"""Settings without a database: value normalisation, what to write, what to report."""
from __future__ import annotations

import pytest

from perf_operator.postgres.settings import (ParameterInfo, SettingsObservation, State,
                                             normalise, plan_settings, same_value,
                                             setting_report)


def info(name="work_mem", setting="4096", unit="kB", vartype="integer",
         source="configuration file", pending_restart=False, display="4MB") -> ParameterInfo:
    return ParameterInfo(name, setting, unit, vartype, source, pending_restart, display)


SHARED_BUFFERS = info("shared_buffers", "16384", "8kB", display="128MB")
RANDOM_PAGE_COST = info("random_page_cost", "4", None, "real", display="4")
LOG_MIN_DURATION = info("log_min_duration_statement", "-1", "ms", display="-1")
LOG_CHECKPOINTS = info("log_checkpoints", "on", None, "bool", display="on")
WAL_LEVEL = info("wal_level", "replica", None, "enum", display="replica")


@pytest.mark.parametrize("a,b,parameter", [
    ("4MB", "4096", info()),
    ("4MB", "4096kB", info()),
    ("1GB", "1048576", info()),
    ("256MB", "32768", SHARED_BUFFERS),
    ("128MB", "16384", SHARED_BUFFERS),
    ("1.1", "1.10", RANDOM_PAGE_COST),
    ("1s", "1000", LOG_MIN_DURATION),
    ("1min", "60000", LOG_MIN_DURATION),
    ("on", "true", LOG_CHECKPOINTS),
    ("yes", "ON", LOG_CHECKPOINTS),
    ("1", "t", LOG_CHECKPOINTS),
    ("off", "of", LOG_CHECKPOINTS),
    ("Replica", "replica", WAL_LEVEL),
])
def test_equal_spellings_compare_equal(a, b, parameter):
    assert same_value(a, b, parameter)


@pytest.mark.parametrize("a,b,parameter", [
    ("4MB", "8MB", info()),
    ("256MB", "16384", SHARED_BUFFERS),
    ("1.1", "4", RANDOM_PAGE_COST),
    ("1000", "-1", LOG_MIN_DURATION),
    ("on", "off", LOG_CHECKPOINTS),
    ("4MB", None, info()),
])
def test_different_values_differ(a, b, parameter):
    assert not same_value(a, b, parameter)


@pytest.mark.parametrize("value,parameter", [("lots", info()), ("4 parsecs", info()),
                                             ("1s", info()), ("o", LOG_CHECKPOINTS),
                                             ("maybe", LOG_CHECKPOINTS)])
def test_values_postgres_would_refuse_do_not_normalise(value, parameter):
    with pytest.raises(ValueError):
        normalise(value, parameter)


def test_unknown_parameters_compare_as_text():
    assert same_value("x", "x", None) and not same_value("x", "y", None)


def observation(recorded, database_level=None, **parameters) -> SettingsObservation:
    return SettingsObservation(parameters=parameters, recorded=recorded,
                               database_level=database_level or {})


def test_nothing_is_written_when_the_recorded_value_matches_in_another_spelling():
    seen = observation({"work_mem": "4096kB"}, work_mem=info())
    assert plan_settings({"work_mem": "4MB"}, seen, {}) == []


def test_a_differing_value_is_written_first_time_without_drift():
    seen = observation({}, work_mem=info(setting="8192", display="8MB"))
    [change] = plan_settings({"work_mem": "4MB"}, seen, {})
    assert (change.name, change.value, change.drift) == ("work_mem", "4MB", False)


def test_a_value_changed_after_the_operator_applied_it_is_drift():
    seen = observation({"work_mem": "16MB"}, work_mem=info())
    previous = {"work_mem": {"name": "work_mem", "desired": "4MB", "state": "Applied"}}
    [change] = plan_settings({"work_mem": "4MB"}, seen, previous)
    assert change.drift and change.recorded == "16MB"


def test_a_new_desired_value_is_not_drift():
    seen = observation({"work_mem": "4MB"}, work_mem=info())
    previous = {"work_mem": {"name": "work_mem", "desired": "4MB", "state": "Applied"}}
    [change] = plan_settings({"work_mem": "8MB"}, seen, previous)
    assert not change.drift


def test_unreadable_auto_conf_falls_back_to_the_effective_value():
    seen = observation(None, work_mem=info())
    assert plan_settings({"work_mem": "4MB"}, seen, {}) == []
    assert len(plan_settings({"work_mem": "8MB"}, seen, {})) == 1


def test_pending_restart_is_reported_from_pg_settings():
    seen = observation({"shared_buffers": "256MB"},
                       shared_buffers=info("shared_buffers", "16384", "8kB",
                                           pending_restart=True, display="128MB"))
    report = setting_report("shared_buffers", "256MB", "System", seen, error=None,
                            drifted=False)
    assert (report.state, report.actual) == (State.PENDING_RESTART, "128MB")


def test_applied_and_drifted_states():
    seen = observation({"work_mem": "4MB"}, work_mem=info())
    assert setting_report("work_mem", "4MB", "System", seen, error=None,
                          drifted=False).state is State.APPLIED
    drifted = setting_report("work_mem", "4MB", "System", seen, error=None, drifted=True)
    assert drifted.state is State.DRIFTED and "re-applied" in drifted.message


def test_server_error_is_rejected_with_its_message():
    seen = observation({}, work_mem=info())
    report = setting_report("work_mem", "lots", "System", seen,
                            error='invalid value for parameter "work_mem": "lots"',
                            drifted=False)
    assert report.state is State.REJECTED and "invalid value" in report.message


def test_a_database_setting_overriding_a_system_value_is_reported_not_fought():
    """Read from pg_db_role_setting: this pooled session may predate the ALTER DATABASE."""
    seen = observation({"work_mem": "4MB"}, {"work_mem": "16MB"}, work_mem=info())
    report = setting_report("work_mem", "4MB", "System", seen, error=None, drifted=False)
    assert report.overridden and report.state is State.DRIFTED
    assert "ALTER DATABASE" in report.message and report.actual == "16MB"
    agreeing = observation({"work_mem": "4MB"}, {"work_mem": "4096kB"}, work_mem=info())
    assert not setting_report("work_mem", "4MB", "System", agreeing, error=None,
                              drifted=False).overridden


def test_a_command_line_value_overriding_a_system_value_is_reported():
    seen = observation({"log_min_messages": "notice"},
                       log_min_messages=info("log_min_messages", "warning", None, "enum",
                                             source="command line", display="warning"))
    report = setting_report("log_min_messages", "notice", "System", seen, error=None,
                            drifted=False)
    assert report.overridden and "command line" in report.message


def test_database_scope_reports_the_recorded_value():
    seen = observation({"work_mem": "4MB"}, work_mem=info(setting="1024", display="1MB"))
    report = setting_report("work_mem", "4MB", "Database", seen, error=None, drifted=False)
    assert (report.state, report.actual) == (State.APPLIED, "4MB")


def test_status_shape():
    report = setting_report("work_mem", "4MB", "System",
                            observation({"work_mem": "4MB"}, work_mem=info()), error=None,
                            drifted=False)
    assert report.as_status() == {"name": "work_mem", "desired": "4MB", "state": "Applied",
                                  "actual": "4MB"}
