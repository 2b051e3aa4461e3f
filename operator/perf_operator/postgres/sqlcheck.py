"""Validation of the SQL fragments a PerformanceProfile may carry: index names, columns, key
expressions and partial-index ``where`` clauses.

Identifiers are checked against a plain pattern and later quoted with ``psycopg.sql.Identifier``;
expressions are parsed by pglast (PostgreSQL's own parser) and must be exactly one scalar
expression built from an allow-list of node types: no second statement, no subquery, no
``FROM``/``UNION``, no parameter, no ``*``. What reaches PostgreSQL is pglast's deparsed form of
the parsed tree, never the user's text, so a comment or stray quote cannot change the statement
it is put into. The admission webhook calls :func:`check_expression` and
:func:`check_identifier` too, so a bad fragment is refused at ``kubectl apply`` and, should one
get past it (webhook down), again here before anything is executed.

Parsing costs up to tens of milliseconds for a long predicate and runs several times per
reconcile, so results are cached by text (:func:`normalise_expression` is a bounded LRU) and
callers on the event loop warm the cache off it (``validation.off_loop``). A
deeply nested expression would exhaust Python's recursion limit in pglast's tree conversion or
in the checks below: nesting is capped before pglast sees the text, and whatever recursion is
left (``a+a+...+a`` has no brackets) is caught and refused like any other bad input.
"""
from __future__ import annotations

import functools
import re

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

#: Identifiers the operator accepts: what PostgreSQL folds an unquoted identifier to (lower
#: case), at most NAMEDATALEN-1 bytes, the same pattern as the CRD's. Anything else is refused
#: rather than quoted into something surprising.
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")

#: Longest expression accepted; an index expression or predicate is a line, not a program.
MAX_EXPRESSION_LENGTH = 4096

#: Deepest bracket nesting accepted, checked on the text before parsing.
MAX_NESTING = 32

#: How many distinct texts' results are kept (a few per index across all profiles).
CACHE_SIZE = 4096

#: Parse-tree nodes an index expression or predicate may be made of.
_ALLOWED_NODES = frozenset({
    "A_ArrayExpr", "A_Const", "A_Expr", "A_Indices", "A_Indirection", "BitString", "Boolean",
    "BooleanTest", "BoolExpr", "CaseExpr", "CaseWhen", "CoalesceExpr", "CollateClause",
    "ColumnRef", "Float", "FuncCall", "Integer", "MinMaxExpr", "NamedArgExpr", "NullTest",
    "RowExpr", "String", "TypeCast", "TypeName",
})


class SqlCheckError(ValueError):
    """A fragment was refused; the message says why and is safe to show to the user."""


def check_identifier(name: str) -> str | None:
    """An error message for an unacceptable identifier (index, table, column ...), or None."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        return (f"{name!r} is not a plain SQL identifier (lower-case letters, digits, '_' or "
                f"'$', starting with a letter or '_', at most 63 characters)")
    return None


def check_expression(text: str) -> str | None:
    """An error message if ``text`` is not exactly one safe scalar expression, or None."""
    try:
        normalise_expression(text)
    except SqlCheckError as err:
        return str(err)
    return None


def normalise_expression(text: str) -> str:
    """pglast's deparsed form of the one expression in ``text``; the only form ever executed.

    Raises :class:`SqlCheckError` when ``text`` is anything but one scalar expression."""
    if not isinstance(text, str):
        raise SqlCheckError("expression is empty")
    expression, error = _checked(text)
    if expression is None:
        raise SqlCheckError(error or "not an expression")
    return expression


@functools.lru_cache(maxsize=CACHE_SIZE)
def _checked(text: str) -> tuple[str | None, str | None]:
    """(deparsed expression, None) or (None, error message): a pair, because lru_cache does
    not remember exceptions and a refused text is re-checked on every resync too."""
    try:
        return _normalise(text), None
    except SqlCheckError as err:
        return None, str(err)
    except RecursionError:
        return None, "expression is nested too deeply"


def nesting_depth(text: str) -> int:
    """The deepest nesting of round and square brackets outside quoted strings and
    identifiers (a conservative count: an unbalanced text is refused by the parser anyway)."""
    depth = deepest = 0
    quote: str | None = None
    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth = max(0, depth - 1)
    return deepest


def _normalise(text: str) -> str:
    if not text.strip():
        raise SqlCheckError("expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise SqlCheckError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    if "\x00" in text:
        raise SqlCheckError("expression contains a NUL byte")
    if nesting_depth(text) > MAX_NESTING:
        raise SqlCheckError(f"expression is nested more than {MAX_NESTING} brackets deep")
    try:
        statements = parse_sql(f"SELECT {text}")
    except ParseError as err:
        message, location = err.args[0], err.args[1]
        where = "" if location is None else f" at character {location - len('SELECT ') + 1}"
        raise SqlCheckError(f"expression does not parse: {message}{where}") from None
    if len(statements) != 1:
        raise SqlCheckError("expression must be a single expression, not several statements")
    select = statements[0].stmt
    if not isinstance(select, ast.SelectStmt) or len(select.targetList or ()) != 1:
        raise SqlCheckError("expression must be exactly one expression")
    target = select.targetList[0]
    if target.name is not None or target.indirection:
        raise SqlCheckError("expression must not carry an alias")
    expression = RawStream()(target.val)
    # Any clause besides the single target (FROM, WHERE, UNION, ORDER BY, LIMIT, WITH, INTO ...)
    # makes the statement deparse to more than "SELECT <expression>".
    if RawStream()(select) != "SELECT " + expression:
        raise SqlCheckError("expression must not contain clauses such as FROM, UNION, ORDER BY")
    _check_nodes(target.val)
    return expression


def _check_nodes(node: object) -> None:
    if isinstance(node, (tuple, list)):
        for item in node:
            _check_nodes(item)
        return
    if not isinstance(node, ast.Node):
        return
    kind = type(node).__name__
    if kind == "SubLink":
        raise SqlCheckError("expression must not contain a subquery")
    if kind not in _ALLOWED_NODES:
        raise SqlCheckError(f"expression must not contain {kind}")
    if isinstance(node, ast.ColumnRef) and any(isinstance(f, ast.A_Star) for f in node.fields):
        raise SqlCheckError("expression must not contain '*'")
    if isinstance(node, ast.FuncCall) and (node.agg_star or node.agg_distinct or node.over
                                           or node.agg_filter or node.agg_order
                                           or node.agg_within_group):
        raise SqlCheckError("expression must not contain an aggregate or window function")
    for slot in type(node).__slots__:
        _check_nodes(getattr(node, slot))
