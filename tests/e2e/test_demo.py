"""The README's first command: the local stack comes up, the operator runs on examples/, every
example becomes Ready, and everything is gone afterwards."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.timeout(400)
def test_dev_demo_brings_every_example_to_ready():
    result = subprocess.run([sys.executable, "-m", "perf_operator.cli", "dev", "--once"],
                            cwd=REPO, capture_output=True, text=True, timeout=380)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "export KUBECONFIG=" in result.stdout
    # Prometheus scrapes the operator and the demo application and loads both profiles' rules.
    assert re.search(r"Prometheus: 2/2 targets up, (\d+)/\1 profiles' rule groups loaded",
                     result.stdout), result.stdout[-3000:]
    for endpoint in ("API server:", "PostgreSQL:", "Redis:", "Prometheus:", "Operator metrics:"):
        assert endpoint in result.stdout
    rows = [line for line in result.stdout.splitlines()  # the `kubectl get -o wide` table
            if line.startswith(("performanceprofile.", "tenantquota."))
            and not line.endswith(("created", "unchanged", "configured", "condition met"))]
    assert len(rows) >= 6  # two profiles, four tenants
    assert all(re.search(r"\sTrue\s", row) for row in rows), "\n".join(rows)
    root = re.search(r"KUBECONFIG=(\S+)/controlplane/kubeconfig", result.stdout).group(1)
    assert not pathlib.Path(root).exists()
