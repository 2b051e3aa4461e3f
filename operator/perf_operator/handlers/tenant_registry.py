"""Every TenantQuota the operator watches, grouped by the profile it references: what a
profile's periodic re-check of its tenants and its tenant summary read.

Why not a kopf index? Until an operator is fully indexed once, kopf creates a readiness toggle
for every new object of an indexed resource, and every toggle created or dropped wakes every
worker waiting for readiness. When TenantQuotas arrive faster than they are indexed, readiness
is never reached and the wake-ups grow quadratically: 10,000 tenants created at once kept
kopf 1.45.2 busy for over ten minutes without handling one of them (py-spy: 78 % of the time in
``ToggleSet.make_toggle`` notifying waiters). TenantQuotas therefore have no kopf index: a
watching handler keeps this registry, and a LIST at startup fills it before any handler
runs, so a profile never counts its tenants from a half-seen list.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class TenantEntry(NamedTuple):
    """What the operator remembers of a TenantQuota between events: enough to re-check and
    reconcile it without reading it from the API server."""

    name: str
    uid: str
    generation: int
    spec: dict
    #: The status without kopf's own bookkeeping.
    status: dict

    @property
    def websocket_limit(self) -> int | None:
        return (self.spec.get("websocket") or {}).get("maxConnections")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> tuple[str | None, TenantEntry]:
        """The profile the TenantQuota references, and its entry."""
        meta, spec = body["metadata"], dict(body.get("spec") or {})
        status = {key: value for key, value in (body.get("status") or {}).items()
                  if key != "kopf"}
        profile = (spec.get("profileRef") or {}).get("name")
        return profile, cls(meta["name"], meta["uid"], meta.get("generation", 0), spec, status)


class TenantRegistry:
    def __init__(self) -> None:
        self._by_profile: dict[tuple[str, str | None], dict[str, TenantEntry]] = {}
        self._profile_of: dict[tuple[str, str], str | None] = {}

    def put(self, namespace: str, body: Mapping[str, Any]) -> None:
        profile, entry = TenantEntry.from_body(body)
        previous = self._profile_of.get((namespace, entry.name), profile)
        if previous != profile:  # the tenant moved to another profile
            self._by_profile.get((namespace, previous), {}).pop(entry.name, None)
        self._profile_of[(namespace, entry.name)] = profile
        self._by_profile.setdefault((namespace, profile), {})[entry.name] = entry

    def seed(self, namespace: str, body: Mapping[str, Any]) -> None:
        """``put`` unless an event has already told about this tenant (it is newer)."""
        if (namespace, body["metadata"]["name"]) not in self._profile_of:
            self.put(namespace, body)

    def forget(self, namespace: str, name: str) -> None:
        profile = self._profile_of.pop((namespace, name), None)
        members = self._by_profile.get((namespace, profile))
        if members is not None:
            members.pop(name, None)
            if not members:
                del self._by_profile[(namespace, profile)]

    def of_profile(self, namespace: str, profile: str) -> list[TenantEntry]:
        return list(self._by_profile.get((namespace, profile), {}).values())

    def clear(self) -> None:
        self._by_profile.clear()
        self._profile_of.clear()


#: The operator's registry (one operator per process).
TENANTS_BY_PROFILE = TenantRegistry()
