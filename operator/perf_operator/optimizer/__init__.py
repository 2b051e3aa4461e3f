"""Auto-optimization driven by Prometheus: signals -> policy (pure) -> actions.

Two parts of the profile handler, sharing one reading per evaluation interval from the
operator-wide poller of the profile's Prometheus:

* :func:`reconcile_optimization` (condition ``Optimizing``, status ``optimization``): runs the
  policy once per interval, executes what it decided (cache cleanup, connection pruning, index
  advice; the adjustments take effect through the reconcilers that read them), records every
  decision as an Event and in the bounded history;
* :func:`reconcile_metrics` (condition ``MetricsStale``, True while a signal the policy acts on
  is stale, naming it).

The adjustments reach the HPAs, tenant tables, application config and indexes on those
reconcilers' next pass (they read the status as last written), i.e. within one resync.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..clock import utc_now
from .. import config, metrics
from ..api.conditions import (ACTION_FAILED, METRICS_STALE, OPTIMIZING, SIGNALS_FRESH,
                              SIGNALS_STALE, TURNED_OFF)
from ..postgres.connect import target_for_profile
from ..reconcile import Outcome, ProfileContext
from ..scrub import scrub
from ..secrets import SecretError, read_secret_keys
from ..targets import secret_namespace
from ..targets.policy import ConnectionRefused, admit_url
from ..status import reading_moved, round_reading
from . import actions, advisor
from .policy import Action, Decision, Policy, evaluate, watched_signals
from .signals import (PrometheusEndpoint, SignalReading, Snapshot, forget_profile, poller_for,
                      profile_queries)
from .state import (NOTES_LIMIT, RECOMMENDATION_LIMIT, Adjustments, OptimizerState, SignalStatus,
                    adjustments)

__all__ = ["Adjustments", "adjustments", "reconcile_metrics", "reconcile_optimization"]


#: An evaluation is due once this share of the interval has passed since the last one (the
#: readings' clock and the resync timer are not in step).
DUE_SHARE = 0.9


def evaluation_interval(spec: Any) -> float:
    """The profile's interval; test mode shortens it to the resync period. The resync timer
    is what calls the optimizer, so an interval shorter than the resync period (60 s outside
    test mode) is in effect the resync period."""
    interval = spec.optimization.interval_seconds
    if config.CONFIG.test_mode:
        return min(interval, config.CONFIG.resync_seconds)
    return interval


def _active(spec: Any) -> bool:
    return spec.optimization.mode != "Off" and spec.prometheus is not None


def _connection_pruning(spec: Any) -> tuple[str, int] | None:
    """(role, idle seconds) of the application's connections the optimizer may prune: the
    role from ``database.applicationRole``, the bound from ``optimization.idleConnectionSeconds``
    (without a role, pruning is off)."""
    if spec.database is None or spec.database.application_role is None:
        return None
    return spec.database.application_role, spec.optimization.idle_connection_seconds


def _policy(spec: Any) -> Policy:
    return Policy.from_spec(spec, connection_pruning=_connection_pruning(spec) is not None)


def _min_index_saving(spec: Any) -> float:
    return spec.optimization.min_index_saving


async def prometheus_endpoint(namespace: str, prometheus: Any) -> PrometheusEndpoint:
    """The Prometheus a profile names, with its credentials read from the profile's Secret (or
    the operator's namespace, for a PerformanceTarget's), after the connection policy vetted
    its URL (http or https, no credentials in it, an allowed host:
    ``targets.policy.admit_url``)."""
    await admit_url(prometheus.url, granted_by=prometheus.granted_by)
    namespace = secret_namespace(prometheus, namespace)
    credentials: tuple[str, str] | None = None
    ref = prometheus.secret_ref
    if ref is not None and ref.token_key:
        (token,) = await read_secret_keys(namespace, ref.name, ref.token_key)
        credentials = ("bearer", token) if token is not None else None
    elif ref is not None:
        user, password = await read_secret_keys(namespace, ref.name, ref.username_key,
                                                ref.password_key,
                                                identity_keys=(ref.username_key,))
        credentials = ("basic", f"{user}\0{password}")
    return PrometheusEndpoint(prometheus.url, prometheus.timeout_seconds, credentials,
                              granted_by=prometheus.granted_by)


async def _read(ctx: ProfileContext) -> tuple[Snapshot, dict[str, SignalReading]]:
    endpoint = await prometheus_endpoint(ctx.namespace, ctx.spec.prometheus)
    return await poller_for(endpoint).readings(ctx.namespace, ctx.name,
                                               profile_queries(ctx.spec),
                                               evaluation_interval(ctx.spec))


async def reconcile_metrics(ctx: ProfileContext) -> Outcome | None:
    """``MetricsStale``: True while a signal the policy acts on is stale, naming each (the
    others are reported as stale in status only: an application need not export every metric).

    The condition does not make the profile not Ready: stale metrics freeze the optimizer but
    leave everything the spec declares in place, and a profile applied before its application
    runs, or a Prometheus outage, must not turn every profile unhealthy (Argo CD, ``kubectl
    wait``). It has its own condition to alert on."""
    if not _active(ctx.spec):
        return None
    try:
        _, readings = await _read(ctx)
    except (SecretError, ConnectionRefused) as err:
        return _metrics(False, err.reason, str(err))
    watched = watched_signals(_policy(ctx.spec))
    stale = [f"{name} ({readings[name].reason})" for name in watched if readings[name].stale]
    if not stale:
        return _metrics(True, SIGNALS_FRESH, "the signals the optimizer acts on are fresh")
    return _metrics(False, SIGNALS_STALE,
                    "stale: " + "; ".join(stale) + ". Actions driven by them are frozen: no "
                    "load shedding, cache cleanup, connection pruning or scaling on missing "
                    "data, and no adjustment is undone.")


def _metrics(fresh: bool, reason: str, message: str) -> Outcome:
    return Outcome(METRICS_STALE, fresh, reason, message, abnormal_true=True,
                   affects_ready=False)


async def reconcile_optimization(ctx: ProfileContext) -> Outcome | None:
    spec = ctx.spec
    state = OptimizerState.from_status(ctx.status)
    if not _active(spec):
        forget_profile(ctx.namespace, ctx.name)
        return await _turn_off(ctx, state)
    try:
        snapshot, readings = await _read(ctx)
    except (SecretError, ConnectionRefused) as err:
        return Outcome(OPTIMIZING, False, err.reason, str(err))
    interval = evaluation_interval(spec)
    last = state.last_evaluated_at
    if last is not None and (snapshot.at - last).total_seconds() < DUE_SHARE * interval:
        return _outcome(state)
    policy = _policy(spec)
    evaluation = evaluate(readings, policy, state, snapshot.at, redundant_indexes(ctx))
    signals = {name: _steady_signal((state.signals or {}).get(name), SignalStatus(
                   value=reading.value, target=policy.targets.get(name), stale=reading.stale,
                   reason=reading.reason or None, observed_at=snapshot.at))
               for name, reading in readings.items()}
    evaluated = evaluation.state.model_copy(update={
        "notes": list(evaluation.notes)[:NOTES_LIMIT], "signals": signals})
    if not evaluation.decisions and _only_time_moved(state, evaluated):
        return _outcome(state)
    return _outcome(await _execute(ctx, evaluation.decisions, evaluated, snapshot.at))


#: Index health findings that mean an index serves nothing another index does not.
REDUNDANT_KINDS = frozenset({"unused", "duplicate", "overlap"})


def redundant_indexes(ctx: ProfileContext) -> dict[str, str]:
    """``schema.index`` -> why, for the indexes this profile owns that the PostgreSQL
    reconciler's index health (``status.database.indexHealth``) reports serving nothing."""
    owner = f"{ctx.namespace}/{ctx.name}"
    health = ((ctx.status.get("database") or {}).get("indexHealth") or {})
    return {f["index"]: f"{f['kind']}, {f['detail']}" for f in health.get("findings") or []
            if f.get("owner") == owner and f.get("kind") in REDUNDANT_KINDS}


