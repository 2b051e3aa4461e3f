"""``status.optimization`` of a PerformanceProfile: the optimizer's memory.

Status is the only place an operator replica can keep state that survives a restart or a
failover, and it is where a person looks: what the optimizer measured, what it changed and why,
what it would change. So everything it remembers between evaluations is here, typed:

* ``signals``: the last reading of each signal next to its target (``kubectl get pp -o wide``);
* ``enforced``: the adjustments in force (Auto mode), with each action's bookkeeping (last
  change, the signals behind it, a pending verification) and the change budget's window;
* ``shadow``: the same for Recommend mode: what *would* be in force. Never read by the
  reconcilers, so Recommend runs the same policy and changes nothing;
* ``healthy``: since when each signal has met its target (the hysteresis window);
* ``history``: the last decisions with the signal value that caused them;
* ``recommendations``: index recommendations from the advisor.

The adjustments are not a second path to PostgreSQL, Redis or Kubernetes: the reconcilers that
own the HPAs, the tenant tables, the application config and the indexes call
:func:`adjustments` on the profile's status when they compute what they desire.

Every optional field is dumped as None when unset: the status patch is a JSON merge patch, and
only an explicit null removes a field that was written before.

These models are part of the API (the CRD's status schema is generated from them); the
optimizer (``perf_operator.optimizer``) imports them from here. Every list and string is
bounded for the CRD, and the optimizer never produces more than the bounds allow.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from .schema import StatusModel
from .tenant import shed_requests

#: Decisions kept in ``status.optimization.history``, newest last.
HISTORY_LIMIT = 50
#: Index recommendations kept, best first.
RECOMMENDATION_LIMIT = 20
#: Indexes the optimizer adds at most (Auto with allowIndexCreation); then it stops adding.
AUTOMATIC_INDEX_LIMIT = 20
#: Changes of the change budget's window at most (``changeBudgetPerHour`` is at most 60).
CHANGES_LIMIT = 64
#: Notes of one evaluation at most.
NOTES_LIMIT = 32

_Name = Annotated[str, StringConstraints(max_length=253)]
_Text = Annotated[str, StringConstraints(max_length=32_768)]
_SignalName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z][a-zA-Z0-9]*$",
                                               max_length=63)]
_Columns = Annotated[list[_Name], Field(max_length=32)]


class SignalStatus(StatusModel):
    """The last reading of one signal, next to the profile's target for it."""

    value: float | None = Field(None, description="Last value; absent while the signal is "
                                                  "stale (missing data is never shown as 0).")
    target: float | None = Field(None, description="The profile's target for the signal.")
    stale: bool = Field(False, description="The query failed, returned nothing for this "
                                           "profile or returned NaN.")
    reason: _Text | None = Field(None, description="Why the signal is stale.")
    observed_at: datetime | None = Field(None, description="When Prometheus evaluated it.")


class HpaFloor(StatusModel):
    """A raised minReplicas of one scaling rule."""

    rule: _Name = Field(description="Name of the scaling rule.")
    min_replicas: int = Field(ge=1, description="minReplicas the HPA gets instead of the "
                                                "rule's own, never above its maxReplicas.")


class AutomaticIndex(StatusModel):
    """An index the optimizer asks the PostgreSQL reconciler to build (Auto mode with
    allowIndexCreation): built and marked like a declared index, flagged as automatic."""

    name: _Name = Field(description="Index name.")
    schema_: _Name = Field("public", alias="schema", description="Schema of the table.")
    table: _Name = Field(description="Table.")
    columns: _Columns = Field(description="Key columns, in order.")

    def index_spec(self) -> dict[str, Any]:
        """The index in the shape of ``spec.database.indexes[]``."""
        return {"name": self.name, "schema": self.schema_, "table": self.table,
                "columns": [{"column": column} for column in self.columns]}


