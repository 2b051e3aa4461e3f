"""Checks the OpenAPI schema and CEL cannot make: SQL fragments parsed by a real PostgreSQL parser,
and rate-limit rules that an earlier rule shadows (CEL judges only the ``/**`` prefix case).

Used twice: by the admission webhook (the earliest point, at ``kubectl apply``) and by the
reconciler (for anything that got in while the webhook was not running). Parsing is CPU work
(tens of milliseconds for a long predicate), so callers on the event loop go through
:func:`off_loop`, which runs it on a small executor of its own: a burst of admission reviews
or reconciles neither stalls the loop nor takes the default thread pool from DNS lookups and
other blocking calls.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

import pydantic

from .api.conditions import RULE_SHADOWED
from .api import PerformanceProfileSpec, TenantQuotaSpec
from .api.limits import EndpointRateLimit
from .postgres.sqlcheck import check_expression
from .ratelimit.rules import shadowed_rules



def shadowed_rule_errors(rules: Sequence[EndpointRateLimit] | None, path: str) -> list[str]:
    """One message per rule that an earlier rule of the same list shadows, naming both."""
    rules = rules or []
    return [f"{RULE_SHADOWED}: {path}[{j}] ({rules[j].pattern} {','.join(rules[j].methods)}) "
            f"would never apply: {path}[{i}] ({rules[i].pattern} "
            f"{','.join(rules[i].methods)}) is listed before it and matches every request it "
            f"does (the first matching rule wins); list the narrower rule first"
            for i, j in shadowed_rules([(r.pattern, r.methods) for r in rules])]


def profile_rule_errors(spec: PerformanceProfileSpec) -> list[str]:
    return shadowed_rule_errors(spec.api.rate_limits.endpoints,
                                "spec.api.rateLimits.endpoints")


def tenant_rule_errors(spec: TenantQuotaSpec) -> list[str]:
    return shadowed_rule_errors(spec.rate_limits, "spec.rateLimits")


def semantic_errors(spec: PerformanceProfileSpec) -> list[str]:
    """Field-named problems in the SQL of a profile's indexes; empty when there are none."""
    errors: list[str] = []
    for i, index in enumerate(spec.database.indexes if spec.database else ()):
        if index.where is not None and (problem := check_expression(index.where)):
            errors.append(f"spec.database.indexes[{i}].where: {problem}")
        for j, column in enumerate(index.columns):
            if column.expression is not None and (problem := check_expression(column.expression)):
                errors.append(f"spec.database.indexes[{i}].columns[{j}].expression: {problem}")
    return errors


#: Two threads: enough to keep parsing off the loop, few enough that a flood of huge specs
#: cannot take the CPU from everything else.
_PARSER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlcheck")


async def off_loop(check: Callable[[Any], list[str]], argument: Any) -> list[str]:
    """``check(argument)`` (one of the checks below) on the parser threads. Run on a profile,
    it also fills the parse cache that the index planner reads later in the same reconcile."""
    return await asyncio.get_running_loop().run_in_executor(_PARSER, check, argument)


def describe_validation_error(err: pydantic.ValidationError) -> str:
    return "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                     for e in err.errors(include_url=False))


def profile_errors(spec: dict[str, Any]) -> list[str]:
    try:
        model = PerformanceProfileSpec.model_validate(spec)
    except pydantic.ValidationError as err:
        return [describe_validation_error(err)]
    return semantic_errors(model) + profile_rule_errors(model)


def tenant_errors(spec: dict[str, Any]) -> list[str]:
    try:
        model = TenantQuotaSpec.model_validate(spec)
    except pydantic.ValidationError as err:
        return [describe_validation_error(err)]
    return tenant_rule_errors(model)
