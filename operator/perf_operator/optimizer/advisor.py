"""Index recommendations from the database's own statistics, checked before anything is built.

1. The heaviest queries by total execution time come from ``pg_stat_statements`` (normalised:
   constants are ``$n`` parameters).
2. Each is parsed with pglast, PostgreSQL's own parser. Columns compared with ``=``/``IN``/
   ``= ANY`` and with ``<``, ``>``, ``BETWEEN`` or sorted by in ``ORDER BY`` give, per table,
   one candidate: the equality columns in the order the query names them (the join columns
   when nothing else narrows the table), then one range or sort column. A candidate that is a
   prefix of an existing valid index is already served and skipped.
3. Each candidate is created as a *hypothetical* index with hypopg (visible only to the
   advisor's own session, never built), and the query's generic plan (``PREPARE`` plus
   ``EXPLAIN EXECUTE`` under ``plan_cache_mode = force_generic_plan``, so the parameters need no
   values) is costed without and with it. Nothing is executed: no ``ANALYZE``.
4. A candidate is recommended when it saves at least ``min_saving`` of a query's cost; its
   evidence is the heaviest such query.

Only plain ``SELECT`` statements are considered, on lower-case tables and columns (the names a
declared index may use). The advisor runs on a connection of its own that is closed afterwards,
so no prepared statement or hypothetical index outlives it. It needs the extensions
``pg_stat_statements`` and ``hypopg`` in the database; it never creates them.

Planning runs code: the planner evaluates IMMUTABLE functions with constant arguments, and a
function can ``RESET ROLE`` back to the session's login. A query text is written by whoever ran
it, so the advisor never plans anyone's SQL with more rights than its author:

* only the application role's queries (``database.applicationRole``, pg_stat_statements'
  ``userid``) are read;
* each is refused unless every function, operator and type it names exists only in
  ``pg_catalog`` (no user-defined one of that name anywhere), every relation is a plain table
  without row-level security whose indexes, constraints, statistics and policies use nothing
  outside ``pg_catalog`` (the planner folds those expressions too) - :func:`unsafe_names` and
  :func:`unsafe_relations`;
* what remains is planned under ``SET LOCAL ROLE`` to the application role, in a read-only
  transaction that is rolled back, with ``statement_timeout``.
"""
from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind, BoolExprType
from psycopg import sql

from ..postgres.connect import one_row
from .state import IndexRecommendation

#: Share of a query's planner cost an index must save to be recommended.
DEFAULT_MIN_SAVING = 0.3
#: Queries examined per run (heaviest first) and candidates per query: the cost is bounded.
TOP_QUERIES = 20
MAX_CANDIDATES_PER_QUERY = 3
MAX_INDEX_COLUMNS = 4
#: Bounds of the advisor's own session: never wait on a lock, never plan for long, and stop
#: examining queries once a run has taken this long.
LOCK_TIMEOUT_MS = 1000
STATEMENT_TIMEOUT_MS = 5000
RUN_SECONDS = 30.0
QUERY_TEXT_IN_STATUS = 300

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")
_EQUALITY = {"="}
_RANGE = {"<", ">", "<=", ">="}


class AdvisorUnavailable(Exception):
    """The database or the spec lacks what the advisor needs; the message says what."""


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: frozenset[str]
    #: Key columns of each valid index, in order.
    indexes: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Candidate:
    schema: str
    table: str
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        """``perfop_<table>_<columns>_idx``, shortened with a hash to PostgreSQL's 63 bytes."""
        name = f"perfop_{self.table}_{'_'.join(self.columns)}_idx"
        if len(name) <= 63:
            return name
        digest = hashlib.sha256(f"{self.schema}.{name}".encode()).hexdigest()[:8]
        return f"{name[:54]}_{digest}"


@dataclass(frozen=True)
class QueryStat:
    query: str
    calls: int
    total_time_ms: float


@dataclass(frozen=True)
class Measurement:
    stat: QueryStat
    candidate: Candidate
    cost_before: float
    cost_after: float

    @property
    def saving(self) -> float:
        if self.cost_before <= 0:
            return 0.0
        return max(0.0, (self.cost_before - self.cost_after) / self.cost_before)


