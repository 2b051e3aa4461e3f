"""Every condition type and reason the operator writes is declared once, in api.conditions:
no reconciler writes one as a literal (a typo there would be a reason no health script, doc
or test knows)."""
from __future__ import annotations

import ast
import pathlib

from perf_operator.api import conditions

PACKAGE = pathlib.Path(conditions.__file__).resolve().parents[1]
#: Calls whose first argument is a condition reason (or, for Outcome, type and reason).
REASON_FIRST = {"SecretError", "TargetRefused", "ConnectionRefused"}


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _written_literals(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        args: list[ast.AST | None] = []
        if name == "Outcome":
            args = [*node.args[:3], *(k.value for k in node.keywords
                                      if k.arg in ("condition", "reason"))]
        elif name in REASON_FIRST and node.args:
            args = [node.args[0]]
        elif name in ("write_status", "set_condition"):
            override = next((k.value for k in node.keywords if k.arg == "ready_override"), None)
            if isinstance(override, ast.Tuple):
                args = [override.elts[0]]
            if name == "set_condition" and len(node.args) > 1:
                args.append(node.args[1])
        found += [(node.lineno, value) for value in map(_literal, args) if value is not None]
    return found


def test_no_condition_type_or_reason_is_written_as_a_literal():
    literals = [f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
                for path in sorted(PACKAGE.rglob("*.py")) if path.name != "conditions.py"
                for line, value in _written_literals(ast.parse(path.read_text()))]
    assert literals == []


def test_each_name_is_declared_once_and_the_reason_lists_use_them():
    declared = {value for name, value in vars(conditions).items()
                if name.isupper() and isinstance(value, str)}
    assert conditions.PERSISTENT_REASONS | conditions.PROGRESS_REASONS <= declared
    names = [n for n, value in vars(conditions).items() if n.isupper() and isinstance(value, str)]
    assert len(declared) == len(names), "two names for one condition type or reason"


def test_condition_lookup():
    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "Paused"}]}
    assert (conditions.condition_of(status, conditions.READY) or {})["status"] == "False"
    assert conditions.condition_reason(status, conditions.READY) == conditions.PAUSED
    assert conditions.condition_reason(status, conditions.TABLES_READY) is None
    assert conditions.condition_of({"conditions": None}, conditions.READY) is None
