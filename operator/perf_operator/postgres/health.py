"""Index health: which indexes cost writes and space without serving reads.

Pure analysis (``index_health``) of what ``observe_index_facts`` reads from the catalog:

* unused: no scan since the statistics were last reset, when they cover at least
  ``unused_min_age_seconds`` (a fresh reset says nothing); unique and primary-key indexes
  enforce something and are never unused;
* duplicate: the same method, key columns and predicate as another index of the table;
* overlap: its keys are the leading keys of another btree index with the same predicate
  (a left prefix), so that index serves its queries too; unique ones enforce something and
  are kept;
* bloated: larger than its estimate (rows x key width from ``pg_stats``, plus tuple overhead,
  at btree's fillfactor) by ``bloat_ratio`` and at least a megabyte; an estimate, labelled so;
* invalid: left by an interrupted concurrent build (one still running is not judged: the
  progress view names it).

``owner`` is the profile whose ownership marker the index carries: only those may ever be acted
on by the operator; the rest are reported.

Details round their figures (whole days, tens of percent) so that the reconciler's
``status.database.indexHealth`` (``health_status``) changes when the verdict does, not with every
query the application runs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from .indexes import Marker

#: Bytes per index tuple besides the key: the tuple header (8) and its line pointer (4).
TUPLE_OVERHEAD_BYTES = 12
BTREE_FILLFACTOR = 0.9
MIN_BLOAT_BYTES = 1 << 20


@dataclass(frozen=True)
class IndexFacts:
    schema: str
    table: str
    name: str
    method: str
    keys: tuple[str, ...]
    predicate: str | None
    unique: bool
    valid: bool
    scans: int
    size_bytes: int
    #: What the index would take freshly built (None: expression keys, no statistics).
    estimated_bytes: int | None
    #: Seconds the scan counters cover (since pg_stat_database.stats_reset or server start).
    stats_age_seconds: float
    comment: str | None = None

    @property
    def owner(self) -> str | None:
        marker = Marker.parse(self.comment)
        return marker.owner if marker else None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Finding:
    kind: str  # unused | duplicate | overlap | bloated | invalid
    index: str
    table: str
    size_bytes: int
    detail: str
    owner: str | None = None

    def as_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "table": self.table,
                "sizeBytes": self.size_bytes, "detail": self.detail, "owner": self.owner}


def index_health(indexes: Sequence[IndexFacts], *, unused_min_age_seconds: float,
                 bloat_ratio: float = 0.5) -> list[Finding]:
    findings: list[Finding] = []

    def add(kind: str, index: IndexFacts, detail: str) -> None:
        findings.append(Finding(kind, index.qualified, f"{index.schema}.{index.table}",
                                index.size_bytes, detail, index.owner))

    ordered = sorted(indexes, key=lambda i: (i.schema, i.table, i.name))
    for index in ordered:
        if not index.valid:
            add("invalid", index, "INVALID: an interrupted concurrent build; it is maintained "
                                  "on every write and never used")
            continue
        if (index.scans == 0 and not index.unique
                and index.stats_age_seconds >= unused_min_age_seconds):
            add("unused", index, f"0 scans in {index.stats_age_seconds // 86400:.0f} days of "
                                 f"statistics")
        peers = [o for o in ordered if o is not index and o.valid and o.table == index.table
                 and o.schema == index.schema and o.predicate == index.predicate]
        same = [o for o in peers if o.method == index.method and o.keys == index.keys]
        first = min([index, *same], key=lambda i: (not i.unique, i.name))
        if same and first is not index:
            add("duplicate", index, f"same definition as {first.qualified} "
                                    f"({', '.join(index.keys)})")
        elif index.method == "btree" and not index.unique:
            wider = [o for o in peers if o.method == "btree"
                     and len(o.keys) > len(index.keys) and o.keys[:len(index.keys)] == index.keys]
            if wider:
                add("overlap", index, f"its keys ({', '.join(index.keys)}) lead "
                                      f"{wider[0].qualified} ({', '.join(wider[0].keys)}), "
                                      f"which serves the same lookups")
        if (index.estimated_bytes and index.size_bytes >= MIN_BLOAT_BYTES
                and index.size_bytes * (1 - bloat_ratio) > index.estimated_bytes):
            excess = round((1 - index.estimated_bytes / index.size_bytes) * 10) * 10
            add("bloated", index, f"about {excess}% of it beyond its freshly built size "
                                  f"(estimate)")
    return findings


#: Findings listed in status (the counts cover all of them).
STATUS_FINDINGS_LIMIT = 50


def health_status(findings: Sequence[Finding]) -> dict[str, Any]:
    """``status.database.indexHealth``: a count per kind, and the findings, largest index first
    (sizes themselves move with every write, so they stay out of the status)."""
    counts = {kind: 0 for kind in ("unused", "duplicate", "overlap", "bloated", "invalid")}
    for finding in findings:
        counts[finding.kind] += 1
    listed = sorted(findings, key=lambda f: (-f.size_bytes, f.index, f.kind))
    return {**counts, "findings": [
        {key: value for key, value in f.as_data().items() if key != "sizeBytes" and value}
        for f in listed[:STATUS_FINDINGS_LIMIT]]}


def new_findings(health: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[str]:
    """``kind index`` of each finding listed now but not in the previous status: what a
    Warning Event announces once (not at every resync while it stays)."""
    def listed(status: Mapping[str, Any] | None) -> list[str]:
        return [f"{f['kind']} {f['index']}" for f in (status or {}).get("findings") or []]
    before = set(listed(previous))
    return [finding for finding in listed(health) if finding not in before]


_FACTS_QUERY = """
SELECT n.nspname, t.relname, c.relname, am.amname,
       array(SELECT pg_get_indexdef(x.indexrelid, k, true)
             FROM generate_series(1, x.indnkeyatts) k ORDER BY k),
       pg_get_expr(x.indpred, x.indrelid), x.indisunique OR x.indisprimary, x.indisvalid,
       coalesce(s.idx_scan, 0), pg_relation_size(c.oid),
       (SELECT sum(st.avg_width) FROM pg_attribute a
          JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = t.relname
                          AND st.attname = a.attname
         WHERE a.attrelid = t.oid AND a.attnum = ANY(x.indkey::int2[]))::bigint
         * CASE WHEN 0 = ANY(x.indkey::int2[]) THEN NULL ELSE 1 END,
       greatest(t.reltuples, 0)::bigint,
       extract(epoch FROM now() - coalesce(
           (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()),
           pg_postmaster_start_time())),
       d.description
FROM pg_index x
JOIN pg_class c ON c.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = c.oid
LEFT JOIN pg_description d
       ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  -- a concurrent build in progress is INVALID until it finishes: not a finding yet
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = c.oid)
"""


async def observe_index_facts(conn: psycopg.AsyncConnection) -> list[IndexFacts]:
    """Every index of the database's own schemas, with what ``index_health`` judges."""
    rows = await (await conn.execute(_FACTS_QUERY)).fetchall()
    facts = []
    for (schema, table, name, method, keys, predicate, unique, valid, scans, size, width,
         tuples, stats_age, comment) in rows:
        estimated = None
        if width is not None and tuples:
            estimated = int(tuples * (width + TUPLE_OVERHEAD_BYTES) / BTREE_FILLFACTOR) + 8192
        # pg_relation_size is NULL for an index dropped while the query ran (a build's
        # leftover being cleaned up): it is gone, not a finding.
        if size is None:
            continue
        facts.append(IndexFacts(schema, table, name, method, tuple(keys), predicate, unique,
                                valid, scans, size, estimated, float(stats_age), comment))
    return facts