# ----------------------------------------------------------------------------- pure part

@dataclass
class _Predicates:
    """Columns of one table a query filters, joins or sorts on, in the order it names them."""

    equality: list[str] = field(default_factory=list)
    #: Columns equal to another table's column: an index on them serves a nested-loop join,
    #: which matters only when no constant narrows the table first.
    join: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)


def parse_select(query: str) -> ast.SelectStmt | None:
    """The statement when ``query`` is one plain SELECT (no locking clause, no data-modifying
    CTE), else None."""
    try:
        statements = parse_sql(query)
    except Exception:  # noqa: BLE001 - pglast raises its own ParseError; truncated text too
        return None
    if len(statements) != 1:
        return None
    statement = statements[0].stmt
    if not isinstance(statement, ast.SelectStmt) or statement.lockingClause:
        return None
    if statement.withClause is not None:
        for cte in statement.withClause.ctes or ():
            if not isinstance(cte.ctequery, ast.SelectStmt):
                return None
    return statement


def parameter_count(statement: ast.Node) -> int:
    """The highest ``$n`` in the statement: EXECUTE needs that many arguments."""
    highest = 0
    for node in _walk(statement):
        if isinstance(node, ast.ParamRef):
            highest = max(highest, node.number)
    return highest


@dataclass(frozen=True)
class NamesUsed:
    """What a statement asks PostgreSQL to look up, for the safety checks against the catalog."""

    #: Functions by (schema or None, name); a column reference's last name counts too
    #: (``t.f`` may call ``f(t)``).
    functions: frozenset[tuple[str | None, str]]
    operators: frozenset[tuple[str | None, str]]
    types: frozenset[tuple[str | None, str]]
    #: Relations by (schema or None, name), CTE names left out.
    relations: frozenset[tuple[str | None, str]]
    #: Constructs refused outright (TABLESAMPLE, ...), by node name.
    refused: frozenset[str]


_REFUSED_NODES = (ast.RangeTableSample, ast.RangeTableFunc)


def names_used(statement: ast.Node) -> NamesUsed:
    """Every function, operator, type and relation name ``statement`` refers to. Pure."""
    functions, operators, types, relations, refused = set(), set(), set(), set(), set()
    ctes = {node.ctename for node in _walk(statement) if isinstance(node, ast.CommonTableExpr)}
    for node in _walk(statement):
        if isinstance(node, ast.FuncCall):
            functions.add(_qualified(node.funcname))
        elif isinstance(node, ast.ColumnRef):
            names = [f.sval for f in node.fields or () if isinstance(f, ast.String)]
            if names:
                functions.add((None, names[-1]))
        elif isinstance(node, ast.A_Expr) and node.name:
            operators.add(_qualified(node.name))
        elif isinstance(node, ast.SubLink) and node.operName:
            operators.add(_qualified(node.operName))
        elif isinstance(node, ast.SortBy) and node.useOp:
            operators.add(_qualified(node.useOp))
        elif isinstance(node, ast.TypeName) and node.names:
            types.add(_qualified(node.names))
        elif isinstance(node, ast.RangeVar):
            if node.schemaname is None and node.relname in ctes:
                continue
            relations.add((node.schemaname, node.relname))
        elif isinstance(node, _REFUSED_NODES):
            refused.add(type(node).__name__)
    return NamesUsed(frozenset(functions), frozenset(operators), frozenset(types),
                     frozenset(relations), frozenset(refused))


def _qualified(names: Sequence[ast.Node]) -> tuple[str | None, str]:
    parts = [n.sval for n in names if isinstance(n, ast.String)]
    return (parts[-2] if len(parts) > 1 else None), parts[-1] if parts else ""


