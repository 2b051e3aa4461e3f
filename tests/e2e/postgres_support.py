"""Helpers of the PostgreSQL reconciler's end-to-end tests: a ProfileContext for a profile
pointing at the test database (credentials from the real Secret in the test namespace), and a
loop that reconciles until the database section has converged, keeping the status between
runs the way the handler does."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from perf_operator.api import PerformanceProfileSpec
from perf_operator.postgres import reconcile_profile
from perf_operator.reconcile import Outcome, ProfileContext
from perf_operator.status import merge_patch
from tests.support.contexts import apply_merge_patch
from tests.support.contexts import profile_context as _profile_context
from tests.support.events import RecordedEvents


def database_section(pg_database: dict, *, indexes: list[dict] | None = None,
                     parameters: dict[str, str] | None = None, scope: str = "Database",
                     **extra: Any) -> dict:
    """spec.database for the test database; no parameters unless asked (ALTER SYSTEM would
    change the server every test shares)."""
    return {
        "connection": {"host": pg_database["host"], "port": pg_database["port"],
                       "database": pg_database["database"],
                       "secretRef": {"name": "pg-credentials"}, "sslMode": "disable"},
        "indexes": indexes or [],
        "settings": {"scope": scope, "parameters": parameters or {}},
        **extra,
    }


def profile_context(namespace: str, database: dict, *, name: str = "platform",
                    events: RecordedEvents | None = None) -> ProfileContext:
    return _profile_context(namespace, {"database": database}, name=name, events=events,
                            logger="test.postgres")


def with_database(ctx: ProfileContext, database: dict) -> ProfileContext:
    """The same profile after a spec change (status and events carried over)."""
    ctx.spec = PerformanceProfileSpec.model_validate({"database": database})
    ctx.generation += 1
    return ctx


async def reconcile(ctx: ProfileContext) -> Outcome:
    outcome = await reconcile_profile(ctx)
    assert outcome is not None
    _remember(ctx, outcome)
    return outcome


async def converge(ctx: ProfileContext, *, timeout: float = 60,
                   until: Any = None) -> Outcome:
    """Reconcile every 0.2 s until nothing is running and ``until(outcome)`` (default: ready)
    holds; the last outcome."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = await reconcile(ctx)
        idle = outcome.requeue_after is None
        if idle and (until(outcome) if until else outcome.ready):
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"not converged after {timeout}s: {outcome}")
        await asyncio.sleep(0.2)


def phases(outcome: Outcome) -> dict[str, str]:
    return {i["name"]: i["phase"] for i in outcome.status["database"]["indexes"]}


def _remember(ctx: ProfileContext, outcome: Outcome) -> None:
    """The status as the API server keeps it after the operator's patch, in the same dict
    (others hold it). A shallow merge lost nested keys the patch did not name: the findings of
    status.database.indexHealth when only a count changed."""
    merged = apply_merge_patch(ctx.status, merge_patch(ctx.status, outcome.status))
    ctx.status.clear()
    ctx.status.update(merged)
