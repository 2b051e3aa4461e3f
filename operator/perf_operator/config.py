"""Operator-wide settings, read once from the environment.

Test mode (``PERF_OPERATOR_TEST_MODE=1``) shortens every interval so that end-to-end tests
converge in seconds instead of minutes; nothing else changes.
"""
from __future__ import annotations

import functools
import os
import pathlib
from dataclasses import dataclass

from kubernetes_asyncio import config as kube_config


@dataclass(frozen=True)
class OperatorConfig:
    test_mode: bool
    #: How often every object is re-checked against the systems it configures (drift detection).
    resync_seconds: float
    #: Bounded retries of a finalizer whose target system is gone, before the object is released.
    finalizer_retries: int
    #: Back-off between retries of a failed reconcile.
    retry_backoff_seconds: float
    metrics_port: int

    @classmethod
    def from_env(cls) -> OperatorConfig:
        test_mode = os.environ.get("PERF_OPERATOR_TEST_MODE", "") in ("1", "true", "yes")
        return cls(
            test_mode=test_mode,
            resync_seconds=float(os.environ.get("PERF_OPERATOR_RESYNC_SECONDS",
                                                2 if test_mode else 60)),
            finalizer_retries=int(os.environ.get("PERF_OPERATOR_FINALIZER_RETRIES",
                                                 3 if test_mode else 10)),
            retry_backoff_seconds=1 if test_mode else 15,
            metrics_port=int(os.environ.get("PERF_OPERATOR_METRICS_PORT", "8080")),
        )


CONFIG = OperatorConfig.from_env()


IN_CLUSTER_NAMESPACE_FILE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@functools.cache
def operator_namespace() -> str:
    """The operator's own namespace (its leader Lease, and the Secrets of PerformanceTargets):
    ``PERF_OPERATOR_NAMESPACE`` (the downward API in the Deployment), else the in-cluster
    ServiceAccount's namespace, else the kubeconfig context's namespace, else ``default``.
    Reads a file once: call it first off the event loop (``perf-operator run`` does)."""
    if configured := os.environ.get("PERF_OPERATOR_NAMESPACE"):
        return configured
    if IN_CLUSTER_NAMESPACE_FILE.is_file():
        return IN_CLUSTER_NAMESPACE_FILE.read_text().strip()
    try:
        _, active = kube_config.list_kube_config_contexts(os.environ.get("KUBECONFIG"))
    except (kube_config.ConfigException, OSError):
        return "default"
    return (active or {}).get("context", {}).get("namespace") or "default"