def unsafe_names(used: NamesUsed, outside_catalog: Mapping[str, frozenset[str]]) -> str | None:
    """Why the statement may run code that is not PostgreSQL's own, or None. Pure.

    ``outside_catalog``: per kind (``function``, ``operator``, ``type``), the names that exist
    in some schema other than pg_catalog. A name qualified with another schema, or defined
    outside pg_catalog anywhere, is refused: which one the planner would pick depends on
    search_path and argument types, so only a name nobody else defined is safe."""
    if used.refused:
        return "uses " + ", ".join(sorted(used.refused))
    for kind, names in (("function", used.functions), ("operator", used.operators),
                        ("type", used.types)):
        for schema, name in sorted(names, key=lambda n: (n[0] or "", n[1])):
            if schema not in (None, "pg_catalog"):
                return f"names the {kind} {schema}.{name}, outside pg_catalog"
            if name in outside_catalog.get(kind, frozenset()):
                return f"names the {kind} {name}, which is defined outside pg_catalog"
    return None


def candidates(statement: ast.SelectStmt, catalog: Mapping[tuple[str, str], Table]
               ) -> list[Candidate]:
    """The index that would serve each table of the query, if none does already."""
    tables = _from_tables(statement.fromClause or (), catalog)
    if not tables:
        return []
    predicates: dict[Table, _Predicates] = {table: _Predicates() for table in tables.values()}
    quals: list[ast.Node] = [statement.whereClause] if statement.whereClause else []
    quals.extend(_join_quals(statement.fromClause or ()))
    for qual in quals:
        for expr in _conjuncts(qual):
            _collect(expr, tables, predicates)
    for sort in statement.sortClause or ():
        column = _resolve(sort.node, tables)
        if column:
            _append(predicates[column[0]].order, column[1])
    found = []
    for table, preds in predicates.items():
        columns = list(preds.equality or preds.join)
        for name in (*preds.range[:1], *preds.order):
            _append(columns, name)
        columns = columns[:MAX_INDEX_COLUMNS]
        if columns and not _served(table, columns):
            found.append(Candidate(table.schema, table.name, tuple(columns)))
    return found[:MAX_CANDIDATES_PER_QUERY]


def recommend(measurements: Iterable[Measurement], min_saving: float,
              since: Mapping[tuple[str, str, tuple[str, ...]], datetime] | None = None,
              now: datetime | None = None) -> list[IndexRecommendation]:
    """The candidates that save at least ``min_saving`` of some query's cost, most total time
    saved first; a candidate that is a prefix of another recommended one is left out (the
    longer index serves its queries too)."""
    qualifying: dict[Candidate, list[Measurement]] = {}
    for m in measurements:
        if m.saving >= min_saving:
            qualifying.setdefault(m.candidate, []).append(m)
    chosen = [c for c in qualifying
              if not any(o != c and o.schema == c.schema and o.table == c.table
                         and o.columns[:len(c.columns)] == c.columns for o in qualifying)]
    recommendations = []
    for candidate in chosen:
        found = qualifying[candidate]
        heaviest = max(found, key=lambda m: m.stat.total_time_ms)
        key = (candidate.schema, candidate.table, candidate.columns)
        recommendations.append((
            sum(m.stat.total_time_ms * m.saving for m in found),
            IndexRecommendation(
                name=candidate.name, schema=candidate.schema, table=candidate.table,
                columns=list(candidate.columns), cost_before=round(heaviest.cost_before, 2),
                cost_after=round(heaviest.cost_after, 2), saving=round(heaviest.saving, 4),
                calls=sum(m.stat.calls for m in found),
                total_time_ms=round(sum(m.stat.total_time_ms for m in found), 3),
                query=_shorten(heaviest.stat.query),
                since=(since or {}).get(key, now))))
    recommendations.sort(key=lambda pair: pair[0], reverse=True)
    return [r for _, r in recommendations]


def _walk(node: Any) -> Iterable[ast.Node]:
    if isinstance(node, ast.Node):
        yield node
        for name in node:
            yield from _walk(getattr(node, name))
    elif isinstance(node, tuple):
        for item in node:
            yield from _walk(item)


def _from_tables(from_clause: Sequence[ast.Node], catalog: Mapping[tuple[str, str], Table]
                 ) -> dict[str, Table]:
    """Alias (or name) -> table, for the catalog tables the FROM clause names."""
    tables: dict[str, Table] = {}
    for item in from_clause:
        if isinstance(item, ast.JoinExpr):
            tables.update(_from_tables((item.larg, item.rarg), catalog))
        elif isinstance(item, ast.RangeVar):
            table = catalog.get((item.schemaname or "public", item.relname))
            if table is not None:
                tables[item.alias.aliasname if item.alias else item.relname] = table
    return tables


