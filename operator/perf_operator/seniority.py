"""Which of several profiles is the oldest: the owner rule of server-wide settings (Redis
CONFIG, PostgreSQL System-scoped parameters) gives each contested setting to the oldest
profile setting it, so that two profiles never write their values in turn."""
from __future__ import annotations

import datetime


def seniority(created: str | None, namespace: str, name: str
              ) -> tuple[bool, datetime.datetime, str, str]:
    """Sort key, the oldest first: ``metadata.creationTimestamp`` (RFC 3339; None or
    unreadable counts as the youngest), ties (one ``kubectl apply``) by namespace/name."""
    when = _timestamp(created)
    return (when is None, when or datetime.datetime.max.replace(tzinfo=datetime.UTC),
            namespace, name)


def _timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