def _steady_signal(previous: SignalStatus | None, current: SignalStatus) -> SignalStatus:
    """The reading as status shows it: the previous one (value and ``observedAt``) while the
    value stays within ``status.READING_TOLERANCE`` and nothing else about it changed, so that
    a steady signal costs no status write; else the new one, rounded."""
    if (previous is not None and (previous.stale, previous.reason, previous.target)
            == (current.stale, current.reason, current.target)
            and not reading_moved(previous.value, current.value)):
        return previous
    return current.model_copy(update={
        "value": None if current.value is None else round_reading(current.value)})


def _only_time_moved(previous: OptimizerState, evaluated: OptimizerState) -> bool:
    """An evaluation that changed nothing but ``lastEvaluatedAt`` is not written: the state
    stays as it was (the next resync evaluates again, at no cost but the pure policy). Not
    when the last evaluation's actions failed: a quiet one clears that failure."""
    failed = any(h.failed and h.at == previous.last_evaluated_at for h in previous.history)
    return (not failed and previous.last_evaluated_at is not None
            and evaluated.model_copy(update={"last_evaluated_at": previous.last_evaluated_at})
            == previous)


async def _turn_off(ctx: ProfileContext, state: OptimizerState) -> Outcome | None:
    """Optimization off (or no Prometheus to read): undo what is in force, then stay silent."""
    if state.mode in (None, "Off") and state.enforced.adjustments.neutral \
            and state.shadow is None:
        return None
    policy = replace(Policy.from_spec(ctx.spec, connection_pruning=False), mode="Off")
    now = utc_now().replace(microsecond=0)
    evaluation = evaluate({}, policy, state, now)
    return _outcome(await _execute(ctx, evaluation.decisions, evaluation.state, now))


