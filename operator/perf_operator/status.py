"""One place that turns a desired status into the smallest patch: no change, no write."""
from __future__ import annotations

from typing import Any


def merge_patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) that turns ``current`` into ``desired`` for the keys
    ``desired`` names. Lists are compared whole; keys ``desired`` maps to None are removed.
    Returns {} when nothing differs."""
    current = current or {}
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            sub = merge_patch(old, value)
            if sub:
                patch[key] = sub
        elif value is None:
            if key in current:
                patch[key] = None
        elif value != old:
            patch[key] = value
    return patch


def apply_to_kopf_patch(kopf_patch: Any, current_status: dict[str, Any] | None,
                        desired_status: dict[str, Any]) -> bool:
    """Put only the differing status keys into kopf's patch; True if anything will be written."""
    changes = merge_patch(current_status, desired_status)
    for key, value in changes.items():
        kopf_patch.status[key] = value
    return bool(changes)
