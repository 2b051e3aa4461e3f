"""Signals that mean something: JSON log lines, log levels, Event correlation and the order of
DatabaseReady's reasons (pure parts; the operator's real output is checked in
tests/e2e/test_signals.py)."""
from __future__ import annotations

import json
import logging

from perf_operator.kube.events import EventCorrelator, EventKey, ObjectRef
from perf_operator.logs import REQUEUE_MESSAGE, JsonFormatter, TextFormatter, _demote_retries
from perf_operator.postgres import summarise
from perf_operator.postgres.indexes import IndexReport, Phase
from perf_operator.postgres.settings import SettingReport, State
from perf_operator.scrub import install_log_scrubbing, register_secret

REF = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile", "name": "platform",
       "uid": "u-1", "namespace": "team-a"}


def record(message: str, *args, level=logging.INFO, name="kopf.objects", **extra):
    logger = logging.getLogger(name)
    made = logger.makeRecord(name, level, __file__, 1, message, args, None, extra=extra)
    return made


def test_json_line_names_the_object_and_reason():
    line = JsonFormatter().format(record("index %s failed", "i_orders", k8s_ref=REF,
                                         reason="IndexFailed", level=logging.WARNING))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "kopf.objects"
    assert entry["message"] == "index i_orders failed"
    assert (entry["namespace"], entry["name"], entry["kind"], entry["reason"]) == (
        "team-a", "platform", "PerformanceProfile", "IndexFailed")
    assert entry["timestamp"].endswith("+00:00")


def test_json_line_without_object_has_no_object_fields():
    entry = json.loads(JsonFormatter().format(record("started", name="perf_operator")))
    assert set(entry) == {"timestamp", "level", "logger", "message"}


def test_json_line_is_scrubbed_and_carries_the_traceback_on_one_line():
    install_log_scrubbing()
    register_secret(("test", "signals"), "hunter2-secret")
    try:
        raise RuntimeError("connect failed: password=hunter2-secret")
    except RuntimeError:
        logger = logging.getLogger("perf_operator.unit")
        import sys
        made = logger.makeRecord("perf_operator.unit", logging.ERROR, __file__, 1,
                                 "boom with hunter2-secret", (), sys.exc_info())
    line = JsonFormatter().format(made)
    assert "hunter2" not in line and "\n" not in line
    assert "RuntimeError" in json.loads(line)["exception"]


def test_text_line_names_the_object():
    line = TextFormatter().format(record("reconciled", k8s_ref=REF))
    assert "[team-a/platform] reconciled" in line


def test_requeue_is_debug_and_retried_failure_is_warning():
    logging.getLogger().setLevel(logging.INFO)
    requeue = record(f"Handler 'profile_changed' failed temporarily: {REQUEUE_MESSAGE}",
                     level=logging.ERROR)
    assert _demote_retries(requeue) is False  # dropped unless --verbose
    assert requeue.levelno == logging.DEBUG
    retried = record("Handler 'profile_deleted' failed temporarily: connection refused",
                     level=logging.ERROR)
    assert _demote_retries(retried) is True and retried.levelname == "WARNING"
    failure = record("Handler 'x' failed with an exception. Will retry.", level=logging.ERROR)
    assert _demote_retries(failure) is True and failure.levelno == logging.ERROR


def key(message="Secret pg-credentials not found"):
    return EventKey(ObjectRef("perf.idp.io/v1alpha1", "PerformanceProfile", "p", "team-a",
                              "u-1"), "Warning", "SecretNotFound", message)


def test_repeat_within_the_window_updates_the_count():
    correlator = EventCorrelator(window=600)
    assert correlator.repeat_of(key(), now=0) is None
    correlator.posted(key(), "p.1", now=0)
    repeat = correlator.repeat_of(key(), now=300)
    assert (repeat.name, repeat.count) == ("p.1", 2)
    assert correlator.repeat_of(key(), now=850).count == 3  # 550 s after the last one


def test_other_message_or_expired_window_is_a_new_event():
    correlator = EventCorrelator(window=600)
    correlator.posted(key(), "p.1", now=0)
    assert correlator.repeat_of(key("other message"), now=1) is None
    assert correlator.repeat_of(key(), now=601) is None


def test_correlator_forgets_the_least_recently_seen_beyond_capacity():
    correlator = EventCorrelator(capacity=2)
    for i in range(3):
        correlator.posted(key(str(i)), f"p.{i}", now=i)
    assert correlator.repeat_of(key("0"), now=3) is None
    assert correlator.repeat_of(key("2"), now=3) is not None


def test_a_failure_is_the_reason_even_while_an_index_builds():
    building = IndexReport("i_big", Phase.BUILDING, "CREATE INDEX CONCURRENTLY running")
    rejected = SettingReport("work_mem", "4XB", State.REJECTED, message="invalid value")
    ready, reason, message = summarise([building], [rejected], [])
    assert (ready, reason) == (False, "SettingRejected")
    assert "i_big" in message
    assert summarise([building], [], [])[1] == "IndexBuilding"


def test_readings_within_tolerance_keep_their_written_value():
    from perf_operator.status import round_reading, steady_reading

    assert round_reading(50.000000000000234) == 50.0
    assert round_reading(0.123456789) == 0.123457
    assert steady_reading(100.0, 104.9) == 100.0
    assert steady_reading(100.0, 105.1) == 105.1
    assert steady_reading(0, 0) == 0 and steady_reading(0, 1) == 1
    assert steady_reading(None, 3.0) == 3.0 and steady_reading(3.0, None) is None


def test_index_scans_move_the_status_only_beyond_the_tolerance():
    from perf_operator.postgres import steady_index_readings

    previous = [{"name": "i", "phase": "Ready", "scans": 1000, "sizeBytes": 8192}]
    now = [{"name": "i", "phase": "Ready", "scans": 1030, "sizeBytes": 8192}]
    assert steady_index_readings(now, previous) == previous
    later = [{"name": "i", "phase": "Ready", "scans": 2000, "sizeBytes": 8192}]
    assert steady_index_readings(later, previous)[0]["scans"] == 2000


def test_deferred_cleanup_copies_every_secret_the_spec_references():
    from perf_operator.handlers.deferred import entry_key
    from perf_operator.handlers.escrow import secret_names

    entry = {"kind": "TenantQuota", "namespace": "team-a", "name": "acme", "uid": "0123456789",
             "spec": {"tenantId": "acme"},
             "profile": {"spec": {"redis": {"connection": {"secretRef": {"name": "redis-cred"}}},
                                  "database": {"connection": {"secretRef": {"name": "pg"}}},
                                  "targets": [{"secretRef": {"name": "t"}}]}}}
    assert sorted(secret_names(entry)) == ["pg", "redis-cred", "t"]
    assert entry_key(entry) == "TenantQuota.team-a.acme.01234567"
