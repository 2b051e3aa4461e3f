"""Helpers of the PostgreSQL reconciler's end-to-end tests: a ProfileContext for a profile
pointing at the test database (credentials from the real Secret in the test namespace), and a
loop that reconciles until the database section has converged, keeping the status between
runs the way the handler does."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import pytest
from kubernetes_asyncio.config import kube_config

from perf_operator.api import PerformanceProfileSpec
from perf_operator.postgres import reconcile_profile
from perf_operator.reconcile import Outcome, ProfileContext
from perf_operator.status import merge_patch


@pytest.fixture(autouse=True)
def kubeconfig_from_environment(stack, monkeypatch):
    """kubernetes_asyncio reads KUBECONFIG when it is imported, before the stack fixture sets
    it; point its default at the stack's kubeconfig (the client is created once, then kept)."""
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", os.environ["KUBECONFIG"])


class RecordedEvents:
    """The reconciler's EventRecorder interface, keeping (type, reason, message) in a list."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def normal(self, reason: str, message: str) -> None:
        self.events.append(("Normal", reason, message))

    def warning(self, reason: str, message: str) -> None:
        self.events.append(("Warning", reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


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
    spec = PerformanceProfileSpec.model_validate({"database": database})
    return ProfileContext(name=name, namespace=namespace, uid="uid-" + name, generation=1,
                          spec=spec, status={}, events=events or RecordedEvents(),
                          logger=logging.getLogger("test.postgres"))


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
    patch = merge_patch(ctx.status, outcome.status)
    for key, value in patch.items():
        ctx.status[key] = value if not isinstance(value, dict) else {
            **(ctx.status.get(key) or {}), **value}
