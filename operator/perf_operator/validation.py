"""Checks the OpenAPI schema and CEL cannot make: SQL fragments parsed by a real PostgreSQL parser.

Used twice: by the admission webhook (the earliest point, at ``kubectl apply``) and by the
reconciler (for anything that got in while the webhook was not running).
"""
from __future__ import annotations

from typing import Any

import pydantic

from .api import PerformanceProfileSpec, TenantQuotaSpec
from .postgres.sqlcheck import check_expression


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


def describe_validation_error(err: pydantic.ValidationError) -> str:
    return "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                     for e in err.errors(include_url=False))


def profile_errors(spec: dict[str, Any]) -> list[str]:
    try:
        model = PerformanceProfileSpec.model_validate(spec)
    except pydantic.ValidationError as err:
        return [describe_validation_error(err)]
    return semantic_errors(model)


def tenant_errors(spec: dict[str, Any]) -> list[str]:
    try:
        TenantQuotaSpec.model_validate(spec)
    except pydantic.ValidationError as err:
        return [describe_validation_error(err)]
    return []