class Adjustments(StatusModel):
    """What the optimizer changes on top of the spec. Neutral values change nothing."""

    hpa_floors: list[HpaFloor] = Field(default_factory=list, max_length=64,
                                       description="Raised minReplicas per scaling rule.")
    load_shedding: float = Field(0.0, ge=0, le=1,
                                 description="Share of their budget taken from non-critical "
                                             "endpoints' rate limits (0: none).")
    circuit_breaker: bool = Field(False, description="Circuit breaker flag of the application "
                                                     "config.")
    indexes: list[AutomaticIndex] = Field(default_factory=list,
                                          max_length=AUTOMATIC_INDEX_LIMIT,
                                          description="Indexes the optimizer added.")
    retired_indexes: list[_Name] = Field(
        default_factory=list, max_length=AUTOMATIC_INDEX_LIMIT,
        description="Indexes the optimizer took back as serving nothing (allowIndexRemoval), "
                    "newest last: never added again while optimization stays on.")

    def floor(self, rule: str) -> int | None:
        return next((f.min_replicas for f in self.hpa_floors if f.rule == rule), None)

    def min_replicas(self, rule: str, declared_min: int, declared_max: int) -> int:
        """The minReplicas an HPA should have: the rule's own, raised by the optimizer, never
        above the rule's maxReplicas."""
        return max(declared_min, min(self.floor(rule) or declared_min, declared_max))

    def shed(self, requests: int, *, critical: bool) -> int:
        """A rate limit after load shedding: critical endpoints keep theirs, the others lose
        ``load_shedding`` of it (``api.tenant.effective_limits`` sheds a tenant's limits)."""
        return requests if critical else shed_requests(requests, self.load_shedding)

    @property
    def neutral(self) -> bool:
        return self == Adjustments()


class Verification(StatusModel):
    """A check due after an action: did its signal move the right way?"""

    signal: _Name = Field(description="The signal that caused the action.")
    value: float = Field(description="Its value when the action was taken.")
    due: datetime = Field(description="When to compare.")
    before: Adjustments = Field(description="The adjustments before the action, restored if it "
                                            "made things worse.")


class ActionState(StatusModel):
    """Bookkeeping of one action."""

    action: _Name = Field(description="Action name.")
    last_change_at: datetime | None = Field(None, description="Last time it changed something "
                                                              "(cooldown).")
    causes: list[_Name] = Field(default_factory=list, max_length=32,
                                description="Signals behind the adjustment in force; all must "
                                            "be healthy for the healthy window before it is "
                                            "undone.")
    held: bool = Field(False, description="It made things worse: not taken again until its "
                                          "signal has recovered.")
    verification: Verification | None = Field(None, description="Pending check of the last "
                                                                 "change.")


class Track(StatusModel):
    """Adjustments and their bookkeeping: the enforced ones (Auto) or the shadow (Recommend)."""

    adjustments: Adjustments = Field(default_factory=Adjustments,
                                     description="The adjustments.")
    actions: list[ActionState] = Field(default_factory=list, max_length=16,
                                       description="Per action.")
    changes: list[datetime] = Field(default_factory=list, max_length=CHANGES_LIMIT,
                                    description="Times of the changes in the last hour (change "
                                                "budget).")

    def action(self, name: str) -> ActionState:
        return next((a for a in self.actions if a.action == name), ActionState(action=name))

    def with_action(self, state: ActionState) -> Track:
        others = [a for a in self.actions if a.action != state.action]
        return self.model_copy(update={"actions": sorted([*others, state],
                                                         key=lambda a: a.action)})


class HealthyStreak(StatusModel):
    """A signal that has met its target, and since when."""

    signal: _Name = Field(description="Signal name.")
    since: datetime = Field(description="Since when it has met its target without a gap.")


class HistoryEntry(StatusModel):
    """One decision, with the evidence."""

    at: datetime = Field(description="When it was taken.")
    action: _Name = Field(description="ScalingFloor, LoadShedding, CircuitBreaker, CacheCleanup, "
                                      "ConnectionPruning, IndexAdvice, IndexCreation, "
                                      "IndexRemoval.")
    direction: Literal["Apply", "Revert"] = Field(description="Apply: act on a breach. Revert: "
                                                              "undo one step.")
    cause: Literal["Breach", "Healthy", "Worsened", "ModeOff", "Redundant"] = Field(
        description="Breach: a signal crossed its level. Healthy: the signals behind an "
                    "adjustment met their targets for the healthy window. Worsened: the action "
                    "made its signal worse. ModeOff: optimization was turned off. Redundant: "
                    "index health reports an index the optimizer added serving nothing.")
    signal: _Name | None = Field(None, description="The signal behind the decision.")
    value: float | None = Field(None, description="Its value.")
    threshold: float | None = Field(None, description="The level it was compared with.")
    change: _Text = Field(description="What changes, in one line.")
    applied: bool = Field(description="False in Recommend mode: recorded, not done.")
    result: _Text | None = Field(None, description="What the action did, or why it failed.")
    failed: bool = Field(False, description="The action was attempted and failed.")


