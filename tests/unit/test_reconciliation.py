"""Merging the parts' outcomes into conditions and Ready, without kopf."""
from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace

import pytest

from perf_operator.handlers import escrow, reconciliation
from perf_operator.handlers.reconciliation import write_status
from perf_operator.reconcile import Outcome
from tests.support.events import RecordedEvents


def _conditions(*outcomes: Outcome, events: RecordedEvents | None = None,
                ready_override: tuple[str, str] | None = None) -> dict[str, tuple[str, str]]:
    patch = SimpleNamespace(status={})
    write_status(patch=patch, current={}, generation=1,
                 results=[(o.condition, o) for o in outcomes],
                 events=events if events is not None else RecordedEvents(),
                 ready_override=ready_override)
    return {c["type"]: (c["status"], c["reason"]) for c in patch.status["conditions"]}


@pytest.mark.parametrize("outcome", [
    Outcome("DatabaseReady", False, "SecretNotFound", "Secret pg-credentials not found"),
    Outcome("DatabaseReady", False, "DatabaseUnavailable", "connection refused"),
    Outcome("ProfileResolved", False, "ProfileNotFound", "profile p does not exist"),
    Outcome("Overcommitted", False, "WebSocketOvercommitted", "too many", abnormal_true=True),
])
def test_every_failing_ready_is_a_warning_event_with_its_reason(outcome):
    events = RecordedEvents()
    _conditions(outcome, events=events)
    assert events.events == [("Warning", outcome.reason, f"{outcome.condition}: "
                                                         f"{outcome.message}")]


def test_rejected_spec_is_a_warning_event():
    events = RecordedEvents()
    _conditions(events=events, ready_override=("Rejected", "spec.x: bad"))
    assert events.events == [("Warning", "Rejected", "spec.x: bad")]


@pytest.mark.parametrize("outcome", [
    Outcome("DatabaseReady", False, "IndexBuilding", "index i building"),
    Outcome("DatabaseReady", False, "IndexPending", "index i pending"),
    Outcome("DatabaseReady", True, "DatabaseInSync", "ok"),
])
def test_progress_and_success_are_no_warning(outcome):
    events = RecordedEvents()
    _conditions(outcome, events=events)
    assert events.events == []


def test_paused_is_no_warning():
    events = RecordedEvents()
    _conditions(events=events, ready_override=("Paused", "spec.paused is true"))
    assert events.events == []


def test_a_condition_that_does_not_affect_ready_shows_on_its_own():
    scaling = Outcome("ScalingReady", True, "HPAsApplied")
    stale = Outcome("MetricsStale", False, "SignalsStale", "stale: errorRate (NoData)",
                    abnormal_true=True, affects_ready=False)
    conditions = _conditions(scaling, stale)
    assert conditions["MetricsStale"] == ("True", "SignalsStale")
    assert conditions["Ready"] == ("True", "Reconciled")


def test_a_failing_part_still_makes_the_object_not_ready():
    overcommitted = Outcome("Overcommitted", False, "WebSocketOvercommitted",
                            abnormal_true=True)
    conditions = _conditions(Outcome("ScalingReady", True, "HPAsApplied"), overcommitted)
    assert conditions["Overcommitted"] == ("True", "WebSocketOvercommitted")
    assert conditions["Ready"] == ("False", "WebSocketOvercommitted")


def _ready(*outcomes: Outcome) -> dict:
    patch = SimpleNamespace(status={})
    write_status(patch=patch, current={}, generation=1,
                 results=[(o.condition, o) for o in outcomes], events=RecordedEvents())
    return next(c for c in patch.status["conditions"] if c["type"] == "Ready")


@pytest.mark.parametrize("order", [1, -1])
def test_ready_names_the_failure_only_a_person_can_fix_first(order):
    """A missing Secret is not hidden behind an index build or a server that is down: Ready
    takes its reason, whatever order the parts ran in, so Argo CD says Degraded."""
    parts = [Outcome("DatabaseReady", False, "IndexBuilding", "index i Building"),
             Outcome("RedisReady", False, "RedisUnavailable", "connection refused"),
             Outcome("TablesReady", False, "SecretNotFound", "Secret team-a/r not found")]
    ready = _ready(*parts[::order])
    assert ready["reason"] == "SecretNotFound"
    assert ready["message"] == ("TablesReady: Secret team-a/r not found; RedisReady: "
                                "connection refused; DatabaseReady: index i Building")


