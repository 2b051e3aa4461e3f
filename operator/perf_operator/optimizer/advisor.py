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
    """The database lacks what the advisor needs; the message says what to install."""


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
        for column in (*preds.range[:1], *preds.order):
            _append(columns, column)
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
        for column in filter(None, sides):
            _append((predicates[column[0]].join if joined else
                     predicates[column[0]].equality), column[1])
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
ORDER BY s.total_exec_time DESC
LIMIT %s
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


async def advise(conn: psycopg.AsyncConnection, *, min_saving: float = DEFAULT_MIN_SAVING,
                 previous: Sequence[IndexRecommendation] = (), now: datetime | None = None
                 ) -> list[IndexRecommendation]:
    """Recommendations for the database ``conn`` is connected to. ``conn`` must be an
    autocommit session of its own, closed afterwards, with a short ``lock_timeout`` and
    ``statement_timeout`` (``LOCK_TIMEOUT_MS``, ``STATEMENT_TIMEOUT_MS``): the advisor changes
    its plan cache mode and leaves prepared statements in it."""
    missing = await missing_extensions(conn)
    if missing:
        raise AdvisorUnavailable(
            "the index advisor needs the extensions " + " and ".join(missing) +
            " in this database (CREATE EXTENSION " + "; CREATE EXTENSION ".join(missing) + ")")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    catalog = await _catalog(conn)
    cur = await conn.execute(_TOP_QUERIES, (TOP_QUERIES,))
    stats = [QueryStat(query, calls, total) for query, calls, total in await cur.fetchall()]
    costing = _Costing(conn)
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
            if not found:
                continue
            params = parameter_count(statement)
            before = await costing.cost(stat.query, params)
            if before is None:
                continue
            for candidate in found:
                after = await costing.cost_with(candidate, stat.query, params)
                if after is not None:
                    measurements.append(Measurement(stat, candidate, before, after))
    finally:
        await conn.execute("SELECT hypopg_reset()")
    since = {r.key: r.since for r in previous if r.since is not None}
    return recommend(measurements, min_saving, since, now)


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
    statement caches its plan, which would not see a hypothetical index created later)."""

    conn: psycopg.AsyncConnection
    prepared: int = 0

    async def cost(self, query: str, params: int) -> float | None:
        self.prepared += 1
        name = sql.Identifier(f"perf_operator_advice_{self.prepared}")
        arguments = sql.SQL("({})").format(sql.SQL(", ").join([sql.NULL] * params)) if params \
            else sql.SQL("")
        try:
            await self.conn.execute(sql.SQL("PREPARE {} AS ").format(name) + sql.SQL(query))
            cur = await self.conn.execute(
                sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}").format(name) + arguments)
            plan = (await cur.fetchone())[0]
            await self.conn.execute(sql.SQL("DEALLOCATE {}").format(name))
        except psycopg.Error:
            return None  # parameter types PostgreSQL cannot infer, a lock, a timeout
        return float(plan[0]["Plan"]["Total Cost"])

    async def cost_with(self, candidate: Candidate, query: str, params: int) -> float | None:
        cur = await self.conn.execute(_HYPOTHETICAL, (candidate.schema, candidate.table,
                                                      list(candidate.columns)))
        (oid,) = await cur.fetchone()
        try:
            return await self.cost(query, params)
        finally:
            await self.conn.execute("SELECT hypopg_drop_index(%s)", (oid,))
