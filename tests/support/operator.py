"""Run the real operator as a subprocess, the way it runs in a cluster."""
from __future__ import annotations

import os
import pathlib
import sys
import time

from perf_operator.devstack.processes import ManagedProcess, free_port

#: Test operators accept inline connections (the existing tests write them), to the stack's
#: address only: 127.0.0.1, so that another loopback address (127.0.0.2) is outside the policy.
#: A test that needs an operator refusing them overrides these in ``env``.
INLINE_CONNECTIONS_ENV = {"PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS": "1",
                          "PERF_OPERATOR_INLINE_HOSTS": "127.0.0.1"}


def start_operator(kubeconfig: str, log_dir: pathlib.Path, *, name: str = "operator",
                   extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                   verbose: bool = True) -> ManagedProcess:
    """Start ``perf-operator run`` in test mode (short intervals) against the given kubeconfig,
    with its metrics and probe server on a free port unless ``env`` names one. Tests log at
    debug level (``verbose``) so that a failure can be read from the log; benchmarks do not."""
    log_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**INLINE_CONNECTIONS_ENV, **os.environ, "KUBECONFIG": kubeconfig,
                "PERF_OPERATOR_TEST_MODE": "1",
                "PERF_OPERATOR_METRICS_PORT": str(free_port()), **(env or {})}
    proc = ManagedProcess(name, [sys.executable, "-m", "perf_operator.cli", "run",
                                 *(("--verbose",) if verbose else ()), *extra_args], log_dir, env=full_env)
    proc.metrics_port = int(full_env["PERF_OPERATOR_METRICS_PORT"])
    time.sleep(0.5)
    proc.check_alive()
    return proc
