"""The Redis settings planner: what is sent, what is never sent, what counts as drift."""
from __future__ import annotations

import pytest

from perf_operator.redis.settings import SetConfig, normalize, plan_settings, same_value


@pytest.mark.parametrize("name, desired, observed", [
    ("maxmemory", "256mb", "268435456"),
    ("maxmemory", "1gb", "1073741824"),
    ("maxmemory", "1G", "1000000000"),
    ("maxmemory", "0", "0"),
    ("maxmemory-policy", "ALLKEYS-LRU", "allkeys-lru"),
    ("save", "300 10  60 1000", "300 10 60 1000"),
    ("save", "", ""),
    ("appendonly", "YES", "yes"),
    ("timeout", "0300", "300"),
    ("notify-keyspace-events", "Ex", "xE"),
    ("notify-keyspace-events", "AK", "g$lshzxetdK"),
])
def test_values_are_compared_the_way_redis_reports_them(name, desired, observed):
    assert same_value(name, desired, observed)


def test_different_values_differ():
    assert not same_value("maxmemory", "256mb", "256000000")
    assert not same_value("timeout", "300", "0")
    assert not same_value("timeout", "300", None)
    assert normalize("maxmemory", "12xb") == "12xb"  # not a size: compared as written


def test_only_what_differs_is_set():
    plan = plan_settings({"timeout": "300", "maxmemory-policy": "allkeys-lru"},
                         {"timeout": "300", "maxmemory-policy": "noeviction"}, [],
                         persist=False)
    assert plan.steps == [SetConfig("maxmemory-policy", "allkeys-lru")]
    assert plan.rejected == {} and not plan.rewrite


def test_nothing_differs_nothing_is_sent():
    plan = plan_settings({"timeout": "300"}, {"timeout": "300"}, [], persist=True,
                         persisted_before=True)
    assert plan.steps == [] and not plan.rewrite


@pytest.mark.parametrize("name", ["dir", "dbfilename", "requirepass", "masterauth", "replicaof",
                                  "enable-debug-command", "bind", "no-such-parameter"])
def test_parameters_outside_the_allow_list_are_rejected_and_never_sent(name):
    plan = plan_settings({name: "x", "timeout": "1"}, {"timeout": "0"}, [], persist=True)
    assert [s.name for s in plan.steps] == ["timeout"]
    assert "allow-list" in plan.rejected[name]


def test_a_change_to_an_applied_value_is_drift():
    previous = [{"name": "timeout", "desired": "300", "state": "Applied", "actual": "300"}]
    plan = plan_settings({"timeout": "300"}, {"timeout": "0"}, previous, persist=False)
    assert plan.steps == [SetConfig("timeout", "300", drifted=True)]


def test_a_new_desired_value_is_not_drift():
    previous = [{"name": "timeout", "desired": "300", "state": "Applied", "actual": "300"}]
    plan = plan_settings({"timeout": "600"}, {"timeout": "300"}, previous, persist=False)
    assert plan.steps == [SetConfig("timeout", "600", drifted=False)]


def test_rewrite_follows_a_change_or_a_pass_that_did_not_persist():
    assert plan_settings({"timeout": "1"}, {"timeout": "0"}, [], persist=True,
                         persisted_before=True).rewrite
    assert not plan_settings({"timeout": "1"}, {"timeout": "0"}, [], persist=False).rewrite
    # values already right in memory, but maybe not in the config file yet
    assert plan_settings({"timeout": "1"}, {"timeout": "1"}, [], persist=True).rewrite


def test_only_profiles_that_logged_in_to_the_same_server_contest_settings():
    """Servers are who they are (run_id), not a host string; a profile whose login failed
    vetoes nothing; one not tried yet counts by host and port (as before its first login)."""
    from perf_operator.redis.settings import RedisPeer, contested_settings

    def peer(ns, created, host):
        return RedisPeer(namespace=ns, name="p", created=created, host=host, port=6379,
                         settings={"maxmemory-policy": "volatile-lru"})

    me = RedisPeer(namespace="a", name="p", created="2026-01-02T00:00:00Z", host="127.0.0.1",
                   port=6379, settings={"maxmemory-policy": "allkeys-lru"})
    older_alias = peer("b", "2026-01-01T00:00:00Z", "localhost")
    assert contested_settings(me, [older_alias], {"b/p": "run-1"}, "run-1")
    assert not contested_settings(me, [older_alias], {"b/p": None}, "run-1")  # login failed
    assert not contested_settings(me, [older_alias], {"b/p": "run-2"}, "run-1")
    untried_same_host = peer("c", "2026-01-01T00:00:00Z", "127.0.0.1")
    assert contested_settings(me, [untried_same_host], {}, "run-1")
    assert not contested_settings(me, [older_alias], {}, "run-1")
