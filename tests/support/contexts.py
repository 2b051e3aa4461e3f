"""The ProfileContext a test hands to a reconciler it calls directly."""
from __future__ import annotations

import logging
from typing import Any

from perf_operator.api import PerformanceProfileSpec
from perf_operator.reconcile import EventRecorder, ProfileContext
from tests.support.events import RecordedEvents


def profile_context(namespace: str, spec: dict[str, Any] | PerformanceProfileSpec, *,
                    name: str = "p", uid: str | None = None, generation: int = 1,
                    status: dict[str, Any] | None = None, events: EventRecorder | None = None,
                    logger: str = "test") -> ProfileContext:
    """A context for profile ``name``: ``spec`` validated unless already parsed; ``status`` and
    ``events`` are kept as given (the same objects), fresh ones when not given."""
    if not isinstance(spec, PerformanceProfileSpec):
        spec = PerformanceProfileSpec.model_validate(spec)
    return ProfileContext(name=name, namespace=namespace, uid=uid or f"uid-{name}",
                          generation=generation, spec=spec,
                          status=status if status is not None else {},
                          events=events if events is not None else RecordedEvents(),
                          logger=logging.getLogger(logger))
