"""Endpoint rules: how a request (path, method) finds its rate limit in a tenant's table.

Matching, exactly (applications in other languages implement the same):

* The request path is normalised: the query string is dropped, repeated slashes collapse and a
  trailing slash is removed (``/api/plugins/?q=1`` is ``/api/plugins``).
* A pattern is an absolute path of ``/``-separated segments. A literal segment matches itself
  (case-sensitive); ``*`` matches exactly one segment; ``**`` matches zero or more segments.
* A rule lists upper-case HTTP methods, or ``*`` for every method; the request's method is
  compared upper-cased.
* The **first** rule of ``endpoints`` that matches path and method applies (the operator
  writes the tenant's own rules first, then its profile's, each in the order of the spec).
  A request no rule matches counts against ``defaultLimit``, the tenant's budget for everything
  else (as if it were a last rule ``/**`` for every method). When ``rateLimitsEnabled`` is
  false nothing is limited.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

ANY_METHOD = "*"


@dataclass(frozen=True)
class EndpointRule:
    """One row of a tenant's rate-limit table; its budget is shared by all of its methods."""

    pattern: str
    methods: tuple[str, ...]
    #: Requests per window on average: the bucket refills at ``requests / window_seconds``.
    requests: int
    window_seconds: float
    #: Extra requests on top of ``requests`` that may pass back to back from an idle bucket.
    burst: int
    #: Never shed under load (the application's load shedding reads it; the limiter does not).
    critical: bool = False
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(pattern_regex(self.pattern)))

    @property
    def emission_interval_us(self) -> float:
        """GCRA's emission interval: the time one request's worth of quota takes to refill."""
        return self.window_seconds * 1_000_000 / self.requests

    @property
    def capacity(self) -> int:
        """Requests that may pass back to back from an idle bucket."""
        return self.requests + self.burst

    @property
    def bucket_name(self) -> str:
        """``<METHODS>:<pattern>:<requests>/<window>s+<burst>``, e.g.
        ``GET,POST:/api/plugins/**:100/60s+20``. Unique within a table; a rule whose numbers
        change starts a new, full bucket (the old one expires), so a raised limit applies at
        once instead of after the debt run up under the old one is paid off."""
        return (f"{','.join(self.methods)}:{self.pattern}:"
                f"{self.requests}/{self.window_seconds:g}s+{self.burst}")

    def matches(self, normalized_path: str, method: str) -> bool:
        return ((ANY_METHOD in self.methods or method in self.methods)
                and self._regex.fullmatch(normalized_path) is not None)

    @classmethod
    def from_record(cls, row: dict) -> EndpointRule:
        return cls(pattern=row["pattern"], methods=tuple(row["methods"]),
                   requests=int(row["requests"]), window_seconds=float(row["windowSeconds"]),
                   burst=int(row["burst"]), critical=bool(row.get("critical", False)))


def table_rules(document: dict) -> tuple[EndpointRule, ...]:
    """The rules of a limits document in match order, the default budget last."""
    if not document["rateLimitsEnabled"]:
        return ()
    default = {**document["defaultLimit"], "pattern": "/**", "methods": [ANY_METHOD]}
    return tuple(EndpointRule.from_record(row) for row in [*document["endpoints"], default])


def pattern_regex(pattern: str) -> str:
    """The regular expression (for ``fullmatch``) of a normalised path matching ``pattern``."""
    parts = []
    for segment in (s for s in pattern.split("/") if s):
        if segment == "**":
            parts.append(r"(?:/[^/]+)*")
        elif segment == "*":
            parts.append(r"/[^/]+")
        else:
            parts.append("/" + re.escape(segment))
    return "".join(parts)


def pattern_covers(broad: str, narrow: str) -> bool:
    """Whether every path ``narrow`` matches is also matched by ``broad``.

    Compares the patterns segment by segment, the narrow one's wildcards standing for any
    segment(s): a literal covers only the same literal, ``*`` covers one literal or ``*``, and
    ``**`` covers any run of segments (including ``**``). Exact for these patterns, because a
    narrow ``*`` or ``**`` can stand for a segment no literal of ``broad`` names."""
    wide = [s for s in broad.split("/") if s]
    tight = [s for s in narrow.split("/") if s]
    # covered[i][j]: wide[i:] covers tight[j:]
    covered = [[False] * (len(tight) + 1) for _ in range(len(wide) + 1)]
    covered[len(wide)][len(tight)] = True
    for i in range(len(wide) - 1, -1, -1):
        for j in range(len(tight), -1, -1):
            if wide[i] == "**":
                covered[i][j] = covered[i + 1][j] or (j < len(tight) and covered[i][j + 1])
            elif j < len(tight) and tight[j] != "**" and (
                    wide[i] == tight[j] or (wide[i] == "*" and tight[j] != "**")):
                covered[i][j] = covered[i + 1][j + 1]
    return covered[0][0]


def methods_cover(broad: Sequence[str], narrow: Sequence[str]) -> bool:
    return ANY_METHOD in broad or (ANY_METHOD not in narrow and set(narrow) <= set(broad))


def shadowed_rules(rules: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[int, int]]:
    """(earlier, later) index pairs of ``(pattern, methods)`` rules where the later rule can
    never apply: the earlier one matches every request it matches, and the first match wins."""
    return [(i, j) for j, (pattern, methods) in enumerate(rules)
            for i, (earlier, earlier_methods) in enumerate(rules[:j])
            if pattern_covers(earlier, pattern) and methods_cover(earlier_methods, methods)]


def normalize_path(path: str) -> str:
    """``/a//b/?x=1`` -> ``/a/b``; the root is the empty string (no segments)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return "".join("/" + s for s in path.split("/") if s)


def first_match(rules: Sequence[EndpointRule], path: str, method: str) -> EndpointRule | None:
    normalized, method = normalize_path(path), method.upper()
    for rule in rules:
        if rule.matches(normalized, method):
            return rule
    return None