class IndexRecommendation(StatusModel):
    """An index the advisor found worth building, checked with a hypothetical index."""

    name: _Name = Field(description="Proposed index name.")
    schema_: _Name = Field("public", alias="schema", description="Schema of the table.")
    table: _Name = Field(description="Table.")
    columns: _Columns = Field(description="Key columns, in order.")
    cost_before: float = Field(description="Planner cost of the heaviest query it serves, "
                                           "without the index.")
    cost_after: float = Field(description="The same with the hypothetical index.")
    saving: float = Field(description="Share of that cost saved (0-1).")
    calls: int = Field(description="Calls of the queries it serves (pg_stat_statements).")
    total_time_ms: float = Field(description="Their total execution time, in ms.")
    query: _Text = Field(description="The heaviest query it serves, normalised, shortened.")
    since: datetime | None = Field(None, description="First time it was recommended.")

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.schema_, self.table, tuple(self.columns))

    def automatic_index(self) -> AutomaticIndex:
        return AutomaticIndex(name=self.name, schema=self.schema_, table=self.table,
                              columns=self.columns)


class OptimizerState(StatusModel):
    """What the optimizer measured, keeps in force (or would, in Recommend mode), decided and
    recommends."""

    mode: Literal["Off", "Recommend", "Auto"] | None = Field(None, description="Mode of the "
                                                                               "last evaluation.")
    last_evaluated_at: datetime | None = Field(None, description="When the policy last ran.")
    signals: dict[_SignalName, SignalStatus] | None = Field(
        None, max_length=32, description="Last reading per signal (stale ones without a "
                                         "value).")
    enforced: Track = Field(default_factory=Track, description="Adjustments in force.")
    shadow: Track | None = Field(None, description="Recommend mode: what would be in force.")
    healthy: list[HealthyStreak] = Field(default_factory=list, max_length=32,
                                         description="Signals meeting their targets, since when.")
    notes: list[_Text] = Field(default_factory=list, max_length=NOTES_LIMIT,
                               description="Breaches the last evaluation did not act upon, and "
                                           "why (cooldown, change budget, bounds, held).")
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT,
                                        description="Recent decisions, newest last.")
    recommendations: list[IndexRecommendation] = Field(
        default_factory=list, max_length=RECOMMENDATION_LIMIT,
        description="Index recommendations, best first.")

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> OptimizerState:
        return cls.model_validate((status or {}).get("optimization") or {})

    def to_status(self) -> dict[str, Any]:
        """The status fragment, with explicit nulls for what is unset (see module doc), but
        none inside lists: a list is replaced whole, and the API server drops the nulls of its
        items, so a null kept there would differ from the stored status on every pass."""
        return {"optimization": _no_nulls_in_lists(
            self.model_dump(mode="json", by_alias=True, exclude_none=False))}

    def healthy_since(self, signal: str) -> datetime | None:
        return next((h.since for h in self.healthy if h.signal == signal), None)

    def with_history(self, entries: list[HistoryEntry]) -> OptimizerState:
        return self.model_copy(update={"history": [*self.history, *entries][-HISTORY_LIMIT:]})


def _no_nulls_in_lists(value: Any, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _no_nulls_in_lists(v, in_list) for k, v in value.items()
                if not (in_list and v is None)}
    if isinstance(value, list):
        return [_no_nulls_in_lists(item, True) for item in value]
    return value


def adjustments(status: Mapping[str, Any] | None) -> Adjustments:
    """The optimizer's adjustments in force for a profile, from its status as last written.

    For the reconcilers that compute the desired HPAs (``min_replicas``), tenant tables
    (``load_shedding``, see ``api.tenant.effective_limits``), application config (``circuit_breaker``, ``load_shedding``) and indexes
    (``indexes``). Recommend mode's shadow adjustments are never returned, and a status without
    optimization yields neutral adjustments."""
    optimization = (status or {}).get("optimization") or {}
    return Adjustments.model_validate((optimization.get("enforced") or {}).get("adjustments")
                                      or {})