def _join_quals(from_clause: Sequence[ast.Node]) -> list[ast.Node]:
    quals = []
    for item in from_clause:
        if isinstance(item, ast.JoinExpr):
            if item.quals is not None:
                quals.append(item.quals)
            quals.extend(_join_quals((item.larg, item.rarg)))
    return quals


def _conjuncts(expr: ast.Node) -> Iterable[ast.Node]:
    """The ANDed parts of a condition (an OR is not one an index key can serve)."""
    if isinstance(expr, ast.BoolExpr) and expr.boolop == BoolExprType.AND_EXPR:
        for arg in expr.args:
            yield from _conjuncts(arg)
    else:
        yield expr


def _resolve(node: ast.Node, tables: Mapping[str, Table]) -> tuple[Table, str] | None:
    """The (table, column) a column reference names, when it is one of ours."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if not isinstance(node, ast.ColumnRef):
        return None
    names = [f.sval for f in node.fields if isinstance(f, ast.String)]
    if len(names) == 2 and names[0] in tables:
        table, column = tables[names[0]], names[1]
    elif len(names) == 1:
        owners = [t for t in tables.values() if names[0] in t.columns]
        if len(owners) != 1:
            return None
        table, column = owners[0], names[0]
    else:
        return None
    if column not in table.columns or not _IDENTIFIER.match(column):
        return None
    return table, column


def _collect(expr: ast.Node, tables: Mapping[str, Table],
             predicates: dict[Table, _Predicates]) -> None:
    if not isinstance(expr, ast.A_Expr):
        return
    operator = expr.name[-1].sval if expr.name else ""
    kind = expr.kind
    if kind == A_Expr_Kind.AEXPR_OP and operator in _EQUALITY:
        sides = [_resolve(side, tables) for side in (expr.lexpr, expr.rexpr)]
        joined = all(sides)
        for resolved in filter(None, sides):
            _append((predicates[resolved[0]].join if joined else
                     predicates[resolved[0]].equality), resolved[1])
    elif (kind == A_Expr_Kind.AEXPR_IN or (kind == A_Expr_Kind.AEXPR_OP_ANY
                                           and operator in _EQUALITY)):
        column = _resolve(expr.lexpr, tables)
        if column:
            _append(predicates[column[0]].equality, column[1])
    elif (kind == A_Expr_Kind.AEXPR_OP and operator in _RANGE) or kind in (
            A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN):
        for side in (expr.lexpr, expr.rexpr if kind == A_Expr_Kind.AEXPR_OP else None):
            column = _resolve(side, tables) if side is not None else None
            if column:
                _append(predicates[column[0]].range, column[1])


def _append(columns: list[str], column: str) -> None:
    if column not in columns:
        columns.append(column)


def _served(table: Table, columns: list[str]) -> bool:
    return any(existing[:len(columns)] == tuple(columns) for existing in table.indexes)


def _shorten(query: str) -> str:
    text = " ".join(query.split())
    return text if len(text) <= QUERY_TEXT_IN_STATUS else text[:QUERY_TEXT_IN_STATUS - 3] + "..."


# ----------------------------------------------------------------------------- database part

_TOP_QUERIES = """
SELECT s.query, s.calls, s.total_exec_time
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database() AND s.toplevel AND s.query ~* '^\\s*select\\s'
  AND s.userid = (SELECT oid FROM pg_roles WHERE rolname = %s)
