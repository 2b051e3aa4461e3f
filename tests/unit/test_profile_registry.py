"""The indexes of profiles that replace kopf indexes (see handlers/profile_registry)."""
import perf_operator.entry  # noqa: F401 - registers every index
from perf_operator.handlers.profile_registry import (INDEXES, ProfileIndex, clear_profiles,
                                                     forget_absent_profiles, put_profile,
                                                     seed_profile)


def by_target(name, spec, **_):
    target = (spec.get("targetRef") or {}).get("name")
    return {target: name} if target else {}


def test_profiles_are_filed_under_their_keys_and_follow_a_change():
    index = ProfileIndex(by_target)
    index.put(("a", "p"), by_target("p", {"targetRef": {"name": "shared"}}))
    index.put(("b", "q"), by_target("q", {"targetRef": {"name": "shared"}}))
    assert sorted(index.get("shared", ())) == ["p", "q"]
    index.put(("a", "p"), by_target("p", {"targetRef": {"name": "other"}}))
    assert (index.get("shared", ()), index.get("other", ())) == (["q"], ["p"])


def test_a_forgotten_profile_leaves_no_key_behind():
    index = ProfileIndex(by_target)
    index.put(("a", "p"), {"shared": "p"})
    index.forget(("a", "p"))
    index.forget(("a", "never-seen"))
    assert (dict(index), len(index), index.get("shared", ())) == ({}, 0, ())


def test_a_profile_filing_nothing_is_still_known():
    """The startup seed must not overwrite what a watch event already told."""
    index = ProfileIndex(by_target)
    index.put(("a", "p"), {})
    assert index.knows(("a", "p")) and not index.knows(("a", "q"))


def test_a_profile_known_from_the_startup_list_alone_and_gone_since_is_forgotten():
    clear_profiles()
    try:
        for name in ("ghost", "kept", "told"):
            seed_profile({"metadata": {"namespace": "a", "name": name}, "spec": {}})
        put_profile({"metadata": {"namespace": "a", "name": "told"}, "spec": {"x": 1}})
        assert forget_absent_profiles({("a", "kept")}) == [("a", "ghost")]
        assert [index.knows(("a", "ghost")) for index in INDEXES] == [False] * len(INDEXES)
        assert all(index.knows(("a", "told")) for index in INDEXES)
        assert forget_absent_profiles(set()) == []
    finally:
        clear_profiles()
