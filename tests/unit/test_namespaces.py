"""--namespace patterns read as kopf reads them for its watches."""
import pytest
from kopf._cogs.structs.references import match_namespace

from perf_operator.kube.namespaces import matches_pattern, serves

CASES = [("team-a", "team-*"), ("iso-1", "!iso-*"), ("team-a", "!iso-*"), ("x", "x"),
         ("myapp-pr-123", "myapp-*, !*-pr-*, *pr-123"), ("myapp-pr-4", "myapp-*, !*-pr-*, *pr-123"),
         ("other-pr-123", "myapp-*, !*-pr-*, *pr-123"), ("other-pr-123", "!*-pr-*, *pr-123"),
         ("a1", "a?"), ("a12", "a?")]


@pytest.mark.parametrize(("namespace", "pattern"), CASES)
def test_patterns_match_what_kopf_watches(namespace, pattern):
    # kopf's matcher is private API: the operator has its own, checked against it here only
    assert matches_pattern(namespace, pattern) == match_namespace(namespace, pattern)


def test_no_pattern_serves_every_namespace_and_any_one_pattern_is_enough():
    assert serves("anything", ())
    assert serves("b", ("a", "b")) and not serves("c", ("a", "b"))
    assert not serves("iso-x", ("!iso-*",))
