"""Operator-wide kopf settings."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import kopf

from ..config import CONFIG


@dataclass(frozen=True)
class WebhookServing:
    """Where the admission webhook listens and the TLS material it serves with."""

    addr: str
    port: int
    host: str
    certfile: str
    pkeyfile: str
    cafile: str


#: Set by ``perf-operator run --webhook-listen ...`` before the operator starts.
webhook: WebhookServing | None = None

#: Name of the ValidatingWebhookConfiguration kopf maintains.
WEBHOOK_CONFIGURATION = "perf-operator.perf.idp.io"


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
    if webhook is not None:
        settings.admission.server = kopf.WebhookServer(
            addr=webhook.addr, port=webhook.port, host=webhook.host,
            certfile=webhook.certfile, pkeyfile=webhook.pkeyfile, cafile=webhook.cafile)
        settings.admission.managed = WEBHOOK_CONFIGURATION
