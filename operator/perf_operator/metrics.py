"""The operator's own metrics, and the HTTP endpoint that serves them with the probes.

Every series is labelled by what an operator of the operator asks about: which resource kind,
which target system (the condition type a reconciler reports: ``DatabaseReady``,
``RedisReady``, ...), which optimizer signal and action. Label values come from code, never
from user input, so the number of series stays bounded.

The endpoint runs on the operator's event loop, not in a thread: ``/healthz`` answering proves
the loop is not blocked, which is what a liveness probe should check. ``/readyz`` reports the
caller's readiness predicate (the leader gate: in contact with the API server, whether leading
or standing by, so that a rolling update is never stuck behind a standby).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram,
                               generate_latest)

from .api.conditions import PROGRESS_REASONS

RECONCILIATIONS = Counter(
    "perf_operator_reconciliations_total",
    "Reconciliations of one target system for one object, by result "
    "(ready; progressing: work under way or waiting for data, such as an index build; "
    "not_ready: failed; error: the reconciler raised).",
    ["kind", "target", "result"])
RECONCILE_ERRORS = Counter(
    "perf_operator_reconcile_errors_total",
    "Reconciliations that failed, by reason (the condition reason, or the exception class "
    "when the reconciler raised). Progress (IndexBuilding, IndexPending, SignalsStale) is "
    "not an error and is not counted here.",
    ["kind", "target", "reason"])
RECONCILE_DURATION = Histogram(
    "perf_operator_reconcile_duration_seconds",
    "Time to observe, plan and execute one target system for one object.",
    ["kind", "target"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
QUEUE_DEPTH = Gauge(
    "perf_operator_reconcile_queue_depth",
    "Reconciliations started and not finished yet (waiting on a connection, a lock or the "
    "target itself): the operator's backlog.",
    ["kind"])
OPTIMIZER_DECISIONS = Counter(
    "perf_operator_optimizer_decisions_total",
    "Optimizer policy evaluations, by the signal evaluated and the decision taken "
    "(including 'hold').",
    ["signal", "decision"])
OPTIMIZER_ACTIONS = Counter(
    "perf_operator_optimizer_actions_total",
    "Actions the optimizer executed, by action and result (applied, failed, skipped).",
    ["action", "result"])
DEFERRED_CLEANUPS = Gauge(
    "perf_operator_deferred_cleanups",
    "Cleanups of deleted objects waiting in the operator's ledger (ConfigMap "
    "perf-operator-cleanup) for their server, by state: waiting (retried with back-off), "
    "failing (failed often enough to need a look). Set by the leader at each replay.",
    ["state"])
LEADER = Gauge(
    "perf_operator_leader",
    "1 while this replica holds the leader Lease and reconciles; 0 while it stands by.")
LEADER_TRANSITIONS = Counter(
    "perf_operator_leader_transitions_total",
    "Times this replica became leader.")


@dataclass
class Reconciliation:
    """What the caller learned inside :func:`reconciliation`; set :attr:`outcome` to the
    reconciler's :class:`~perf_operator.reconcile.Outcome` (None: no section, not counted)."""

    outcome: Any = None


@contextlib.contextmanager
def reconciliation(kind: str, target: str) -> Iterator[Reconciliation]:
    """Count, time and classify one reconciler run::

        with metrics.reconciliation("PerformanceProfile", "DatabaseReady") as run:
            run.outcome = await reconcile_profile(ctx)
    """
    run = Reconciliation()
    QUEUE_DEPTH.labels(kind).inc()
    started = time.perf_counter()
    try:
        yield run
    except Exception as err:
        _finish(kind, target, started, "error", type(err).__name__)
        raise
    else:
        if run.outcome is not None:
            outcome = run.outcome
            if outcome.ready:
                _finish(kind, target, started, "ready", None)
            elif outcome.reason in PROGRESS_REASONS:
                _finish(kind, target, started, "progressing", None)
            else:
                _finish(kind, target, started, "not_ready", outcome.reason)
    finally:
        QUEUE_DEPTH.labels(kind).dec()


def _finish(kind: str, target: str, started: float, result: str, reason: str | None) -> None:
    RECONCILE_DURATION.labels(kind, target).observe(time.perf_counter() - started)
    RECONCILIATIONS.labels(kind, target, result).inc()
    if reason is not None:
        RECONCILE_ERRORS.labels(kind, target, reason).inc()


def optimizer_decision(signal: str, decision: str) -> None:
    OPTIMIZER_DECISIONS.labels(signal, decision).inc()


def optimizer_action(action: str, result: str) -> None:
    OPTIMIZER_ACTIONS.labels(action, result).inc()


def set_leader(leading: bool) -> None:
    if leading:
        LEADER_TRANSITIONS.inc()
    LEADER.set(1 if leading else 0)


async def start_metrics_server(port: int, *, host: str = "0.0.0.0",
                               ready: Callable[[], bool] = lambda: True) -> web.AppRunner:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on the running loop. Stop it with
    ``await runner.cleanup()``."""

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not in contact with the API server\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
