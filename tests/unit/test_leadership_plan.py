"""The pure election step: who creates, renews, takes over, waits, or gives up."""
from perf_operator.leadership import (Acquire, Create, LeaseRecord, LeaseTiming, Lost, Renew,
                                      Stalled, Wait,
                                      plan_lease_step)

TIMING = LeaseTiming(lease_duration=15, renew_deadline=10, retry_period=2)


def step(record, *, leading=False, now=100.0, observed_at=100.0, last_renewed=100.0,
         loop_beat=None):
    return plan_lease_step(record=record, identity="me", leading=leading, now=now,
                           observed_at=observed_at, last_renewed=last_renewed, timing=TIMING,
                           loop_beat=loop_beat)


def held_by(holder):
    return LeaseRecord(holder=holder, resource_version="7", transitions=2)


def test_no_lease_is_created():
    assert step(None) == Create()


def test_own_lease_is_renewed():
    assert step(held_by("me"), leading=True, now=105, last_renewed=100) == Renew()


def test_live_lease_of_another_is_waited_on():
    assert step(held_by("other"), now=110, observed_at=100) == Wait("other")


def test_expiry_is_measured_from_our_own_observation_not_the_renew_time():
    # 14.9 s after we saw this record it may still be renewed by a leader with a slow clock.
    assert step(held_by("other"), now=114.9, observed_at=100) == Wait("other")
    assert step(held_by("other"), now=115, observed_at=100) == Acquire()


def test_released_lease_is_taken_at_once():
    assert step(held_by(None), now=100, observed_at=100) == Acquire()
    assert step(held_by(""), now=100, observed_at=100) == Acquire()


def test_leader_that_missed_the_renew_deadline_gives_up_before_anyone_can_take_over():
    assert isinstance(step(held_by("me"), leading=True, now=110.1, last_renewed=100), Lost)
    assert TIMING.renew_deadline < TIMING.lease_duration


def test_standby_never_loses():
    assert step(held_by("other"), leading=False, now=500, observed_at=499,
                last_renewed=0) == Wait("other")


def test_test_mode_timing_is_short_and_keeps_the_safety_margin():
    fast = LeaseTiming.for_config(test_mode=True)
    assert fast.lease_duration <= 6  # a takeover well within the tests' waits
    assert fast.renew_deadline >= 4  # a loaded machine's API server may stall a few seconds
    assert fast.retry_period < fast.renew_deadline < fast.lease_duration
    assert LeaseTiming.for_config(test_mode=False) == LeaseTiming(15, 10, 2)


def test_a_busy_event_loop_keeps_the_lease():
    # renewals run on their own thread: a loop that beat 50 s ago is slow, not stuck
    assert step(held_by("me"), leading=True, now=105, last_renewed=104, loop_beat=55) == Renew()


def test_a_stuck_event_loop_gives_the_lease_up():
    lost = step(held_by("me"), leading=True, now=105, last_renewed=104, loop_beat=44.9)
    assert isinstance(lost, Lost) and "event loop has not run for 60s" in lost.reason


def test_a_replica_with_a_stuck_loop_takes_nothing():
    assert step(held_by("me"), now=105, loop_beat=0) == Stalled()
    assert step(None, now=105, loop_beat=0) == Stalled()
