"""``kubectl perf status``: each profile as a tree of its parts and tenants, built from the
objects' status alone (pure: objects in, nodes out), rendered as text or data."""
from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.conditions import (ALERTS_READY, APP_CONFIG_READY, DATABASE_READY, OPTIMIZING, READY,
                              REDIS_READY, SCALING_READY)

#: The profile's parts, each with the condition that sums it up and the status key it fills.
PARTS: tuple[tuple[str, str, str | None], ...] = (
    ("database", DATABASE_READY, "database"),
    ("redis", REDIS_READY, "redis"),
    ("scaling", SCALING_READY, "scaling"),
    ("alerts", ALERTS_READY, "alerts"),
    ("app config", APP_CONFIG_READY, "appConfig"),
    ("optimizer", OPTIMIZING, "optimization"),
)

#: Signals whose target is a ceiling (the others, e.g. cache hit rate, are floors).
FLOOR_SIGNALS = frozenset({"cacheHitRate"})


@dataclass
class Node:
    """One line of the tree: a label, whether it is healthy (None: neutral), details, and the
    lines below it."""

    label: str
    ok: bool | None = None
    detail: str = ""
    children: list[Node] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.label, "detail": self.detail}
        if self.ok is not None:
            data["ok"] = self.ok
        if self.children:
            data["children"] = [child.as_data() for child in self.children]
        return data


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_), None)


def age(timestamp: str | None, now: datetime.datetime) -> str:
    """kubectl's short age: ``45s``, ``12m``, ``3h``, ``5d``."""
    if not timestamp:
        return "?"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _condition_node(label: str, obj: Mapping[str, Any], type_: str) -> Node:
    cond = condition(obj, type_)
    if cond is None:
        return Node(label, None, "not reported")
    # Optimizing and the like are True when all is well too; every type listed is "good" True
    return Node(label, cond.get("status") == "True",
                f"{type_}={cond.get('status')} {cond.get('reason', '')}: "
                f"{cond.get('message', '')}".rstrip(": "))


def _database_children(database: Mapping[str, Any]) -> list[Node]:
    nodes = []
    for index in database.get("indexes") or []:
        detail = index["phase"]
        progress = index.get("progress")
        if progress:
            detail += f" {progress['percent']}% ({progress['phase']})"
        elif index.get("sizeBytes") is not None:
            detail += f", {size(index['sizeBytes'])}, {index.get('scans', 0)} scans"
        if index.get("lastError"):
            detail += f", last error: {index['lastError']}"
        nodes.append(Node(f"index {index['name']}", index["phase"] == "Ready", detail))
    for setting in database.get("settings") or []:
        nodes.append(_setting_node(setting))
    health = database.get("indexHealth")
    if health:
        counts = ", ".join(f"{health[kind]} {kind}" for kind in
                           ("unused", "duplicate", "overlap", "bloated", "invalid")
                           if health.get(kind))
        node = Node("index health", not counts, counts or "nothing to report")
        node.children = [Node(f"{f['kind']} {f['index']}", None, f["detail"])
                         for f in health.get("findings") or []]
        nodes.append(node)
    return nodes


def _setting_node(setting: Mapping[str, Any]) -> Node:
    detail = f"{setting['state']}: {setting.get('desired')}"
    if setting.get("actual") not in (None, setting.get("desired")):
        detail += f" (actual {setting['actual']})"
    if setting.get("message"):
        detail += f", {setting['message']}"
    return Node(f"setting {setting['name']}", setting["state"] in ("Applied", "PendingRestart"),
                detail)


