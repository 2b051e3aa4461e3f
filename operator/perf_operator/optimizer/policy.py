"""What the optimizer decides: a pure function of the readings, the profile's policy, the state
it remembers and the time. No I/O, so every rule below is a unit test.

Triggers, from the seed guide (levels from the profile):

* error rate above its target: shed load (non-critical endpoints lose ``maxStep.loadShedding``
  of their rate limits per step, up to ``bounds.maxLoadSheddingFactor``); above the critical
  alert level also open the circuit breaker;
* API p95 latency above its target, or memory above ``memoryPressure.emergency``: raise every
  scaling rule's minReplicas by ``maxStep.replicas``, never above its maxReplicas; a latency or
  database-time breach also runs the index advisor;
* memory above ``memoryPressure.connectionPruning``: prune idle connections; above
  ``memoryPressure.cacheCleanup``: clean the over-quota tenants' API-response and search caches.

Safety rules, in the order they apply:

* stale data triggers nothing: an action fires only on a fresh reading past its level, and an
  adjustment is undone only after fresh readings met the target for the whole healthy window
  (a stale reading breaks the streak). So missing data freezes everything it would drive;
* every change waits for its action's cooldown and takes one unit of the hourly change budget;
  undoing a change that made things worse does neither (it returns to a known state);
* verification: when the cooldown after a change is over, the signal that caused it is compared
  with its value then; worse by more than ``WORSENED_TOLERANCE`` and the change is undone
  (cause ``Worsened``) and the action is held until that signal recovers. One-shot actions
  (cache cleanup, connection pruning) leave nothing to undo and are bounded by cooldown and
  budget alone; an index the optimizer added (one per evaluation, Auto with
  ``allowIndexCreation``) stays until optimization is turned off, or, with
  ``allowIndexRemoval``, until index health reports it serving nothing (``redundant``): it is
  then taken back, one per evaluation within cooldown and budget, and never added again;
* Recommend runs the same rules on a shadow copy of the adjustments, so it records the very
  decisions Auto would take, and nothing reads the shadow; Off undoes everything at once.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from .signals import SIGNAL_BY_NAME, SignalReading
from .state import (AUTOMATIC_INDEX_LIMIT, ActionState, Adjustments, HealthyStreak,
                    HistoryEntry, HpaFloor, IndexRecommendation, OptimizerState, Track,
                    Verification)


class Action(StrEnum):
    CIRCUIT_BREAKER = "CircuitBreaker"
    LOAD_SHEDDING = "LoadShedding"
    SCALING_FLOOR = "ScalingFloor"
    CONNECTION_PRUNING = "ConnectionPruning"
    CACHE_CLEANUP = "CacheCleanup"
    INDEX_ADVICE = "IndexAdvice"
    INDEX_CREATION = "IndexCreation"
    INDEX_REMOVAL = "IndexRemoval"


#: Actions that leave an adjustment in force, undone step by step once healthy. Cache cleanup
#: and connection pruning are one-shot; an index, once built, stays.
KNOBS = (Action.SCALING_FLOOR, Action.LOAD_SHEDDING, Action.CIRCUIT_BREAKER)

#: How much worse (relative to the value that caused the action) a signal must get after an
#: action for the action to count as having made things worse. Smaller moves are noise, or an
#: incident still developing in a rate window (which an action cannot be blamed for).
WORSENED_TOLERANCE = 0.10
BUDGET_WINDOW = timedelta(hours=1)

LATENCY = "apiResponseTimeP95Ms"
ERROR_RATE = "errorRate"
MEMORY = "memoryUsage"
DB_QUERY_TIME = "dbQueryTimeMs"

Cause = Literal["Breach", "Healthy", "Worsened", "ModeOff", "Redundant"]


@dataclass(frozen=True)
class ScalingBounds:
    rule: str
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class Policy:
    """The part of a profile the policy reads (see :meth:`from_spec`)."""

    mode: Literal["Off", "Recommend", "Auto"]
    #: Signal name -> the level it must meet to count as healthy (its target).
    targets: Mapping[str, float]
    paused: bool = False
    cooldown: timedelta = timedelta(minutes=5)
    changes_per_hour: int = 6
    healthy_window: timedelta = timedelta(minutes=10)
    replicas_step: int = 2
    shedding_step: float = 0.1
    max_shedding: float = 0.5
    scaling: tuple[ScalingBounds, ...] = ()
    error_rate_critical: float = 0.10
    cache_cleanup_level: float = 0.85
    connection_pruning_level: float = 0.90
    emergency_level: float = 0.95
    #: Which actions the profile makes possible (Redis, a database, the application's role).
    cache_cleanup: bool = False
    connection_pruning: bool = False
    index_advice: bool = False
    index_creation: bool = False
    index_removal: bool = False

    @classmethod
    def from_spec(cls, spec: Any, *, connection_pruning: bool) -> Policy:
        opt = spec.optimization
        return cls(
            mode=opt.mode, targets=signal_targets(spec), paused=spec.paused,
            cooldown=timedelta(seconds=opt.cooldown_seconds),
            changes_per_hour=opt.change_budget_per_hour,
            healthy_window=timedelta(seconds=opt.healthy_window_seconds),
            replicas_step=opt.max_step.replicas, shedding_step=opt.max_step.load_shedding,
            max_shedding=opt.bounds.max_load_shedding_factor,
            scaling=tuple(ScalingBounds(r.name, r.min_replicas, r.max_replicas)
                          for r in spec.scaling.rules),
            error_rate_critical=spec.alerts.thresholds.error_rate.critical,
            cache_cleanup_level=opt.memory_pressure.cache_cleanup,
            connection_pruning_level=opt.memory_pressure.connection_pruning,
            emergency_level=opt.memory_pressure.emergency,
            cache_cleanup=spec.redis is not None,
            connection_pruning=spec.database is not None and connection_pruning,
            index_advice=spec.database is not None,
            index_creation=spec.database is not None and opt.allow_index_creation,
            index_removal=spec.database is not None and opt.allow_index_removal)


def watched_signals(policy: Policy) -> tuple[str, ...]:
    """The signals this profile's policy acts on: their staleness freezes actions (and is
    reported as MetricsStale). The database time only matters with a database to advise on."""
    base = (LATENCY, ERROR_RATE, MEMORY)
    return (*base, DB_QUERY_TIME) if policy.index_advice else base


def signal_targets(spec: Any) -> dict[str, float]:
    """Each signal's target: the profile's ``targets`` where the seed gives one, else the
    warning level of its alert."""
    targets, alerts = spec.targets, spec.alerts.thresholds
    return {
        "apiResponseTimeP95Ms": targets.api_response_time_p95_ms,
        "apiResponseTimeMs": targets.api_response_time_ms,
        "errorRate": targets.error_rate,
        "dbQueryTimeMs": targets.db_query_time_ms,
        "poolUtilization": alerts.pool_utilization.warning,
        "memoryUsage": targets.memory_usage,
        "memoryGrowthMB": alerts.memory_growth_mb.warning,
        "websocketConnections": targets.websocket_connections,
        "messageRatePerMinute": alerts.message_rate_per_minute.warning,
        "cacheHitRate": targets.cache_hit_rate,
    }


def beyond(signal: str, value: float, level: float) -> bool:
    """Whether ``value`` is on the bad side of ``level`` for this signal."""
    return value < level if SIGNAL_BY_NAME[signal].worse == "lower" else value > level


def worsened(signal: str, before: float, now: float) -> bool:
    margin = WORSENED_TOLERANCE * abs(before)
    return beyond(signal, now, before - margin if SIGNAL_BY_NAME[signal].worse == "lower"
                  else before + margin)


@dataclass(frozen=True)
class Decision:
    action: Action
    direction: Literal["Apply", "Revert"]
    cause: Cause
    #: What changes, in one line (history, Events).
    change: str
    signal: str | None = None
    value: float | None = None
    threshold: float | None = None
    #: The adjustments after this decision, for actions that change them.
    adjustments: Adjustments | None = None
    #: False in Recommend mode: recorded, not done.
    applied: bool = True

    @property
    def budgeted(self) -> bool:
        """Whether it takes a unit of the change budget (and starts a cooldown)."""
        return self.action is not Action.INDEX_ADVICE and self.cause in ("Breach", "Healthy",
                                                                         "Redundant")

    def history_entry(self, at: datetime, result: str | None = None, *,
                      failed: bool = False) -> HistoryEntry:
        return HistoryEntry(at=at, action=self.action.value, direction=self.direction,
                            cause=self.cause, signal=self.signal, value=self.value,
                            threshold=self.threshold, change=self.change, applied=self.applied,
                            result=result, failed=failed)


@dataclass(frozen=True)
class Evaluation:
    decisions: tuple[Decision, ...]
    #: The state after the decisions (history is added once they were executed).
    state: OptimizerState
    #: Breaches not acted upon, and why (cooldown, budget, bounds, held).
    notes: tuple[str, ...] = ()


def evaluate(readings: Mapping[str, SignalReading], policy: Policy, state: OptimizerState,
             now: datetime, redundant: Mapping[str, str] | None = None) -> Evaluation:
    """``redundant``: ``schema.index`` -> why, for the indexes of this profile that index
    health reports serving nothing (``status.database.indexHealth``)."""
    state = state.model_copy(update={"healthy": _streaks(readings, policy, state, now)})
    if policy.paused:
        return Evaluation((), state, ("paused: nothing changes",))
    if policy.mode == "Off":
        return _turn_off(state)
    shadow = policy.mode == "Recommend"
    track = (state.shadow or state.enforced) if shadow else state.enforced
    run = _Run(policy, state, readings, now, _within_bounds(track, policy), applied=not shadow,
               redundant=dict(redundant or {}))
    run.verify()
    run.release_holds()
    run.trigger()
    run.relax()
    run.advise()
    run.retire_indexes()
    run.create_indexes()
    tracks = {"shadow": run.track} if shadow else {"enforced": run.track, "shadow": None}
    return Evaluation(tuple(run.decisions),
                      state.model_copy(update={**tracks, "mode": policy.mode,
                                               "last_evaluated_at": now}),
                      tuple(run.notes))


def _streaks(readings: Mapping[str, SignalReading], policy: Policy, state: OptimizerState,
             now: datetime) -> list[HealthyStreak]:
    streaks = []
    for signal, target in policy.targets.items():
        reading = readings.get(signal)
        if reading is not None and reading.value is not None and not beyond(signal,
                                                                             reading.value,
                                                                             target):
            streaks.append(HealthyStreak(signal=signal,
                                         since=state.healthy_since(signal) or now))
    return streaks


def _turn_off(state: OptimizerState) -> Evaluation:
    """Off: the spec alone is the truth again; every adjustment in force is undone at once,
    and nothing is measured (what the optimizer last saw is removed from status)."""
    current = state.enforced.adjustments
    decisions = []
    for action in (*KNOBS, Action.INDEX_CREATION):
        neutral = _restore(current, Adjustments(), action)
        if neutral != current:
            decisions.append(Decision(action, "Revert", "ModeOff",
                                      _describe(action, current, neutral), adjustments=neutral))
            current = neutral
    return Evaluation(tuple(decisions), state.model_copy(update={
        "enforced": Track(), "shadow": None, "mode": "Off", "last_evaluated_at": None,
        "signals": None, "healthy": [], "notes": [], "recommendations": []}))


def _within_bounds(track: Track, policy: Policy) -> Track:
    """The adjustments clamped to the bounds the spec declares now (a rule removed, a
    maximum lowered)."""
    adj = track.adjustments
    floors = []
    for bounds in policy.scaling:
        floor = adj.floor(bounds.rule)
        if floor is not None and floor > bounds.min_replicas:
            floors.append(HpaFloor(rule=bounds.rule,
                                   min_replicas=min(floor, bounds.max_replicas)))
    clamped = adj.model_copy(update={"hpa_floors": floors,
                                     "load_shedding": min(adj.load_shedding,
                                                          policy.max_shedding)})
    return track.model_copy(update={"adjustments": clamped})


def _restore(current: Adjustments, source: Adjustments, action: Action) -> Adjustments:
    """``current`` with the part ``action`` changes taken from ``source``."""
    part = {Action.SCALING_FLOOR: "hpa_floors", Action.LOAD_SHEDDING: "load_shedding",
            Action.CIRCUIT_BREAKER: "circuit_breaker", Action.INDEX_CREATION: "indexes"}[action]
    return current.model_copy(update={part: getattr(source, part)})


def _describe(action: Action, before: Adjustments, after: Adjustments) -> str:
    if action is Action.SCALING_FLOOR:
        rules = sorted({f.rule for f in (*before.hpa_floors, *after.hpa_floors)})
        return "minReplicas " + ", ".join(
            f"{rule} {before.floor(rule) or 'declared'}->{after.floor(rule) or 'declared'}"
            for rule in rules if before.floor(rule) != after.floor(rule))
    if action is Action.LOAD_SHEDDING:
        return (f"load shedding {before.load_shedding:g}->{after.load_shedding:g} "
                f"(non-critical endpoints keep {1 - after.load_shedding:.0%} of their limits)")
    if action is Action.CIRCUIT_BREAKER:
        return f"circuit breaker {'on' if after.circuit_breaker else 'off'}"
    if action is Action.INDEX_CREATION:
        added = [i for i in after.indexes if i not in before.indexes]
        removed = [i for i in before.indexes if i not in after.indexes]
        return "; ".join([*(f"create index {i.name} on {i.schema_}.{i.table} "
                            f"({', '.join(i.columns)})" for i in added),
                          *(f"stop managing index {i.name}" for i in removed)])
    raise ValueError(action)


_ONE_SHOT_CHANGES = {
    Action.CACHE_CLEANUP: "unlink the apiResponses and searchResults cache keys of the "
                          "over-quota tenants, largest excess first",
    Action.CONNECTION_PRUNING: "terminate the application role's idle connections",
    Action.INDEX_ADVICE: "look for missing indexes behind the slowest queries",
}

#: The signal an adjustment answers to when its bookkeeping names none.
_DEFAULT_CAUSE = {Action.SCALING_FLOOR: LATENCY, Action.LOAD_SHEDDING: ERROR_RATE,
                  Action.CIRCUIT_BREAKER: ERROR_RATE}


@dataclass
class _Run:
    """One evaluation on one track (enforced or shadow); collects the decisions."""

    policy: Policy
    state: OptimizerState
    readings: Mapping[str, SignalReading]
    now: datetime
    track: Track
    applied: bool
    #: ``schema.index`` -> why, for this profile's indexes index health reports redundant.
    redundant: dict[str, str] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ readings, gates

    def fresh(self, signal: str) -> float | None:
        reading = self.readings.get(signal)
        return None if reading is None or reading.stale else reading.value

    def breach(self, signal: str, level: float) -> float | None:
        """The signal's value when it is fresh and past ``level``."""
        value = self.fresh(signal)
        return value if value is not None and beyond(signal, value, level) else None

    def healthy_long_enough(self, signal: str) -> bool:
        since = self.state.healthy_since(signal)
        return since is not None and self.now - since >= self.policy.healthy_window

    def budget_left(self) -> int:
        recent = [t for t in self.track.changes if self.now - t < BUDGET_WINDOW]
        return self.policy.changes_per_hour - len(recent)

    def blocked(self, action: Action, *, budgeted: bool = True) -> str | None:
        """Why ``action`` may not change anything now, or None."""
        last = self.track.action(action).last_change_at
        if last is not None and self.now < last + self.policy.cooldown:
            return f"{action} cooling down until {(last + self.policy.cooldown).isoformat()}"
        if budgeted and self.budget_left() <= 0:
            return f"{action} waits: change budget of {self.policy.changes_per_hour}/h used"
        return None

    # ------------------------------------------------------------------ recording

    def record(self, decision: Decision, action_state: ActionState) -> None:
        self.decisions.append(decision)
        updates: dict[str, Any] = {}
        if decision.adjustments is not None:
            updates["adjustments"] = decision.adjustments
        if decision.budgeted:
            recent = [t for t in self.track.changes if self.now - t < BUDGET_WINDOW]
            updates["changes"] = [*recent, self.now]
        self.track = self.track.model_copy(update=updates).with_action(action_state)

    def apply_knob(self, action: Action, signal: str, value: float, threshold: float,
                   after: Adjustments) -> None:
        before = self.track.adjustments
        current = self.track.action(action)
        self.record(
            Decision(action, "Apply", "Breach", _describe(action, before, after), signal,
                     value, threshold, after, self.applied),
            current.model_copy(update={
                "last_change_at": self.now,
                "causes": sorted({*current.causes, signal}),
                "verification": Verification(signal=signal, value=value,
                                             due=self.now + self.policy.cooldown,
                                             before=before)}))

    def apply_once(self, action: Action, signal: str, value: float, threshold: float) -> None:
        self.record(Decision(action, "Apply", "Breach", _ONE_SHOT_CHANGES[action], signal,
                             value, threshold, None,
                             self.applied or action is Action.INDEX_ADVICE),
                    self.track.action(action).model_copy(update={"last_change_at": self.now}))

    # ------------------------------------------------------------------ steps

    def verify(self) -> None:
        """Undo a change whose signal got worse once its cooldown is over."""
        for state in list(self.track.actions):
            check = state.verification
            if check is None or self.now < check.due:
                continue
            value = self.fresh(check.signal)
            if value is None:
                continue  # no verdict without data; the check waits
            if not worsened(check.signal, check.value, value):
                self.track = self.track.with_action(state.model_copy(
                    update={"verification": None}))
                continue
            action = Action(state.action)
            current = self.track.adjustments
            restored = _restore(current, check.before, action)
            self.record(
                Decision(action, "Revert", "Worsened", _describe(action, current, restored),
                         check.signal, value, check.value, restored, self.applied),
                state.model_copy(update={"last_change_at": self.now, "held": True,
                                         "verification": None}))

    def release_holds(self) -> None:
        for state in list(self.track.actions):
            if state.held and all(self.state.healthy_since(s) for s in state.causes):
                still_active = _restore(self.track.adjustments, Adjustments(),
                                        Action(state.action)) != self.track.adjustments
                self.track = self.track.with_action(state.model_copy(update={
                    "held": False, "causes": state.causes if still_active else []}))

    def gate(self, action: Action, *, budgeted: bool = True) -> bool:
        if self.track.action(action).held:
            self.notes.append(f"{action} held: it made things worse until its signal recovers")
            return False
        reason = self.blocked(action, budgeted=budgeted)
        if reason:
            self.notes.append(reason)
        return reason is None

    def trigger(self) -> None:
        policy, adj = self.policy, self.track.adjustments
        errors = self.breach(ERROR_RATE, policy.error_rate_critical)
        if errors is not None and not adj.circuit_breaker and self.gate(Action.CIRCUIT_BREAKER):
            self.apply_knob(Action.CIRCUIT_BREAKER, ERROR_RATE, errors,
                            policy.error_rate_critical,
                            self.track.adjustments.model_copy(update={"circuit_breaker": True}))

        target = policy.targets[ERROR_RATE]
        errors = self.breach(ERROR_RATE, target)
        shedding = self.track.adjustments.load_shedding
        if errors is not None:
            if shedding >= policy.max_shedding:
                self.notes.append(f"{Action.LOAD_SHEDDING} at its bound "
                                  f"({policy.max_shedding:g})")
            elif self.gate(Action.LOAD_SHEDDING):
                raised = round(min(policy.max_shedding, shedding + policy.shedding_step), 4)
                self.apply_knob(Action.LOAD_SHEDDING, ERROR_RATE, errors, target,
                                self.track.adjustments.model_copy(
                                    update={"load_shedding": raised}))

        self.raise_floor()

        memory = self.breach(MEMORY, policy.connection_pruning_level)
        if memory is not None and policy.connection_pruning and self.gate(
                Action.CONNECTION_PRUNING):
            self.apply_once(Action.CONNECTION_PRUNING, MEMORY, memory,
                            policy.connection_pruning_level)
        memory = self.breach(MEMORY, policy.cache_cleanup_level)
        if memory is not None and policy.cache_cleanup and self.gate(Action.CACHE_CLEANUP):
            self.apply_once(Action.CACHE_CLEANUP, MEMORY, memory, policy.cache_cleanup_level)

    def raise_floor(self) -> None:
        policy = self.policy
        cause = next(((signal, value, level) for signal, level in
                      ((LATENCY, policy.targets[LATENCY]), (MEMORY, policy.emergency_level))
                      if (value := self.breach(signal, level)) is not None), None)
        if cause is None or not policy.scaling:
            return
        adj = self.track.adjustments
        floors = [HpaFloor(rule=b.rule, min_replicas=raised) for b in policy.scaling
                  if (raised := min(b.max_replicas, (adj.floor(b.rule) or b.min_replicas)
                                    + policy.replicas_step)) > b.min_replicas]
        if floors == adj.hpa_floors:
            self.notes.append(f"{Action.SCALING_FLOOR} at its bound: every rule's minReplicas "
                              f"is at its maxReplicas")
        elif self.gate(Action.SCALING_FLOOR):
            self.apply_knob(Action.SCALING_FLOOR, *cause,
                            adj.model_copy(update={"hpa_floors": floors}))

    def relax(self) -> None:
        """Undo one step of each adjustment whose signals stayed healthy for the window."""
        for action in KNOBS:
            current = self.track.adjustments
            if _restore(current, Adjustments(), action) == current:
                continue
            state = self.track.action(action)
            causes = state.causes or [_DEFAULT_CAUSE[action]]
            if state.verification is not None or not all(map(self.healthy_long_enough,
                                                             causes)):
                continue
            if not self.gate(action):
                continue
            after = self.step_back(action, current)
            done = _restore(after, Adjustments(), action) == after
            signal = causes[0]
            self.record(
                Decision(action, "Revert", "Healthy", _describe(action, current, after), signal,
                         self.fresh(signal), self.policy.targets[signal], after, self.applied),
                state.model_copy(update={"last_change_at": self.now,
                                         "causes": [] if done else state.causes}))

    def step_back(self, action: Action, adj: Adjustments) -> Adjustments:
        if action is Action.SCALING_FLOOR:
            floors = []
            for b in self.policy.scaling:
                floor = adj.floor(b.rule)
                if floor is not None and floor - self.policy.replicas_step > b.min_replicas:
                    floors.append(HpaFloor(rule=b.rule,
                                           min_replicas=floor - self.policy.replicas_step))
            return adj.model_copy(update={"hpa_floors": floors})
        if action is Action.LOAD_SHEDDING:
            return adj.model_copy(update={"load_shedding": round(
                max(0.0, adj.load_shedding - self.policy.shedding_step), 4)})
        return adj.model_copy(update={"circuit_breaker": False})

    def advise(self) -> None:
        """Run the index advisor on a latency or database-time breach (read-only: it runs in
        Recommend mode too, and takes no change budget)."""
        if not self.policy.index_advice:
            return
        cause = next(((signal, value, level) for signal, level in
                      ((LATENCY, self.policy.targets[LATENCY]),
                       (DB_QUERY_TIME, self.policy.targets[DB_QUERY_TIME]))
                      if (value := self.breach(signal, level)) is not None), None)
        if cause is not None and self.blocked(Action.INDEX_ADVICE, budgeted=False) is None:
            self.apply_once(Action.INDEX_ADVICE, *cause)

    def retire_indexes(self) -> None:
        """Take back one index the optimizer added that index health reports serving nothing;
        remembered so that the advisor's next recommendation of it is not built again."""
        if not self.policy.index_removal:
            return
        adj = self.track.adjustments
        gone = next((i for i in adj.indexes if f"{i.schema_}.{i.name}" in self.redundant), None)
        if gone is None or not self.gate(Action.INDEX_REMOVAL):
            return
        after = adj.model_copy(update={
            "indexes": [i for i in adj.indexes if i is not gone],
            "retired_indexes": [*adj.retired_indexes, gone.name][-AUTOMATIC_INDEX_LIMIT:]})
        self.record(
            Decision(Action.INDEX_REMOVAL, "Revert", "Redundant",
                     f"take back index {gone.name}: "
                     f"{self.redundant[f'{gone.schema_}.{gone.name}']}",
                     adjustments=after, applied=self.applied),
            self.track.action(Action.INDEX_REMOVAL).model_copy(
                update={"last_change_at": self.now}))

    def create_indexes(self) -> None:
        """Hand one recommended index per evaluation to the PostgreSQL reconciler."""
        if not self.policy.index_creation:
            return
        adj = self.track.adjustments
        skipped = {i.name for i in adj.indexes} | set(adj.retired_indexes)
        pending: list[IndexRecommendation] = [r for r in self.state.recommendations
                                              if r.name not in skipped]
        if pending and len(adj.indexes) >= AUTOMATIC_INDEX_LIMIT:
            self.notes.append(f"{Action.INDEX_CREATION} at its bound: {AUTOMATIC_INDEX_LIMIT} "
                              f"indexes added")
        elif pending and self.gate(Action.INDEX_CREATION):
            best = pending[0]
            after = adj.model_copy(update={"indexes": [*adj.indexes, best.automatic_index()]})
            self.record(
                Decision(Action.INDEX_CREATION, "Apply", "Breach",
                         _describe(Action.INDEX_CREATION, adj, after) +
                         f" (estimated saving {best.saving:.0%})",
                         adjustments=after, applied=self.applied),
                self.track.action(Action.INDEX_CREATION).model_copy(
                    update={"last_change_at": self.now}))
