"""The SQL fragment checks the reconciler and the admission webhook share."""
from __future__ import annotations

import pytest

from perf_operator.postgres.sqlcheck import (check_expression, check_identifier,
                                             normalise_expression)

ACCEPTED = {
    "lower(email)": "lower(email)",
    "status = 'active' and deleted_at is null": "status = 'active' AND deleted_at IS NULL",
    "x = 1 -- trailing comment": "x = 1",
    "x = 1 /* block comment */": "x = 1",
    "(data->>'kind')::text": "CAST(data ->> 'kind' AS text)",
    "coalesce(a, b) > 0": "COALESCE(a, b) > 0",
    "kind IN ('a', 'b')": "kind IN ('a', 'b')",
    "CASE WHEN a THEN 1 ELSE 2 END": "CASE WHEN a THEN 1 ELSE 2 END",
    "name COLLATE \"C\"": "name COLLATE \"C\"",
    "expires_at IS NOT NULL": "expires_at IS NOT NULL",
}

REFUSED = {
    "1; DROP TABLE users": "several statements",
    "deleted_at IS NULL); DROP TABLE users; --": "does not parse",
    "(SELECT 1)": "subquery",
    "id IN (SELECT id FROM users)": "subquery",
    "EXISTS (SELECT 1)": "subquery",
    "a UNION SELECT 1": "exactly one expression",
    "1 FROM users": "FROM",
    "1 ORDER BY 1": "ORDER BY",
    "a, b": "exactly one expression",
    "a AS b": "alias",
    "*": "'*'",
    "users.*": "'*'",
    "$1": "ParamRef",
    "count(*)": "aggregate",
    "sum(x) OVER ()": "aggregate or window",
    "": "empty",
    "   ": "empty",
    "x = 'a\x00'": "NUL",
    "a) OR (1=1": "does not parse",
    "x" * 5000: "longer than",
}


@pytest.mark.parametrize("text,expected", ACCEPTED.items())
def test_accepted_expressions_are_normalised(text, expected):
    assert check_expression(text) is None
    assert normalise_expression(text) == expected


@pytest.mark.parametrize("text,why", REFUSED.items())
def test_injection_and_non_expressions_are_refused(text, why):
    error = check_expression(text)
    assert error is not None and why in error


def test_parse_error_position_refers_to_the_users_text():
    assert "at character 2" in check_expression("a) OR (1=1")


@pytest.mark.parametrize("name", ["users", "idx_users_tenant", "_x", "a$b", "a" * 63])
def test_plain_identifiers_are_accepted(name):
    assert check_identifier(name) is None


@pytest.mark.parametrize("name", ["", "Users", "1abc", "users; drop table x", 'a"b', "a b",
                                  "a" * 64, "tenant-id", "public.users"])
def test_other_identifiers_are_refused(name):
    assert check_identifier(name) is not None


DEEP = {
    "brackets": "f(" * 340 + "1" + ")" * 340,
    "arrays": "ARRAY[" * 40 + "1" + "]" * 40,
    "operators": "+".join(["a"] * 2000),
    "negations": "NOT " * 1000 + "a",
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_expressions_are_refused_cleanly(text):
    """Within the CRD's 4096 characters, nesting deep enough to exhaust Python's recursion
    limit is a validation error, not a RecursionError (which made the webhook answer 500)."""
    assert len(text) <= 4096
    error = check_expression(text)
    assert error is not None and "nested" in error


def test_nesting_is_capped_before_parsing_but_quoted_brackets_do_not_count():
    from perf_operator.postgres.sqlcheck import MAX_NESTING, nesting_depth

    assert nesting_depth("f(g(x), '(((', \"((\")") == 2
    assert check_expression("f(" * MAX_NESTING + "1" + ")" * MAX_NESTING) is None
    assert "brackets deep" in check_expression("f(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1))


def test_results_are_cached_by_text():
    from perf_operator.postgres.sqlcheck import _checked

    _checked.cache_clear()
    predicate = " AND ".join(f"col_{i} = {i}" for i in range(200))
    for _ in range(3):
        assert check_expression(predicate) is None
        assert check_expression("1; DROP TABLE users") is not None
    info = _checked.cache_info()
    assert (info.misses, info.hits) == (2, 4)
    assert info.maxsize is not None  # bounded
