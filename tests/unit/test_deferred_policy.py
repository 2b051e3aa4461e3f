"""The retry policy of the cleanup ledger (handlers/deferred.py): back-off doubling from one
resync to a cap, every failure counted and explained in the entry, failing from the fifth on,
and nothing in the entry lost along the way."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from perf_operator.handlers import deferred

NOW = datetime(2026, 12, 6, 3, 0, 0, tzinfo=timezone.utc)
ENTRY = {"kind": "TenantQuota", "namespace": "team-a", "name": "acme", "uid": "0123456789",
         "spec": {"tenantId": "acme"}, "secret": "perf-operator-cleanup-abc",
         "error": "Redis 127.0.0.1:1 refused the connection"}


def test_the_wait_doubles_from_one_resync_up_to_the_cap():
    base, cap = deferred.RETRY_BASE_SECONDS, deferred.RETRY_CAP_SECONDS
    delays = [deferred.retry_delay(attempts) for attempts in range(1, 12)]
    assert delays[:4] == [base, 2 * base, 4 * base, 8 * base]
    assert delays[-1] == cap and max(delays) == cap
    assert delays == sorted(delays)


def test_each_failure_is_counted_explained_and_scheduled():
    entry = deferred.record_failure(ENTRY, "connection refused", NOW)
    assert entry["attempts"] == 1 and entry["lastError"] == "connection refused"
    assert entry["lastAttemptAt"] == "2026-12-06T03:00:00Z"
    assert not deferred.due(entry, NOW)
    assert deferred.due(entry, NOW + timedelta(seconds=deferred.retry_delay(1)))
    again = deferred.record_failure(entry, "timeout", NOW + timedelta(seconds=10))
    assert again["attempts"] == 2 and again["lastError"] == "timeout"
    # what the replay needs is never lost, nor why the cleanup was deferred
    assert {k: again[k] for k in ENTRY} == ENTRY


def test_an_entry_without_a_schedule_is_due():
    """Entries written before the policy existed have no attempts: tried at once."""
    assert deferred.due(ENTRY, NOW)
    assert not deferred.failing(ENTRY)


def test_failing_from_the_fifth_attempt_and_the_wait_stays_capped():
    entry, moment = ENTRY, NOW
    states = []
    for _ in range(40):
        entry = deferred.record_failure(entry, "connection refused", moment)
        states.append(deferred.failing(entry))
        moment += timedelta(seconds=deferred.retry_delay(entry["attempts"]))
    assert states.index(True) == deferred.STUCK_AFTER_ATTEMPTS - 1
    assert all(states[deferred.STUCK_AFTER_ATTEMPTS - 1:])
    scheduled = datetime.strptime(entry["nextAttemptAt"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc)
    last = datetime.strptime(entry["lastAttemptAt"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc)
    assert (scheduled - last).total_seconds() == deferred.RETRY_CAP_SECONDS


def test_a_long_error_is_cut():
    entry = deferred.record_failure(ENTRY, "x" * 5000, NOW)
    assert len(entry["lastError"]) == deferred.ERROR_LIMIT
    assert entry["lastError"].endswith("...")
