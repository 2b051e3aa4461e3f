"""Which namespaces the operator serves: ``perf-operator run --namespace`` patterns, read the
way kopf reads them for its watches, so that the startup LISTs and the admission webhook serve
exactly the namespaces kopf watches (kopf's own matcher is private API).

A pattern is a comma-separated list of globs (``*`` and ``?``); a glob starting with ``!``
excludes. The first glob decides the initial match (a leading exclusion implies ``*`` before
it); later exclusions remove a matched namespace, and later inclusions bring back only a
namespace that the first glob matched.
"""
from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase


def matches_pattern(namespace: str, pattern: str) -> bool:
    globs = [glob.strip() for glob in pattern.split(",")]
    if globs[0].startswith("!"):
        globs.insert(0, "*")
    initially = matched = fnmatchcase(namespace, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            matched = matched and not fnmatchcase(namespace, glob[1:])
        else:
            matched = matched or (initially and fnmatchcase(namespace, glob))
    return matched


def serves(namespace: str, patterns: Sequence[str]) -> bool:
    """Whether an operator started with these ``--namespace`` patterns (none: every namespace)
    serves ``namespace``: any one pattern matching is enough."""
    return not patterns or any(matches_pattern(namespace, p) for p in patterns)


def exact_names(patterns: Sequence[str]) -> bool:
    """Whether ``patterns`` are only plain namespace names (no globs, exclusions or lists)."""
    return bool(patterns) and not any(c in p for p in patterns for c in "*?[]!,")
