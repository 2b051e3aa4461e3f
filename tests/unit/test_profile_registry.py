"""The indexes of profiles that replace kopf indexes (see handlers/profile_registry)."""
from perf_operator.handlers.profile_registry import ProfileIndex


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
