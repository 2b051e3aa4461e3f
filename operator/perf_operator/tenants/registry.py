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

import json
import sys
from collections.abc import Collection, Iterator, Mapping
from typing import Any, NamedTuple


#: Strings up to this length are interned by :func:`compact` (keys, reasons, timestamps).
INTERN_LENGTH = 40


def compact(value: Any) -> Any:
    """A copy of a decoded JSON value whose dict keys and short strings are interned: every
    watch event decodes its own copies of the same keys and words, which 10,000 remembered
    tenants held 10,000 times (the registry took 66 MiB for 10,000 bench tenants, 38 MiB
    compacted)."""
    if isinstance(value, dict):
        return {sys.intern(key): compact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [compact(item) for item in value]
    if isinstance(value, str) and len(value) <= INTERN_LENGTH:
        return sys.intern(value)
    return value


class TenantEntry(NamedTuple):
    """What the operator remembers of a TenantQuota between events: enough to re-check and
    reconcile it without reading it from the API server (build one with :meth:`of`)."""

    name: str
    uid: str
    generation: int
    spec: dict
    #: The status without kopf's own bookkeeping, as compact JSON text (see :attr:`status`).
    status_text: str
    #: metadata.creationTimestamp (who is older, when two claim one tenant ID).
    created: str | None = None
    #: metadata.deletionTimestamp is set: its deletion handler owns it from now on.
    deleting: bool = False
    #: status.observedGeneration (None: never reported on), read without decoding the status.
    observed_generation: int | None = None

    @classmethod
    def of(cls, name: str, uid: str, generation: int, spec: dict, status: Mapping[str, Any],
           created: str | None = None, deleting: bool = False) -> TenantEntry:
        status = {key: value for key, value in status.items() if key != "kopf"}
        return cls(name, uid, generation, spec, json.dumps(status, separators=(",", ":")),
                   created, deleting, status.get("observedGeneration"))

    @property
    def status(self) -> dict[str, Any]:
        """The status, decoded on every read: its few readers (a reconcile, the profile's
        re-check) read it rarely, and 10,000 statuses kept as text take 23 MiB less than as
        decoded dicts (conditions with their messages, the table, the cache use)."""
        return json.loads(self.status_text)

    @property
    def websocket_limit(self) -> int | None:
        return (self.spec.get("websocket") or {}).get("maxConnections")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> tuple[str | None, TenantEntry]:
        """The profile the TenantQuota references, and its entry."""
        meta, spec = body["metadata"], compact(body.get("spec") or {})
        profile = (spec.get("profileRef") or {}).get("name")
        return profile, cls.of(meta["name"], meta["uid"], meta.get("generation", 0), spec,
                               body.get("status") or {}, meta.get("creationTimestamp"),
                               bool(meta.get("deletionTimestamp")))

    @property
    def tenant_id(self) -> str | None:
        return self.spec.get("tenantId")


class TenantRegistry:
    def __init__(self) -> None:
        self._by_profile: dict[tuple[str, str | None], dict[str, TenantEntry]] = {}
        self._profile_of: dict[tuple[str, str], str | None] = {}
        #: tenantId -> (namespace, name) -> (profile, entry): who else claims a tenant ID.
        self._by_tenant_id: dict[str | None, dict[tuple[str, str],
                                                  tuple[str | None, TenantEntry]]] = {}
        self._tenant_id_of: dict[tuple[str, str], str | None] = {}
        #: Tenants known from the startup LIST only, no watch event about them yet.
        self._seeded_only: set[tuple[str, str]] = set()

    def put(self, namespace: str, body: Mapping[str, Any]) -> TenantEntry:
        """Remember the TenantQuota as ``body`` shows it; returns its entry."""
        profile, entry = TenantEntry.from_body(body)
        previous = self._profile_of.get((namespace, entry.name), profile)
        if previous != profile:  # the tenant moved to another profile
            self._by_profile.get((namespace, previous), {}).pop(entry.name, None)
        self._profile_of[(namespace, entry.name)] = profile
        self._by_profile.setdefault((namespace, profile), {})[entry.name] = entry
        self._forget_claim(namespace, entry.name)
        self._by_tenant_id.setdefault(entry.tenant_id, {})[(namespace, entry.name)] = (
            profile, entry)
        self._tenant_id_of[(namespace, entry.name)] = entry.tenant_id
        self._seeded_only.discard((namespace, entry.name))
        return entry

    def _forget_claim(self, namespace: str, name: str) -> None:
        previous = self._tenant_id_of.pop((namespace, name), None)
        claims = self._by_tenant_id.get(previous)
        if claims is not None:
            claims.pop((namespace, name), None)
            if not claims:
                del self._by_tenant_id[previous]

    def seed(self, namespace: str, body: Mapping[str, Any]) -> None:
        """``put`` unless an event has already told about this tenant (it is newer)."""
        ref = (namespace, body["metadata"]["name"])
        if ref not in self._profile_of:
            self.put(namespace, body)
            self._seeded_only.add(ref)

    def forget_absent(self, present: Collection[tuple[str, str]]) -> list[tuple[str, str]]:
        """Forget the tenants known only from the startup LIST that a later LIST (``present``:
        (namespace, name) of every TenantQuota, taken after kopf's watch started) no longer
        shows: deleted between the two LISTs, before kopf's own listing, so no DELETED event
        will ever tell (a ghost would keep its tables from the orphan sweep for ever).
        Returns them."""
        gone = sorted(self._seeded_only.difference(present))
        for namespace, name in gone:
            self.forget(namespace, name)
        self._seeded_only.clear()  # every other one exists: its watch event will come
        return gone

    def forget(self, namespace: str, name: str) -> None:
        self._seeded_only.discard((namespace, name))
        self._forget_claim(namespace, name)
        profile = self._profile_of.pop((namespace, name), None)
        members = self._by_profile.get((namespace, profile))
        if members is not None:
            members.pop(name, None)
            if not members:
                del self._by_profile[(namespace, profile)]

    def get(self, namespace: str, name: str) -> TenantEntry | None:
        """The tenant as its latest event showed it (None: not known, or deleted)."""
        if (namespace, name) not in self._profile_of:
            return None
        profile = self._profile_of[(namespace, name)]
        return self._by_profile.get((namespace, profile), {}).get(name)

    def of_profile(self, namespace: str, profile: str) -> list[TenantEntry]:
        return list(self._by_profile.get((namespace, profile), {}).values())

    def in_namespace(self, namespace: str) -> Iterator[TenantEntry]:
        """Every TenantQuota of the namespace, whatever profile it references (to be consumed
        without awaiting in between: the registry changes on every watch event)."""
        for (where, _), members in self._by_profile.items():
            if where == namespace:
                yield from members.values()

    def claimants(self, tenant_id: str) -> list[tuple[str, str | None, TenantEntry]]:
        """(namespace, profile, entry) of every TenantQuota giving ``tenant_id``."""
        return [(namespace, profile, entry) for (namespace, _), (profile, entry)
                in self._by_tenant_id.get(tenant_id, {}).items()]

    def clear(self) -> None:
        self._seeded_only.clear()
        self._by_tenant_id.clear()
        self._tenant_id_of.clear()
        self._by_profile.clear()
        self._profile_of.clear()


#: The operator's registry (one operator per process).
TENANTS_BY_PROFILE = TenantRegistry()
