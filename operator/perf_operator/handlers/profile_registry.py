"""Every PerformanceProfile the operator watches, under the keys other handlers look it up by
(the profiles contesting a server's settings, the profiles of a target, a tenant's profile).

Each ``ProfileIndex`` has the shape of a kopf index (``index.get(key, ())`` gives what every
profile filed under that key), but a watching handler keeps it and a LIST at startup fills it
before any handler runs, like the tenant registry.

Why not kopf indexes? kopf 1.45.2 holds every handler of the operator until each watch stream
of an indexed resource has listed once. When the operator watches namespaces by pattern
(``--namespace='!iso-*'``), a namespace deleted while the operator starts stops its stream
before that first listing, its readiness toggle is never dropped, and the operator then waits
forever without handling a single object (seen in CI: every profile created afterwards stayed
without status). With no kopf index there is no such gate.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from typing import Any

#: A profile's identity in the registry: (namespace, name).
ProfileRef = tuple[str, str]
#: What a profile files in one index: key -> value (empty: nothing).
Indexer = Callable[..., Mapping[Hashable, Any]]
#: What a reader of an index needs: a ProfileIndex, or a plain dict standing in for one.
ProfileLookup = Mapping[Hashable, Sequence[Any]]


class ProfileIndex(Mapping[Hashable, list[Any]]):
    """key -> the values the profiles filed under it, in no particular order."""

    def __init__(self, indexer: Indexer) -> None:
        #: ``indexer(namespace=, name=, meta=, spec=, status=)``, pure and quick.
        self.indexer = indexer
        self._by_key: dict[Hashable, dict[ProfileRef, Any]] = {}
        self._keys_of: dict[ProfileRef, tuple[Hashable, ...]] = {}

    def put(self, ref: ProfileRef, filed: Mapping[Hashable, Any]) -> None:
        self.forget(ref)
        for key, value in filed.items():
            self._by_key.setdefault(key, {})[ref] = value
        self._keys_of[ref] = tuple(filed)

    def forget(self, ref: ProfileRef) -> None:
        for key in self._keys_of.pop(ref, ()):
            values = self._by_key[key]
            values.pop(ref, None)
            if not values:
                del self._by_key[key]

    def knows(self, ref: ProfileRef) -> bool:
        return ref in self._keys_of

    def clear(self) -> None:
        self._by_key.clear()
        self._keys_of.clear()

    def __getitem__(self, key: Hashable) -> list[Any]:
        return list(self._by_key[key].values())

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)


#: Every index of profiles, each filled from every profile event.
INDEXES: list[ProfileIndex] = []
#: Profiles known from the startup LIST only, no watch event about them yet.
_seeded_only: set[ProfileRef] = set()


def profile_index(indexer: Indexer) -> ProfileIndex:
    """Declare an index of profiles filled by ``indexer`` (the decorator's result is the index)."""
    index = ProfileIndex(indexer)
    INDEXES.append(index)
    return index


def put_profile(body: Mapping[str, Any]) -> None:
    """File a profile (as its latest event or LIST shows it) in every index."""
    meta = body["metadata"]
    ref = (meta["namespace"], meta["name"])
    fields = {"namespace": ref[0], "name": ref[1], "meta": meta,
              "spec": body.get("spec") or {}, "status": body.get("status") or {}}
    for index in INDEXES:
        index.put(ref, index.indexer(**fields))
    _seeded_only.discard(ref)


def seed_profile(body: Mapping[str, Any]) -> None:
    """``put_profile`` unless an event has already told about this profile (it is newer)."""
    meta = body["metadata"]
    ref = (meta["namespace"], meta["name"])
    if not any(index.knows(ref) for index in INDEXES):
        put_profile(body)
        _seeded_only.add(ref)


def forget_absent_profiles(present: Collection[ProfileRef]) -> list[ProfileRef]:
    """Forget the profiles known only from the startup LIST that a later LIST (``present``)
    no longer shows (see ``TenantRegistry.forget_absent``); returns them."""
    gone = sorted(_seeded_only.difference(present))
    for namespace, name in gone:
        forget_profile(namespace, name)
    _seeded_only.clear()
    return gone


def forget_profile(namespace: str, name: str) -> None:
    _seeded_only.discard((namespace, name))
    for index in INDEXES:
        index.forget((namespace, name))


def clear_profiles() -> None:
    _seeded_only.clear()
    for index in INDEXES:
        index.clear()