def test_ready_prefers_a_failure_being_retried_to_work_under_way():
    ready = _ready(Outcome("DatabaseReady", False, "IndexBuilding", "index i Building"),
                   Outcome("RedisReady", False, "RedisUnavailable", "connection refused"))
    assert ready["reason"] == "RedisUnavailable"


def test_every_secret_error_reason_is_persistent():
    """Each reason secrets.SecretError raises is one Argo CD shows Degraded at once."""
    import ast
    import inspect

    from perf_operator import secrets
    from perf_operator.api import PERSISTENT_REASONS, conditions

    raised = {getattr(conditions, node.args[0].id)
              for node in ast.walk(ast.parse(inspect.getsource(secrets)))
              if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "SecretError"}
    assert raised == {"SecretNotFound", "SecretForbidden", "SecretKeyMissing",
                      "SecretValueInvalid"}
    assert raised <= PERSISTENT_REASONS


class _GoneTenant:
    """What run_cleanups needs of kopf's context for an object already gone: its Events."""

    def __init__(self) -> None:
        self.events = RecordedEvents()


GONE_TENANT = {"kind": "TenantQuota", "namespace": "team-a", "name": "acme",
               "status": {"table": {"redis": {"secretRef": {"name": "redis-cred"}}}}}


def _fail_then_succeed(failures: int, lock: asyncio.Lock, held: list[bool]):
    attempts: list[int] = []

    async def clean_or_defer(cleanups, ctx, entry):
        held.append(lock.locked())
        if entry:  # its credentials' escrow must outlive every attempt
            assert not escrow.unneeded(("team-a", "redis-cred"), [])
        attempts.append(1)
        return "API server unreachable" if len(attempts) <= failures else None
    return clean_or_defer, attempts


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(reconciliation, "CONFIG",
                        dataclasses.replace(reconciliation.CONFIG, retry_backoff_seconds=0.01))


async def test_the_cleanup_of_a_gone_object_is_retried_until_the_api_server_is_back(
        monkeypatch, fast_backoff):
    lock, held = asyncio.Lock(), []
    clean_or_defer, attempts = _fail_then_succeed(3, lock, held)
    monkeypatch.setattr(reconciliation, "_clean_or_defer", clean_or_defer)
    ctx = _GoneTenant()
    await reconciliation.run_cleanups([], ctx, None, GONE_TENANT, lock)
    assert len(attempts) == 4
    assert escrow.unneeded(("team-a", "redis-cred"), [])
    assert ctx.events.events == []
    assert held == [True] * 4 and not lock.locked()


async def test_the_lock_is_free_between_attempts(monkeypatch, fast_backoff):
    lock, held = asyncio.Lock(), []
    clean_or_defer, _ = _fail_then_succeed(1, lock, held)
    monkeypatch.setattr(reconciliation, "_clean_or_defer", clean_or_defer)
    cleanup = asyncio.create_task(reconciliation.run_cleanups([], _GoneTenant(), None, {}, lock))
    await asyncio.sleep(0.005)  # inside the first wait
    async with lock:  # a TenantQuota created again under the same name is not held up
        assert not cleanup.done()
    await cleanup


async def test_a_gone_object_whose_cleanup_never_runs_is_released_with_a_warning(
        monkeypatch, fast_backoff):
    monkeypatch.setattr(reconciliation, "GONE_RETRY_SECONDS", 0.1)
    clean_or_defer, attempts = _fail_then_succeed(10**6, asyncio.Lock(), [])
    monkeypatch.setattr(reconciliation, "_clean_or_defer", clean_or_defer)
    ctx = _GoneTenant()
    await reconciliation.run_cleanups([], ctx, None, {})
    assert 2 <= len(attempts) < 10
    assert ctx.events.reasons() == ["CleanupAbandoned"]
