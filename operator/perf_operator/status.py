"""One place that turns a desired status into the smallest patch: no change, no write.

Readings (values measured rather than decided: signal values, index scans and sizes) would
differ on every pass by noise alone, so they go through :func:`steady_reading` first: a reading
is rewritten only when it moved by more than :data:`READING_TOLERANCE` of its last written
value (or appeared, or went), and is rounded to :data:`READING_DIGITS` significant digits, so
that float noise (50.000000000000234) never shows. Their timestamps follow them.
"""
from __future__ import annotations

import math
from typing import Any

#: Share of its last written value a reading must move by to be written again.
READING_TOLERANCE = 0.05
#: Significant digits a reading is written with.
READING_DIGITS = 6


def round_reading(value: float) -> float:
    """``value`` to :data:`READING_DIGITS` significant digits (integers stay integers)."""
    if isinstance(value, int) or value == 0 or not math.isfinite(value):
        return value
    return round(value, READING_DIGITS - 1 - math.floor(math.log10(abs(value))))


def reading_moved(previous: float | None, current: float | None,
                  tolerance: float = READING_TOLERANCE) -> bool:
    """Whether ``current`` must be written over ``previous`` (see module doc)."""
    if previous is None or current is None:
        return previous is not current
    if previous == 0:
        return current != 0
    return abs(current - previous) > tolerance * abs(previous)


def steady_reading(previous: float | None, current: float | None,
                   tolerance: float = READING_TOLERANCE) -> float | None:
    """The value to write: ``previous`` while ``current`` is within tolerance of it, else
    ``current`` rounded."""
    if not reading_moved(previous, current, tolerance):
        return previous
    return None if current is None else round_reading(current)


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
