"""Endpoint matching of the reference limiter: exactly the rules docs/rate-limit-tables.md gives
to applications in other languages."""
from __future__ import annotations

import pytest

from perf_operator.ratelimit.layout import bucket_key, cache_prefix, glob_escape, record_key
from perf_operator.ratelimit.rules import (EndpointRule, first_match, normalize_path,
                                           pattern_covers, shadowed_rules, table_rules)


def rule(pattern: str, *methods: str, requests: int = 10, burst: int = 0) -> EndpointRule:
    return EndpointRule(pattern=pattern, methods=methods or ("*",), requests=requests,
                        window_seconds=60, burst=burst)


@pytest.mark.parametrize("path, expected", [
    ("/api/plugins", "/api/plugins"),
    ("/api/plugins/", "/api/plugins"),
    ("/api//plugins?q=1", "/api/plugins"),
    ("/api/plugins#top", "/api/plugins"),
    ("/", ""),
    ("", ""),
])
def test_paths_are_normalized(path, expected):
    assert normalize_path(path) == expected


@pytest.mark.parametrize("pattern, path, matches", [
    ("/api/plugins", "/api/plugins", True),
    ("/api/plugins", "/api/plugins/", True),
    ("/api/plugins", "/api/Plugins", False),  # case-sensitive
    ("/api/plugins", "/api/plugins/x", False),
    ("/api/*", "/api/plugins", True),
    ("/api/*", "/api", False),  # * is exactly one segment
    ("/api/*", "/api/plugins/x", False),
    ("/api/*/config", "/api/p1/config", True),
    ("/api/**", "/api", True),  # ** is zero or more segments
    ("/api/**", "/api/plugins/x/y", True),
    ("/api/**", "/apix", False),
    ("/**", "/", True),
    ("/**", "/anything/at/all", True),
    ("/api/**/health", "/api/health", True),
    ("/api/**/health", "/api/a/b/health", True),
    ("/api/**/health", "/api/a/b/healthz", False),
    ("/api/v1.0/x+y", "/api/v1.0/x+y", True),  # regex characters are literal
    ("/api/v1.0/x+y", "/api/v1x0/xxy", False),
])
def test_pattern_matching(pattern, path, matches):
    assert (first_match([rule(pattern)], path, "GET") is not None) is matches


def test_methods_are_matched_upper_cased_and_star_means_every_method():
    rules = [rule("/api/plugins", "POST", "PUT"), rule("/api/plugins")]
    assert first_match(rules, "/api/plugins", "post") is rules[0]
    assert first_match(rules, "/api/plugins", "PUT") is rules[0]
    assert first_match(rules, "/api/plugins", "GET") is rules[1]


def test_the_first_matching_rule_applies_in_table_order():
    broad, narrow = rule("/api/**", requests=1), rule("/api/plugins", requests=2)
    assert first_match([broad, narrow], "/api/plugins", "GET") is broad
    assert first_match([narrow, broad], "/api/plugins", "GET") is narrow
    assert first_match([narrow], "/other", "GET") is None


def document(**overrides):
    base = {"rateLimitsEnabled": True,
            "endpoints": [{"pattern": "/api/search", "methods": ["GET"], "requests": 5,
                           "windowSeconds": 1, "burst": 2, "critical": True}],
            "defaultLimit": {"requests": 100, "windowSeconds": 60, "burst": 10}}
    return {**base, **overrides}


def test_a_table_is_its_endpoints_then_the_default_budget_for_everything_else():
    rules = table_rules(document())
    assert [r.pattern for r in rules] == ["/api/search", "/**"]
    assert rules[0].critical and rules[0].capacity == 7
    assert first_match(rules, "/api/search", "POST") is rules[1]
    assert first_match(rules, "/", "DELETE") is rules[1]


def test_a_disabled_table_limits_nothing():
    assert table_rules(document(rateLimitsEnabled=False)) == ()


def test_gcra_parameters():
    r = EndpointRule("/x", ("*",), requests=100, window_seconds=60, burst=20)
    assert r.emission_interval_us == 600_000
    assert r.capacity == 120


def test_a_rule_with_other_numbers_gets_another_bucket():
    """A changed limit starts a fresh bucket instead of inheriting the old one's debt."""
    a = rule("/api/**", "GET", "POST", requests=10)
    b = rule("/api/**", "GET", "POST", requests=20)
    assert a.bucket_name == "GET,POST:/api/**:10/60s+0"
    assert a.bucket_name != b.bucket_name


def test_key_layout_puts_every_key_of_a_tenant_in_one_hash_slot():
    assert record_key("saas-idp:prod:", "acme") == "saas-idp:prod:{acme}:limits"
    assert bucket_key("p:", "acme", "GET:/x:1/1s+0") == "p:{acme}:rl:GET:/x:1/1s+0"
    assert cache_prefix("p:", "acme") == "p:{acme}:cache:"


def test_glob_escape():
    assert glob_escape("a*b?c[d]e\\") == "a\\*b\\?c\\[d\\]e\\\\"
    assert glob_escape("p:{acme}:cache:") == "p:{acme}:cache:"


@pytest.mark.parametrize("broad, narrow, covers", [
    ("/**", "/api/search", True),
    ("/**", "/", True),
    ("/**", "/api/**", True),
    ("/api/**", "/api", True),
    ("/api/**", "/api/search", True),
    ("/api/**", "/apix", False),
    ("/api/**", "/**", False),
    ("/api/*", "/api/search", True),
    ("/api/*", "/api/*", True),
    ("/api/*", "/api/**", False),  # ** also matches /api and /api/a/b
    ("/api/*", "/api", False),
    ("/api/search", "/api/*", False),
    ("/api/*/config", "/api/p1/config", True),
    ("/api/**/health", "/api/x/*/health", True),
    ("/api/**/health", "/api/health", True),
    ("/api/**/health", "/api/healthz", False),
    ("/*/search", "/api/search", True),
    ("/api/search", "/api/search", True),
])
def test_pattern_covers(broad, narrow, covers):
    assert pattern_covers(broad, narrow) is covers
    # the claim agrees with the matcher on paths the narrow pattern matches
    if covers:
        for path in ("/api/search", "/api", "/api/p1/config", "/api/x/y/health", "/",
                     "/api/a/b", "/api/health", "/x/search"):
            if first_match([rule(narrow)], path, "GET"):
                assert first_match([rule(broad)], path, "GET"), (broad, narrow, path)


def test_shadowed_rules_need_the_methods_covered_too():
    rules = [("/**", ["*"]), ("/api/search", ["GET"])]
    assert shadowed_rules(rules) == [(0, 1)]
    assert shadowed_rules(list(reversed(rules))) == []  # narrower first: both apply
    assert shadowed_rules([("/api/**", ["POST"]), ("/api/search", ["GET"])]) == []
    assert shadowed_rules([("/api/**", ["GET", "POST"]), ("/api/search", ["GET"])]) == [(0, 1)]
    assert shadowed_rules([("/api/**", ["GET"]), ("/api/search", ["*"])]) == []
