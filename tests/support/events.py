"""A stand-in for the reconcilers' EventRecorder: tests that call a reconciler directly (no
kopf event poster runs there) read the Events it would have posted from a list."""
from __future__ import annotations

import logging

from perf_operator.reconcile import EventRecorder


class RecordedEvents(EventRecorder):
    """The EventRecorder interface, keeping (type, reason, message) in a list."""

    def __init__(self) -> None:
        super().__init__(body={}, logger=logging.getLogger("test"))
        self.events: list[tuple[str, str, str]] = []

    def normal(self, reason: str, message: str) -> None:
        self.events.append(("Normal", reason, message))

    def warning(self, reason: str, message: str) -> None:
        self.events.append(("Warning", reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    def take(self) -> list[str]:
        """The reasons recorded since the last call."""
        reasons = self.reasons()
        self.events.clear()
        return reasons
