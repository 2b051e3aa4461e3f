"""The optimizer's policy: pure decisions from readings, policy, state and time."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from perf_operator.api import PerformanceProfileSpec
from perf_operator.optimizer.policy import (Action, Policy, ScalingBounds, evaluate,
                                            signal_targets)
from perf_operator.optimizer.signals import SignalReading
from perf_operator.optimizer.state import (Adjustments, IndexRecommendation, OptimizerState,
                                           adjustments)

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)

POLICY = Policy(
    mode="Auto", targets=signal_targets(PerformanceProfileSpec()),
    cooldown=timedelta(seconds=60), changes_per_hour=6, healthy_window=timedelta(seconds=120),
    replicas_step=2, shedding_step=0.1, max_shedding=0.3,
    scaling=(ScalingBounds("web", 2, 7), ScalingBounds("worker", 3, 4)),
    cache_cleanup=True, connection_pruning=True)

HEALTHY = {"apiResponseTimeP95Ms": 120.0, "errorRate": 0.01, "memoryUsage": 0.5}


def readings(**values):
    """Fresh readings for the values given; None makes a signal stale."""
    return {name: SignalReading.fresh(v) if v is not None else SignalReading.missing("NoData")
            for name, v in {**HEALTHY, **values}.items()}


class Driver:
    """Feeds readings to the policy over time, carrying the state as the status would."""

    def __init__(self, policy: Policy = POLICY, state: OptimizerState | None = None):
        self.policy = policy
        self.state = state or OptimizerState()
        self.decisions = []
        #: What index health reports redundant, as the PostgreSQL reconciler last wrote it.
        self.redundant: dict[str, str] = {}

    def at(self, seconds: float, **values):
        evaluation = evaluate(readings(**values), self.policy, self.state,
                              T0 + timedelta(seconds=seconds), self.redundant)
        # the status round trip every reconcile goes through
        self.state = OptimizerState.from_status(evaluation.state.to_status())
        self.decisions.extend(evaluation.decisions)
        return evaluation

    @property
    def enforced(self) -> Adjustments:
        return adjustments(self.state.to_status())


def summary(decisions):
    return [(d.action.value, d.direction, d.cause) for d in decisions]


def test_latency_breach_raises_every_floor_step_by_step_within_the_rules_bounds():
    run = Driver()
    first = run.at(0, apiResponseTimeP95Ms=900)
    assert summary(first.decisions) == [("ScalingFloor", "Apply", "Breach")]
    assert first.decisions[0].value == 900 and first.decisions[0].threshold == 200
    assert run.enforced.min_replicas("web", 2, 7) == 4
    assert run.enforced.min_replicas("worker", 3, 4) == 4  # 3 + 2 capped at maxReplicas 4
    run.at(60, apiResponseTimeP95Ms=900)
    assert run.enforced.min_replicas("web", 2, 7) == 6
    run.at(120, apiResponseTimeP95Ms=900)
    assert run.enforced.min_replicas("web", 2, 7) == 7  # never beyond maxReplicas
    last = run.at(180, apiResponseTimeP95Ms=900)
    assert last.decisions == ()
    assert any("at its bound" in note for note in last.notes)


def test_cooldown_holds_the_next_step():
    run = Driver()
    run.at(0, apiResponseTimeP95Ms=900)
    held = run.at(30, apiResponseTimeP95Ms=900)
    assert held.decisions == ()
    assert any("cooling down" in note for note in held.notes)
    assert summary(run.at(61, apiResponseTimeP95Ms=900).decisions) == [
        ("ScalingFloor", "Apply", "Breach")]


def test_change_budget_per_hour():
    run = Driver(replace(POLICY, changes_per_hour=2, cooldown=timedelta(0),
                         scaling=(ScalingBounds("web", 1, 100),)))
    run.at(0, apiResponseTimeP95Ms=900)
    run.at(10, apiResponseTimeP95Ms=900)
    spent = run.at(20, apiResponseTimeP95Ms=900)
    assert spent.decisions == ()
    assert any("change budget of 2/h used" in note for note in spent.notes)
    assert run.enforced.min_replicas("web", 1, 100) == 5
    assert summary(run.at(3601, apiResponseTimeP95Ms=900).decisions) == [
        ("ScalingFloor", "Apply", "Breach")]


def test_reverts_step_by_step_after_the_healthy_window_and_a_stale_reading_resets_it():
    run = Driver(replace(POLICY, scaling=(ScalingBounds("web", 2, 10),)))
    run.at(0, apiResponseTimeP95Ms=900)
    run.at(60, apiResponseTimeP95Ms=900)
    assert run.enforced.min_replicas("web", 2, 10) == 6
    run.at(120)  # healthy from here (and the verification of the last step passes)
    assert run.at(200).decisions == ()  # 80 s healthy < 120 s window
    run.at(210, apiResponseTimeP95Ms=None)  # a stale reading breaks the streak
    run.at(220)
    assert run.at(330).decisions == ()  # 110 s since the streak restarted
    back = run.at(341)
    assert summary(back.decisions) == [("ScalingFloor", "Revert", "Healthy")]
    assert run.enforced.min_replicas("web", 2, 10) == 4
    assert run.at(380).decisions == ()  # cooldown between revert steps
    run.at(402)
    assert run.enforced == Adjustments()
    assert run.at(500).decisions == ()


def test_stale_data_freezes_and_never_triggers():
    run = Driver()
    nothing = run.at(0, memoryUsage=None, errorRate=None, apiResponseTimeP95Ms=None)
    assert nothing.decisions == ()
    run.at(10, errorRate=0.08)
    assert run.enforced.load_shedding == 0.1
    # the error rate vanishes: shedding neither grows nor is undone, however long it lasts
    for t in range(100, 2000, 100):
        assert run.at(t, errorRate=None).decisions == ()
    assert run.enforced.load_shedding == 0.1
    # memory pressure with stale memory data does not clean caches or prune connections
    assert run.at(2100, memoryUsage=None, errorRate=None).decisions == ()


def test_memory_pressure_levels():
    run = Driver(replace(POLICY, cooldown=timedelta(0)))
    assert summary(run.at(0, memoryUsage=0.87).decisions) == [
        ("CacheCleanup", "Apply", "Breach")]
    assert summary(run.at(10, memoryUsage=0.92).decisions) == [
        ("ConnectionPruning", "Apply", "Breach"), ("CacheCleanup", "Apply", "Breach")]
    emergency = run.at(20, memoryUsage=0.97)
    assert summary(emergency.decisions) == [
        ("ScalingFloor", "Apply", "Breach"), ("ConnectionPruning", "Apply", "Breach"),
        ("CacheCleanup", "Apply", "Breach")]
    assert emergency.decisions[0].signal == "memoryUsage"


def test_error_spike_sheds_load_up_to_the_bound_and_opens_the_breaker_when_critical():
    run = Driver(replace(POLICY, cooldown=timedelta(0)))
    spike = run.at(0, errorRate=0.2)
    assert summary(spike.decisions) == [("CircuitBreaker", "Apply", "Breach"),
                                        ("LoadShedding", "Apply", "Breach")]
    for t in (10, 20, 30, 40):
        run.at(t, errorRate=0.2)
    assert run.enforced.load_shedding == 0.3  # bounds.maxLoadSheddingFactor
    assert run.enforced.circuit_breaker
    assert run.enforced.shed(100, critical=False) == 70
    assert run.enforced.shed(100, critical=True) == 100


def test_an_action_that_made_things_worse_is_reverted_outside_the_budget_and_held():
    run = Driver(replace(POLICY, changes_per_hour=1))
    run.at(0, errorRate=0.08)
    assert run.enforced.load_shedding == 0.1
    worse = run.at(61, errorRate=0.2)  # after the cooldown: worse than 0.08
    assert summary(worse.decisions)[0] == ("LoadShedding", "Revert", "Worsened")
    assert worse.decisions[0].value == 0.2 and worse.decisions[0].threshold == 0.08
    assert run.enforced.load_shedding == 0.0  # despite the budget of 1/h being used
    # held: not tried again while the error rate stays high
    later = run.at(200, errorRate=0.08)
    assert not [d for d in later.decisions if d.action is Action.LOAD_SHEDDING]
    assert any("held" in note for note in later.notes)
    run.at(300)  # recovered: the hold is released
    assert not run.state.enforced.action("LoadShedding").held


def test_an_action_whose_signal_improved_stays():
    run = Driver()
    run.at(0, errorRate=0.08)
    assert run.at(61, errorRate=0.04).decisions == ()
    assert run.enforced.load_shedding == 0.1
    assert run.state.enforced.action("LoadShedding").verification is None


def test_recommend_mode_records_the_same_decisions_and_changes_nothing():
    script = [(0, {"apiResponseTimeP95Ms": 900, "errorRate": 0.2, "memoryUsage": 0.87}),
              (61, {"apiResponseTimeP95Ms": 900, "errorRate": 0.06}), (122, {}), (190, {}),
              (260, {}), (330, {})]
    auto, shadow = Driver(), Driver(replace(POLICY, mode="Recommend"))
    for t, values in script:
        auto.at(t, **values)
        shadow.at(t, **values)
    assert summary(shadow.decisions) == summary(auto.decisions)
    assert len(auto.decisions) > 4
    assert all(not d.applied for d in shadow.decisions)
    assert all(d.applied for d in auto.decisions)
    assert shadow.enforced == Adjustments()
    assert shadow.state.shadow.adjustments == auto.state.enforced.adjustments


def test_off_undoes_everything_at_once():
    run = Driver(replace(POLICY, cooldown=timedelta(0)))
    run.at(0, errorRate=0.2, apiResponseTimeP95Ms=900)
    assert not run.enforced.neutral
    run.policy = replace(POLICY, mode="Off")
    off = run.at(10, errorRate=0.2, apiResponseTimeP95Ms=900)
    assert {(d.action.value, d.cause) for d in off.decisions} == {
        ("ScalingFloor", "ModeOff"), ("LoadShedding", "ModeOff"), ("CircuitBreaker", "ModeOff")}
    assert run.enforced.neutral
    assert run.state.signals is None
    assert run.at(20, errorRate=0.2).decisions == ()


def test_paused_changes_nothing():
    run = Driver(replace(POLICY, paused=True))
    assert run.at(0, errorRate=0.5, memoryUsage=0.99).decisions == ()
    assert run.enforced.neutral


def test_adjustments_follow_bounds_the_user_lowers():
    run = Driver(replace(POLICY, cooldown=timedelta(0)))
    for t in (0, 10, 20):
        run.at(t, errorRate=0.07, apiResponseTimeP95Ms=900)
    assert run.enforced.load_shedding == 0.3
    run.policy = replace(POLICY, max_shedding=0.1, scaling=(ScalingBounds("web", 2, 3),))
    run.at(30)
    assert run.enforced.load_shedding == 0.1
    assert run.enforced.hpa_floors[0].rule == "web"
    assert run.enforced.min_replicas("web", 2, 3) == 3


def test_index_creation_one_per_evaluation_and_only_when_allowed():
    rec = dict(schema="public", columns=["tenant_id", "status"], cost_before=1000.0,
               cost_after=10.0, saving=0.99, calls=10, total_time_ms=50.0, query="select")
    state = OptimizerState(recommendations=[
        IndexRecommendation(name="a_idx", table="plugins", **rec),
        IndexRecommendation(name="b_idx", table="services", **rec)])
    assert Driver(POLICY, state).at(0).decisions == ()
    run = Driver(replace(POLICY, index_creation=True, cooldown=timedelta(0)), state)
    assert summary(run.at(0).decisions) == [("IndexCreation", "Apply", "Breach")]
    assert [i.name for i in run.enforced.indexes] == ["a_idx"]
    run.at(10)
    assert [i.index_spec()["name"] for i in run.enforced.indexes] == ["a_idx", "b_idx"]
    assert run.at(20).decisions == ()


def test_a_redundant_automatic_index_is_taken_back_once_and_never_added_again():
    rec = dict(schema="public", columns=["tenant_id", "status"], cost_before=1000.0,
               cost_after=10.0, saving=0.99, calls=10, total_time_ms=50.0, query="select")
    state = OptimizerState(recommendations=[
        IndexRecommendation(name="a_idx", table="plugins", **rec)])
    creating = replace(POLICY, index_creation=True, cooldown=timedelta(0))
    run = Driver(creating, state)
    run.at(0)
    assert [i.name for i in run.enforced.indexes] == ["a_idx"]
    run.redundant = {"public.a_idx": "unused, 0 scans in 7 days of statistics",
                     "public.declared_idx": "unused, 0 scans in 7 days of statistics"}
    assert run.at(10).decisions == ()  # not allowed to remove: it stays
    run.policy = replace(creating, index_removal=True)
    taken = run.at(20).decisions
    assert summary(taken) == [("IndexRemoval", "Revert", "Redundant")]
    assert taken[0].change == "take back index a_idx: unused, 0 scans in 7 days of statistics"
    assert run.enforced.indexes == [] and run.enforced.retired_indexes == ["a_idx"]
    run.redundant = {}
    assert run.at(30).decisions == ()  # still recommended, never built again
    assert run.enforced.indexes == []


def test_index_removal_waits_for_its_cooldown_and_the_change_budget():
    state = OptimizerState.model_validate({"enforced": {"adjustments": {"indexes": [
        {"name": n, "schema": "public", "table": "t", "columns": ["c"]}
        for n in ("a_idx", "b_idx")]}}})
    run = Driver(replace(POLICY, index_removal=True, cooldown=timedelta(seconds=60)), state)
    run.redundant = {"public.a_idx": "duplicate", "public.b_idx": "overlap"}
    assert summary(run.at(0).decisions) == [("IndexRemoval", "Revert", "Redundant")]
    assert run.at(30).decisions == ()  # cooling down
    assert summary(run.at(61).decisions) == [("IndexRemoval", "Revert", "Redundant")]
    assert run.enforced.retired_indexes == ["a_idx", "b_idx"]
    exhausted = Driver(replace(POLICY, index_removal=True, changes_per_hour=0), state)
    exhausted.redundant = run.redundant
    assert exhausted.at(0).decisions == ()


def test_index_advice_on_latency_or_database_time_breach_takes_no_budget():
    run = Driver(replace(POLICY, index_advice=True, changes_per_hour=0, scaling=()))
    advice = run.at(0, dbQueryTimeMs=900)
    assert summary(advice.decisions) == [("IndexAdvice", "Apply", "Breach")]
    assert run.at(30, dbQueryTimeMs=900).decisions == ()  # cooldown
    assert summary(run.at(61, apiResponseTimeP95Ms=900).decisions) == [
        ("IndexAdvice", "Apply", "Breach")]


def test_status_round_trip_is_stable():
    run = Driver()
    run.at(0, errorRate=0.2, apiResponseTimeP95Ms=900, memoryUsage=0.9)
    status = run.state.to_status()
    assert OptimizerState.from_status(status).to_status() == status


def test_a_small_move_is_noise_not_worse():
    run = Driver()
    run.at(0, errorRate=0.08)
    later = run.at(61, errorRate=0.087)  # +9 %, within the 10 % tolerance: not reverted
    assert summary(later.decisions) == [("LoadShedding", "Apply", "Breach")]  # next step
    assert run.enforced.load_shedding == 0.2


def test_switching_modes_never_carries_shadow_adjustments_into_force():
    run = Driver(replace(POLICY, mode="Recommend"))
    run.at(0, errorRate=0.08)
    assert run.state.shadow.adjustments.load_shedding == 0.1 and run.enforced.neutral
    run.policy = POLICY  # Auto: starts from what is really in force, the shadow is dropped
    auto = run.at(61, errorRate=0.08)
    assert run.state.shadow is None
    assert summary(auto.decisions) == [("LoadShedding", "Apply", "Breach")]
    assert run.enforced.load_shedding == 0.1
    run.policy = replace(POLICY, mode="Recommend")  # back: what is in force stays frozen
    shadow = run.at(122, errorRate=0.08)
    assert [d.applied for d in shadow.decisions] == [False]
    assert run.enforced.load_shedding == 0.1
    assert run.state.shadow.adjustments.load_shedding == 0.2


def test_a_removed_scaling_rule_loses_its_floor():
    run = Driver()
    run.at(0, apiResponseTimeP95Ms=900)
    assert {f.rule for f in run.enforced.hpa_floors} == {"web", "worker"}
    run.policy = replace(POLICY, scaling=(ScalingBounds("web", 2, 7),))
    run.at(10)
    assert {f.rule for f in run.enforced.hpa_floors} == {"web"}


def test_only_the_profiles_own_indexes_that_serve_nothing_are_redundant():
    from perf_operator.optimizer import redundant_indexes
    from tests.support.contexts import profile_context

    findings = [
        {"kind": "unused", "index": "public.a", "table": "public.t", "detail": "0 scans",
         "owner": "shop/web"},
        {"kind": "overlap", "index": "public.b", "table": "public.t", "detail": "leads c",
         "owner": "shop/web"},
        {"kind": "bloated", "index": "public.c", "table": "public.t", "detail": "80%",
         "owner": "shop/web"},
        {"kind": "duplicate", "index": "public.d", "table": "public.t", "detail": "same"},
        {"kind": "unused", "index": "public.e", "table": "public.t", "detail": "0 scans",
         "owner": "shop/other"},
    ]
    ctx = profile_context("shop", {}, name="web",
                          status={"database": {"indexHealth": {"findings": findings}}})
    assert redundant_indexes(ctx) == {"public.a": "unused, 0 scans",
                                      "public.b": "overlap, leads c"}
    assert redundant_indexes(profile_context("shop", {}, name="web")) == {}