ORDER BY s.total_exec_time DESC
LIMIT %s
"""

#: Names of each kind defined outside pg_catalog, among those a statement uses.
_OUTSIDE_CATALOG = """
SELECT 'function', proname::text FROM pg_proc
WHERE pronamespace <> 'pg_catalog'::regnamespace AND proname = ANY(%(functions)s)
UNION SELECT 'operator', oprname::text FROM pg_operator
WHERE oprnamespace <> 'pg_catalog'::regnamespace AND oprname = ANY(%(operators)s)
UNION SELECT 'type', typname::text FROM pg_type
WHERE typnamespace <> 'pg_catalog'::regnamespace AND typname = ANY(%(types)s)
"""

#: Per relation a statement names (as the planning session resolves it): what it is, and
#: whether planning it could run code that is not PostgreSQL's own - row-level security, child
#: tables, or an index, constraint, statistics object or policy using a function or operator
#: outside pg_catalog (the planner folds their expressions). Triggers and column defaults do
#: not run when a SELECT is planned.
_RELATIONS = """
SELECT r.schema, r.name, c.relkind, c.relrowsecurity OR c.relhassubclass OR EXISTS (
         SELECT 1 FROM pg_depend owned
         JOIN pg_depend uses ON uses.classid = owned.classid AND uses.objid = owned.objid
         LEFT JOIN pg_proc p ON uses.refclassid = 'pg_proc'::regclass AND p.oid = uses.refobjid
         LEFT JOIN pg_operator o ON uses.refclassid = 'pg_operator'::regclass
                                AND o.oid = uses.refobjid
         WHERE owned.refclassid = 'pg_class'::regclass AND owned.refobjid = c.oid
           AND owned.classid NOT IN ('pg_trigger'::regclass, 'pg_attrdef'::regclass)
           AND coalesce(p.pronamespace, o.oprnamespace) <> 'pg_catalog'::regnamespace)
FROM unnest(%s::text[], %s::text[]) AS r(schema, name)
LEFT JOIN pg_class c ON c.oid = to_regclass(
    CASE WHEN r.schema IS NULL THEN quote_ident(r.name)
         ELSE quote_ident(r.schema) || '.' || quote_ident(r.name) END)
"""

_TABLES = """
SELECT n.nspname, c.relname, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\\_%'
GROUP BY n.nspname, c.relname
"""

_INDEXES = """
SELECT n.nspname, t.relname,
       array(SELECT a.attname::text
             FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             WHERE k.position <= ix.indnkeyatts
             ORDER BY k.position)
FROM pg_index ix
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE ix.indisvalid AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
"""

_HYPOTHETICAL = """
SELECT indexrelid FROM hypopg_create_index(format('CREATE INDEX ON %%I.%%I (%%s)', %s::text,
       %s::text, (SELECT string_agg(quote_ident(c), ', ') FROM unnest(%s::text[]) AS c)))
"""


async def missing_extensions(conn: psycopg.AsyncConnection) -> list[str]:
    cur = await conn.execute("SELECT extname FROM pg_extension "
                             "WHERE extname IN ('pg_stat_statements', 'hypopg')")
    present = {row[0] for row in await cur.fetchall()}
    return [name for name in ("pg_stat_statements", "hypopg") if name not in present]


async def advise(conn: psycopg.AsyncConnection, *, application_role: str | None,
                 min_saving: float = DEFAULT_MIN_SAVING,
                 previous: Sequence[IndexRecommendation] = (), now: datetime | None = None
                 ) -> list[IndexRecommendation]:
    """Recommendations for the database ``conn`` is connected to, from the queries of
    ``application_role``. ``conn`` must be an autocommit session of its own, closed
    afterwards, with a short ``lock_timeout`` and ``statement_timeout`` (``LOCK_TIMEOUT_MS``,
    ``STATEMENT_TIMEOUT_MS``): the advisor changes its plan cache mode and leaves prepared
    statements in it. Its login must be a member of ``application_role``."""
    if application_role is None:
        raise AdvisorUnavailable(
            "the index advisor plans only the application's own queries, as the application: "
            "set database.applicationRole")
    missing = await missing_extensions(conn)
    if missing:
        raise AdvisorUnavailable(
            "the index advisor needs the extensions " + " and ".join(missing) +
            " in this database (CREATE EXTENSION " + "; CREATE EXTENSION ".join(missing) + ")")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    catalog = await _catalog(conn)
    cur = await conn.execute(_TOP_QUERIES, (application_role, TOP_QUERIES))
    stats = [QueryStat(query, calls, total) for query, calls, total in await cur.fetchall()]
    costing = _Costing(conn, application_role)
    measurements = []
    deadline = time.monotonic() + RUN_SECONDS
    try:
        for stat in stats:
            if time.monotonic() > deadline:
                break
            statement = parse_select(stat.query)
            if statement is None:
                continue
            found = candidates(statement, catalog)
            if not found or await unsafe(conn, statement) is not None:
                continue
            params = parameter_count(statement)
            before = await costing.cost(stat.query, params)
            if before is None:
                continue
            for candidate in found:
                after = await costing.cost(stat.query, params, candidate)
                if after is not None:
                    measurements.append(Measurement(stat, candidate, before, after))
    finally:
        await conn.execute("SELECT hypopg_reset()")
    since = {r.key: r.since for r in previous if r.since is not None}
    return recommend(measurements, min_saving, since, now)


async def unsafe(conn: psycopg.AsyncConnection, statement: ast.Node) -> str | None:
    """Why planning ``statement`` could run code that is not PostgreSQL's own, or None."""
    used = names_used(statement)
    cur = await conn.execute(_OUTSIDE_CATALOG, {
        "functions": sorted({n for _, n in used.functions}),
        "operators": sorted({n for _, n in used.operators}),
        "types": sorted({n for _, n in used.types})})
    outside: dict[str, set[str]] = {}
    for kind, name in await cur.fetchall():
        outside.setdefault(kind, set()).add(name)
    reason = unsafe_names(used, {k: frozenset(v) for k, v in outside.items()})
    if reason is not None:
        return reason
    relations = sorted(used.relations, key=lambda r: (r[0] or "", r[1]))
    cur = await conn.execute(_RELATIONS, ([s for s, _ in relations], [n for _, n in relations]))
    for schema, name, kind, runs_code in await cur.fetchall():
        shown = f"{schema}.{name}" if schema else name
        if kind != "r":
            return f"{shown} is not a plain table"
        if runs_code:
            return f"planning {shown} could run code outside pg_catalog"
    return None