def _signal_nodes(optimization: Mapping[str, Any]) -> list[Node]:
    nodes = []
    for name, signal in sorted((optimization.get("signals") or {}).items()):
        value, target = signal.get("value"), signal.get("target")
        if signal.get("stale") or value is None:
            nodes.append(Node(f"signal {name}", None, f"stale: {signal.get('reason') or '-'}"))
            continue
        ok = None if target is None else (value >= target if name in FLOOR_SIGNALS
                                          else value <= target)
        goal = "" if target is None else f" (target {'≥' if name in FLOOR_SIGNALS else '≤'} " \
                                         f"{target:g})"
        nodes.append(Node(f"signal {name}", ok, f"{value:g}{goal}"))
    for recommendation in optimization.get("recommendations") or []:
        nodes.append(Node(f"recommends index {recommendation.get('name')}", None,
                          f"on {recommendation.get('table')} "
                          f"({', '.join(recommendation.get('columns') or [])})"))
    return nodes


def tenant_node(tenant: Mapping[str, Any], now: datetime.datetime) -> Node:
    spec, status = tenant.get("spec") or {}, tenant.get("status") or {}
    ready = condition(tenant, READY) or {}
    parts = [f"{ready.get('reason', 'NotReported')}", f"age {age(tenant['metadata'].get('creationTimestamp'), now)}"]
    table = status.get("table")
    if table:
        parts.append(f"record v{table['version']}")
    cache = status.get("cache")
    if cache:
        parts.append(f"cache {cache['keys']} keys, {size(cache['memoryBytes'])} of "
                     f"{size(cache.get('quotaBytes'))}")
    if ready.get("status") != "True" and ready.get("message"):
        parts.append(ready["message"])
    return Node(f"tenant {spec.get('tenantId')} ({tenant['metadata']['name']})",
                ready.get("status") == "True", ", ".join(parts))


def profile_tree(profile: Mapping[str, Any], tenants: Sequence[Mapping[str, Any]],
                 now: datetime.datetime) -> Node:
    """The profile's tree: its Ready condition, its parts (those its spec has) with their
    details, and its tenants."""
    meta, status = profile["metadata"], profile.get("status") or {}
    ready = condition(profile, READY) or {}
    root = Node(f"PerformanceProfile {meta['namespace']}/{meta['name']}",
                ready.get("status") == "True",
                f"Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}, "
                f"age {age(meta.get('creationTimestamp'), now)}")
    for label, type_, key in PARTS:
        if condition(profile, type_) is None and key not in status:
            continue
        node = _condition_node(label, profile, type_)
        if key == "database":
            node.children = _database_children(status.get("database") or {})
        elif key == "redis":
            node.children = [_setting_node(s) for s in (status.get("redis") or {}).get("settings") or []]
        elif key == "scaling":
            node.children = [Node(f"rule {r['name']}", r["state"] == "Applied",
                                  r["state"] + (f": {r['message']}" if r.get("message") else ""))
                             for r in (status.get("scaling") or {}).get("rules") or []]
        elif key == "optimization":
            node.children = _signal_nodes(status.get("optimization") or {})
        root.children.append(node)
    count = (status.get("tenants") or {}).get("count", len(tenants))
    tenants_node = Node(f"tenants ({count})", None,
                        f"websocket committed {(status.get('tenants') or {}).get('websocketCommitted', 0)}")
    tenants_node.children = [tenant_node(t, now) for t in sorted(
        tenants, key=lambda t: t["metadata"]["name"])]
    root.children.append(tenants_node)
    return root


def render(nodes: Sequence[Node], *, colour: bool) -> str:
    """The trees as text, with box-drawing branches; health in green/red only when ``colour``
    (a terminal), as ✓/✗ marks otherwise."""
    lines: list[str] = []

    def mark(node: Node) -> str:
        if node.ok is None:
            return " "
        if colour:
            return "\x1b[32m✓\x1b[0m" if node.ok else "\x1b[31m✗\x1b[0m"
        return "✓" if node.ok else "✗"

    def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        label = f"\x1b[1m{node.label}\x1b[0m" if colour and top else node.label
        lines.append(f"{prefix}{branch}{mark(node)} {label}  {node.detail}".rstrip())
        below = prefix if top else prefix + ("   " if last else "│  ")
        for i, child in enumerate(node.children):
            walk(child, below, i == len(node.children) - 1, False)

    for node in nodes:
        walk(node, "", True, True)
    return "\n".join(lines)
