"""The optimizer's memory, kept in the profile's ``status.optimization``.

The models are part of the API (``api/optimization.py``: the CRD's status schema is generated
from them, one copy); this module names them for the optimizer. See that module for what each
part of the state is for.
"""
from __future__ import annotations

from ..api.optimization import (AUTOMATIC_INDEX_LIMIT, HISTORY_LIMIT, NOTES_LIMIT,
                                RECOMMENDATION_LIMIT, ActionState, Adjustments, AutomaticIndex,
                                HealthyStreak, HistoryEntry, HpaFloor, IndexRecommendation,
                                OptimizerState, SignalStatus, Track, Verification, adjustments)

__all__ = [
    "AUTOMATIC_INDEX_LIMIT", "HISTORY_LIMIT", "NOTES_LIMIT", "RECOMMENDATION_LIMIT",
    "ActionState", "Adjustments", "AutomaticIndex", "HealthyStreak", "HistoryEntry", "HpaFloor",
    "IndexRecommendation", "OptimizerState", "SignalStatus", "Track", "Verification",
    "adjustments",
]