async def _catalog(conn: psycopg.AsyncConnection) -> dict[tuple[str, str], Table]:
    cur = await conn.execute(_INDEXES)
    indexes: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for schema, table, columns in await cur.fetchall():
        indexes.setdefault((schema, table), []).append(tuple(columns))
    cur = await conn.execute(_TABLES)
    return {(schema, name): Table(schema, name, frozenset(columns),
                                  tuple(indexes.get((schema, name), ())))
            for schema, name, columns in await cur.fetchall()
            if _IDENTIFIER.match(schema) and _IDENTIFIER.match(name)}


@dataclass
class _Costing:
    """Planner costs of generic plans, each from a freshly prepared statement (a prepared
    statement caches its plan, which would not see a hypothetical index created later), each
    planned as the query's author: ``SET LOCAL ROLE`` to the application role in a read-only
    transaction with a statement timeout, rolled back."""

    conn: psycopg.AsyncConnection
    role: str
    prepared: int = 0

    async def cost(self, query: str, params: int, candidate: Candidate | None = None
                   ) -> float | None:
        self.prepared += 1
        name = sql.Identifier(f"perf_operator_advice_{self.prepared}")
        arguments = sql.SQL("({})").format(sql.SQL(", ").join([sql.NULL] * params)) if params \
            else sql.SQL("")
        try:
            async with self.conn.transaction(force_rollback=True):
                await self.conn.execute("SET TRANSACTION READ ONLY")
                await self.conn.execute(sql.SQL("SET LOCAL ROLE {}").format(
                    sql.Identifier(self.role)))
                await self.conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(STATEMENT_TIMEOUT_MS)))
                if candidate is not None:
                    await self.conn.execute(_HYPOTHETICAL, (candidate.schema, candidate.table,
                                                            list(candidate.columns)))
                await self.conn.execute(sql.SQL("PREPARE {} AS ").format(name) + sql.SQL(query))
                cur = await self.conn.execute(
                    sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}").format(name) + arguments)
                plan = (await one_row(cur))[0]
                await self.conn.execute(sql.SQL("DEALLOCATE {}").format(name))
        except psycopg.Error:
            return None  # parameter types PostgreSQL cannot infer, a lock, a timeout
        finally:
            if candidate is not None:
                await self.conn.execute("SELECT hypopg_reset()")
        return float(plan[0]["Plan"]["Total Cost"])
