"""The operator's one clock: every time it writes is UTC, as the API server writes its own.

Statuses, records and Events take metav1.Time (whole seconds, ``Z``); the leader Lease takes
metav1.MicroTime.
"""
from __future__ import annotations

import datetime


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def timestamp(moment: datetime.datetime | None = None) -> str:
    """``moment`` (default: now) as metav1.Time: ``2026-01-31T12:00:00Z``."""
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(moment: datetime.datetime | None = None) -> str:
    """``moment`` (default: now) as metav1.MicroTime: ``2026-01-31T12:00:00.123456Z``."""
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
