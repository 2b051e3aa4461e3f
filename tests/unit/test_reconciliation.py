"""Merging the parts' outcomes into conditions and Ready, without kopf."""
from __future__ import annotations

from types import SimpleNamespace

from perf_operator.handlers.reconciliation import write_status
from perf_operator.reconcile import Outcome


def _conditions(*outcomes: Outcome) -> dict[str, tuple[str, str]]:
    patch = SimpleNamespace(status={})
    write_status(patch=patch, current={}, generation=1,
                 results=[(o.condition, o) for o in outcomes])
    return {c["type"]: (c["status"], c["reason"]) for c in patch.status["conditions"]}


def test_a_condition_that_does_not_affect_ready_shows_on_its_own():
    scaling = Outcome("ScalingReady", True, "HPAsApplied")
    stale = Outcome("MetricsStale", False, "SignalsStale", "stale: errorRate (NoData)",
                    abnormal_true=True, affects_ready=False)
    conditions = _conditions(scaling, stale)
    assert conditions["MetricsStale"] == ("True", "SignalsStale")
    assert conditions["Ready"] == ("True", "Reconciled")


def test_a_failing_part_still_makes_the_object_not_ready():
    overcommitted = Outcome("Overcommitted", False, "WebSocketOvercommitted",
                            abnormal_true=True)
    conditions = _conditions(Outcome("ScalingReady", True, "HPAsApplied"), overcommitted)
    assert conditions["Overcommitted"] == ("True", "WebSocketOvercommitted")
    assert conditions["Ready"] == ("False", "WebSocketOvercommitted")
