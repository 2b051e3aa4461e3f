"""Operator-wide kopf settings."""
from __future__ import annotations

import logging

import kopf

from ..config import CONFIG


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    # kopf's progress and diff-base live in status.kopf, never in annotations: Argo CD and
    # every other GitOps tool would show annotations written by the operator as drift.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field="status.kopf.progress", touch_field="status.kopf.dummy")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration")
    settings.persistence.finalizer = "perf.idp.io/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 8
    if CONFIG.test_mode:
        settings.watching.reconnect_backoff = 0.5
