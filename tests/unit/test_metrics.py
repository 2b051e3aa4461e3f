"""The reconciliation context manager classifies, times and counts each reconciler run."""
import pytest
from prometheus_client import REGISTRY

from perf_operator import metrics
from perf_operator.reconcile import Outcome


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_ready_outcome_is_counted_and_timed_without_error():
    labels = {"kind": "UnitKind", "target": "ReadyTarget"}
    before = sample("perf_operator_reconciliations_total", **labels, result="ready")
    with metrics.reconciliation("UnitKind", "ReadyTarget") as run:
        run.outcome = Outcome(condition="ReadyTarget", ready=True, reason="Applied")
    assert sample("perf_operator_reconciliations_total", **labels, result="ready") == before + 1
    assert sample("perf_operator_reconcile_duration_seconds_count", **labels) >= 1
    assert sample("perf_operator_reconcile_queue_depth", kind="UnitKind") == 0


def test_not_ready_outcome_counts_an_error_with_its_reason():
    with metrics.reconciliation("UnitKind", "FailTarget") as run:
        run.outcome = Outcome(condition="FailTarget", ready=False, reason="ConnectionFailed")
    assert sample("perf_operator_reconcile_errors_total", kind="UnitKind", target="FailTarget",
                  reason="ConnectionFailed") == 1


@pytest.mark.parametrize("reason", ["IndexBuilding", "IndexPending", "SignalsStale"])
def test_progress_is_not_an_error(reason):
    labels = {"kind": "UnitKind", "target": f"Progress{reason}"}
    with metrics.reconciliation("UnitKind", labels["target"]) as run:
        run.outcome = Outcome(condition=labels["target"], ready=False, reason=reason)
    assert sample("perf_operator_reconcile_errors_total", **labels, reason=reason) == 0
    assert sample("perf_operator_reconciliations_total", **labels, result="progressing") == 1
    assert sample("perf_operator_reconciliations_total", **labels, result="not_ready") == 0


def test_exception_is_counted_as_error_and_propagates():
    with pytest.raises(TimeoutError), metrics.reconciliation("UnitKind", "RaiseTarget"):
        raise TimeoutError("slow")
    assert sample("perf_operator_reconciliations_total", kind="UnitKind", target="RaiseTarget",
                  result="error") == 1
    assert sample("perf_operator_reconcile_errors_total", kind="UnitKind", target="RaiseTarget",
                  reason="TimeoutError") == 1


def test_absent_section_is_not_counted():
    with metrics.reconciliation("UnitKind", "AbsentTarget"):
        pass
    assert sample("perf_operator_reconcile_duration_seconds_count", kind="UnitKind",
                  target="AbsentTarget") == 0


def test_queue_depth_counts_runs_in_progress():
    with metrics.reconciliation("DepthKind", "T"), metrics.reconciliation("DepthKind", "U"):
        assert sample("perf_operator_reconcile_queue_depth", kind="DepthKind") == 2
    assert sample("perf_operator_reconcile_queue_depth", kind="DepthKind") == 0
