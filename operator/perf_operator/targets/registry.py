"""What target resolution reads, kept from watch events (``handlers/targets.py``) so that
resolving a profile (once per reconcile, and for each of thousands of tenants) costs no API
request: the PerformanceTargets by name, and the labels of every namespace."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from ..api.target import PerformanceTargetSpec


class TargetRegistry:
    """PerformanceTargets (parsed; a spec that does not validate counts as absent, and its own
    status says why) and namespace labels."""

    def __init__(self) -> None:
        self.targets: dict[str, PerformanceTargetSpec] = {}
        self.namespace_labels: dict[str, dict[str, str]] = {}

    def put_target(self, name: str, spec: Mapping[str, Any]) -> PerformanceTargetSpec:
        try:
            parsed = PerformanceTargetSpec.model_validate(dict(spec))
        except pydantic.ValidationError:
            self.targets.pop(name, None)
            raise
        self.targets[name] = parsed
        return parsed

    def forget_target(self, name: str) -> None:
        self.targets.pop(name, None)

    def put_namespace(self, name: str, labels: Mapping[str, str] | None) -> None:
        self.namespace_labels[name] = dict(labels or {})

    def forget_namespace(self, name: str) -> None:
        self.namespace_labels.pop(name, None)

    def clear(self) -> None:
        self.targets.clear()
        self.namespace_labels.clear()


REGISTRY = TargetRegistry()