async def _execute(ctx: ProfileContext, decisions: tuple[Decision, ...], state: OptimizerState,
                   at: datetime) -> OptimizerState:
    """Run the decisions that act at once, then record every decision (history, Event,
    metrics). A failed action keeps its cooldown and budget: retrying it every cycle would
    hammer a system that is already in trouble."""
    entries = []
    for decision in decisions:
        failed = False
        try:
            result, state = await _act(ctx, decision, state, at)
        except Exception as err:  # noqa: BLE001 - recorded in history, status and an Event
            result, failed = _bounded(scrub(err)), True
            ctx.logger.warning("optimizer action %s failed: %s", decision.action, result)
        entries.append(decision.history_entry(at, result, failed=failed))
        _report(ctx, decision, result, failed)
    return state.with_history(entries)


async def _act(ctx: ProfileContext, decision: Decision, state: OptimizerState, at: datetime
               ) -> tuple[str | None, OptimizerState]:
    spec = ctx.spec
    database = spec.database
    if decision.action is Action.INDEX_ADVICE and database is not None:
        target = await target_for_profile(ctx.namespace, ctx.name, database.resolved_connection)
        async with target.ddl_connection(lock_timeout_ms=advisor.LOCK_TIMEOUT_MS,
                                         statement_timeout_ms=advisor.STATEMENT_TIMEOUT_MS
                                         ) as conn:
            found = await advisor.advise(conn, application_role=database.application_role,
                                         min_saving=_min_index_saving(spec),
                                         previous=state.recommendations, now=at)
        state = state.model_copy(update={"recommendations": found[:RECOMMENDATION_LIMIT]})
        return (f"{len(found)} index recommendations: " +
                ", ".join(f"{r.name} (saves {r.saving:.0%})" for r in found[:5])
                if found else "no index would save enough"), state
    if not decision.applied:
        return "recorded only (Recommend mode)", state
    if decision.action is Action.CACHE_CLEANUP:
        return await actions.clean_caches(ctx.namespace, ctx.name, spec), state
    pruning = _connection_pruning(spec)
    if decision.action is Action.CONNECTION_PRUNING and pruning is not None and database:
        role, idle = pruning
        return await actions.prune_connections(database.resolved_connection, ctx.namespace,
                                               ctx.name, role, idle), state
    return None, state  # an adjustment: the owning reconciler applies it on its next pass


def _bounded(text: str, limit: int = 1024) -> str:
    """An error as status keeps it: bounded (the status schema bounds every string)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _report(ctx: ProfileContext, decision: Decision, result: str | None, failed: bool) -> None:
    evidence = ""
    if decision.signal is not None and decision.value is not None:
        evidence = f" ({decision.signal}={decision.value:g}"
        if decision.threshold is not None:
            evidence += f", level {decision.threshold:g}"
        evidence += f", {decision.cause})"
    outcome = f"; failed: {result}" if failed else f"; {result}" if result else ""
    message = f"{decision.action}: {decision.change}{evidence}{outcome}"
    if decision.cause == "Worsened" or failed:
        ctx.events.warning(f"Optimizer{'Failed' if failed else 'Worsened'}", message)
    elif not decision.applied:
        ctx.events.normal("OptimizerRecommended", message)
    else:
        ctx.events.normal("OptimizerReverted" if decision.direction == "Revert"
                          else "OptimizerApplied", message)
    metrics.optimizer_decision(decision.signal or "none",
                               f"{decision.action}/{decision.direction}")
    metrics.optimizer_action(decision.action.value, "failed" if failed else
                             "applied" if decision.applied else "skipped")


def _outcome(state: OptimizerState) -> Outcome:
    """The condition and status, from the state alone: between evaluations the same state
    gives the same outcome, so nothing is written. Actions of the last evaluation that failed
    make the condition (and the profile) not ready until the next evaluation."""
    status = state.to_status()
    failures = [f"{h.action}: {h.result}" for h in state.history
                if h.failed and h.at == state.last_evaluated_at]
    if failures:
        return Outcome(OPTIMIZING, False, ACTION_FAILED, "; ".join(failures), status)
    if state.mode == "Off":
        return Outcome(OPTIMIZING, True, TURNED_OFF,
                       "optimization is off: no adjustment in force", status)
    shadow = state.mode == "Recommend"
    track = state.shadow if shadow and state.shadow else state.enforced
    message = f"{state.mode}: {_describe(track.adjustments, shadow)}"
    if state.notes:
        message += "; " + "; ".join(state.notes)
    return Outcome(OPTIMIZING, True, state.mode or "Recommend", message, status)


def _describe(adj: Adjustments, shadow: bool) -> str:
    parts = [f"minReplicas {f.rule}={f.min_replicas}" for f in adj.hpa_floors]
    if adj.load_shedding:
        parts.append(f"load shedding {adj.load_shedding:g}")
    if adj.circuit_breaker:
        parts.append("circuit breaker on")
    parts.extend(f"index {i.name}" for i in adj.indexes)
    where = "would be in force" if shadow else "in force"
    return f"{where}: " + ", ".join(parts) if parts else f"no adjustment {where}"
