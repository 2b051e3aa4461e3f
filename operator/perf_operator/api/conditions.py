"""Conditions: the one way status conditions change, so every reconciler keeps the
metav1.Condition contract (lastTransitionTime moves only when the status does)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from .status import Condition

#: The condition that sums up a resource; the printer columns show it.
READY = "Ready"

#: Not-ready reasons that mean work is under way, or waiting for data from outside the operator,
#: rather than a failure: they are not counted as reconcile errors, get no Warning Event, and
#: Argo CD shows them as Progressing however long they last (manifests/argocd/health/health.lua
#: keeps the same list; a unit test compares the two).
PROGRESS_REASONS = frozenset({
    "IndexBuilding",  # a CREATE INDEX CONCURRENTLY runs (hours on a large table)
    "IndexPending",   # an index waits for its turn (one build per table at a time)
    "SignalsStale",   # the application's metrics are not (yet) in Prometheus
})
#: Not-ready on purpose: ``spec.paused`` (or the tenant's profile is paused).
PAUSED = "Paused"

#: metav1.Condition's limit on a message; longer ones would be refused by the API server.
MAX_MESSAGE = 32_768


def set_condition(conditions: Sequence[Condition], type: str,
                  status: Literal["True", "False", "Unknown"], reason: str, message: str,
                  generation: int | None, now: datetime) -> list[Condition]:
    """A copy of ``conditions`` with the condition ``type`` set (appended if absent).

    lastTransitionTime becomes ``now`` (to the second, as the API server stores it) only when
    the status changes; a new reason or message alone keeps it, so "since when" stays true.
    """
    updated = Condition(type=type, status=status, reason=reason, message=message[:MAX_MESSAGE],
                        observed_generation=generation,
                        last_transition_time=now.replace(microsecond=0))
    previous = next((c for c in conditions if c.type == type), None)
    if previous is None:
        return [*conditions, updated]
    if previous.status == status:
        updated = updated.model_copy(
            update={"last_transition_time": previous.last_transition_time})
    return [updated if c.type == type else c for c in conditions]
