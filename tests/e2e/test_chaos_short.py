"""The short chaos run (bench/chaos.py, 2 minutes, fixed seed, fewer objects) on a stack of its
own: operator replicas, kube-apiserver and Prometheus SIGKILLed and restarted, PostgreSQL and
Redis restarted, a namespace deleted while PostgreSQL is down, tenants and profiles created,
changed and deleted throughout; afterwards nothing is lost, orphaned or stuck."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "chaos.py"

#: Runs its own stack (it stops and starts PostgreSQL and Redis): not the session's.
pytestmark = pytest.mark.isolated


@pytest.mark.timeout(1200)
def test_short_chaos_run_loses_and_orphans_nothing():
    spec = importlib.util.spec_from_file_location("chaos", BENCH)
    chaos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos)
    run = chaos.Chaos(chaos.parse_args([
        "--minutes", "2", "--seed", "1", "--namespaces", "3", "--profiles", "2",
        "--tenants", "30", "--rows", "20000", "--fault-rate", "0.3", "--profile-churn", "0.15",
        "--converge-timeout", "90"]))
    try:
        found = run.run()
    finally:
        run.stop()
    assert found == {"lost": [], "orphaned": [], "stuck": []}, found
    assert {kind for kind, _ in run.faults} == set(chaos.FAULTS), run.faults
    assert all(run.profile_steps.values()), run.profile_steps
