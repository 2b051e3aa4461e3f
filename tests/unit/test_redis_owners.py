"""Who owns what in Redis, without Redis: the oldest of the profiles sharing a server owns a
CONFIG parameter they disagree on; a tenant that moved leaves behind exactly the locations its
status reports, and never the one it is at now."""
from __future__ import annotations

import datetime

import pytest

from perf_operator.api.profile import PostgresConnection, RedisConnection
from perf_operator.api.profile import PerformanceProfileSpec
from perf_operator.redis import redis_peer
from perf_operator.redis.settings import (RedisPeer, SetConfig, contested_settings,
                                          plan_settings)
from perf_operator.tenants.places import (STALE_RETRY_SECONDS, RecordPlace, RowPlace,
                                          leftovers_pending, plan_leftovers)

# ------------------------------------------------------------------ settings: who owns a value


def peer(name: str, created: str | None, namespace: str = "team-a", host: str = "redis",
         port: int = 6379, **settings: str) -> RedisPeer:
    return RedisPeer(namespace=namespace, name=name, created=created, host=host, port=port,
                     settings={k.replace("_", "-"): v for k, v in settings.items()})


OLD, NEW = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"


def test_the_older_profile_owns_a_parameter_they_disagree_on():
    old = peer("old", OLD, timeout="300")
    new = peer("new", NEW, timeout="600")
    assert contested_settings(new, [old, new]) == {"timeout": old}
    assert contested_settings(old, [old, new]) == {}


def test_profiles_agreeing_on_a_value_do_not_conflict_even_spelled_differently():
    old = peer("old", OLD, maxmemory="256mb", maxmemory_policy="allkeys-lru")
    new = peer("new", NEW, maxmemory="268435456", maxmemory_policy="ALLKEYS-LRU")
    assert contested_settings(new, [old]) == {}


def test_only_the_same_server_counts_and_the_db_is_not_part_of_it():
    old = peer("old", OLD, timeout="300")
    assert contested_settings(peer("new", NEW, port=6380, timeout="600"), [old]) == {}
    assert contested_settings(peer("new", NEW, host="other", timeout="600"), [old]) == {}
    # the host is compared as DNS does (case, trailing dot); a peer has no db at all
    assert contested_settings(peer("new", NEW, host="REDIS.", timeout="600"), [old]) == {
        "timeout": old}


def test_a_tie_in_age_goes_to_namespace_then_name():
    a = peer("b-profile", OLD, namespace="team-a", timeout="1")
    b = peer("a-profile", OLD, namespace="team-b", timeout="2")
    c = peer("a-profile", OLD, namespace="team-a", timeout="3")
    assert contested_settings(a, [b, c]) == {"timeout": c}
    assert contested_settings(b, [a, c]) == {"timeout": c}
    assert contested_settings(c, [a, b]) == {}


def test_an_unknown_creation_time_is_the_youngest():
    known = peer("known", NEW, timeout="1")
    unknown = peer("a", None, timeout="2")
    assert contested_settings(unknown, [known]) == {"timeout": known}
    assert contested_settings(known, [unknown]) == {}


def test_the_owner_is_the_oldest_profile_that_sets_the_parameter():
    oldest = peer("oldest", "2025-01-01T00:00:00Z", tcp_keepalive="60")  # no timeout
    middle = peer("middle", OLD, timeout="300")
    me = peer("me", NEW, timeout="600", tcp_keepalive="60")
    assert contested_settings(me, [oldest, middle]) == {"timeout": middle}
    # a third profile agreeing with the owner is not in conflict, whoever else disagrees
    agreeing = peer("agreeing", "2026-03-01T00:00:00Z", timeout="300")
    assert contested_settings(agreeing, [oldest, middle, me]) == {}


def test_parameters_outside_the_allow_list_are_nobodys():
    old = peer("old", OLD, dir="/a")
    assert contested_settings(peer("new", NEW, dir="/b"), [old]) == {}


def test_a_contested_parameter_is_never_sent_and_says_who_owns_it():
    owner = peer("old", OLD, namespace="team-b", timeout="300")
    plan = plan_settings({"timeout": "600", "tcp-keepalive": "60"},
                         {"timeout": "300", "tcp-keepalive": "0"}, [], persist=True,
                         persisted_before=True, contested={"timeout": owner})
    assert plan.steps == [SetConfig("tcp-keepalive", "60")]
    assert plan.rewrite  # the parameter it may set changed
    message = plan.conflicts["timeout"]
    assert "team-b/old" in message and "'300'" in message and "'600' is not sent" in message
    # even when Redis reports something else entirely: the owner corrects that, not us
    plan = plan_settings({"timeout": "600"}, {"timeout": "0"},
                         [{"name": "timeout", "desired": "600", "state": "Applied"}],
                         persist=False, contested={"timeout": owner})
    assert plan.steps == [] and "timeout" in plan.conflicts


def profile(settings: dict | None = None, **extra) -> dict:
    redis: dict = {"connection": {"host": "redis", "port": 6380, "db": 3}}
    if settings is not None:
        redis["settings"] = settings
    return {"redis": redis, **extra}


def test_a_peer_is_what_the_profile_would_send():
    meta = {"creationTimestamp": OLD}
    seed = redis_peer("team-a", "p", meta, profile())
    assert seed == RedisPeer("team-a", "p", OLD, "redis", 6380,
                             {"maxmemory-policy": "allkeys-lru", "timeout": "300",
                              "tcp-keepalive": "60"})
    assert redis_peer("team-a", "p", meta, profile({"timeout": "5"})).settings == {
        "timeout": "5"}
    # profiles that send nothing own nothing
    assert redis_peer("team-a", "p", meta, profile(paused=True)) is None
    assert redis_peer("team-a", "p", {**meta, "deletionTimestamp": NEW}, profile()) is None
    assert redis_peer("team-a", "p", meta, {"api": {}}) is None
    assert redis_peer("team-a", "p", meta, profile(nonsense=1)) is None
    assert redis_peer("team-a", "p", meta, profile({"dir": "/x"})) is None  # refused spec


# ------------------------------------------------------------- tables: what a move leaves behind

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
REDIS = {"host": "127.0.0.1", "port": 6379, "db": 0,
         "secretRef": {"name": "redis", "passwordKey": "password"}, "tls": False}
PG = {"host": "pg", "port": 5432, "database": "app",
      "secretRef": {"name": "pg", "usernameKey": "username", "passwordKey": "password"},
      "sslMode": "prefer"}


def record(key: str = "b:{acme}:limits", **connection) -> RecordPlace:
    return RecordPlace(key, RedisConnection.model_validate({**REDIS, **connection}))


def row(profile: str = "b", **connection) -> RowPlace:
    return RowPlace(profile, PostgresConnection.model_validate({**PG, **connection}))


def table(key: str = "b:{acme}:limits", redis: dict | None = None, mirror: dict | None = None,
          stale: list | None = None) -> dict:
    return {"version": 3, "writtenAt": "2026-01-01T00:00:00Z", "hash": "f00", "profile": "b",
            "key": key, "redis": redis or REDIS, "mirror": mirror, "staleRecords": stale}


def places(todo) -> list:
    return [item.place for item in todo]


def test_nothing_is_left_behind_where_the_tenant_still_is():
    status = table(mirror=row().status())
    assert plan_leftovers(status, record(), row(), row_settled=True, now=NOW) == ([], [])
    # a new Secret, TLS or host spelling is not a move
    moved_login = record(secretRef={"name": "rotated"}, tls=True, host="127.0.0.1.")
    assert plan_leftovers(status, moved_login, row(sslMode="require"), row_settled=True,
                          now=NOW) == ([], [])


def test_a_status_without_a_location_is_not_guessed_at():
    older_operator = {"version": 3, "writtenAt": "2026-01-01T00:00:00Z", "hash": "f00"}
    assert plan_leftovers(older_operator, record(), row(), row_settled=True, now=NOW) == ([], [])
    nonsense = table(redis={"host": "no spaces allowed"}, mirror={"profile": "a"})
    assert plan_leftovers(nonsense, record(), row(), row_settled=True, now=NOW) == ([], [])


@pytest.mark.parametrize("old", [record("a:{acme}:limits"), record(port=6380), record(db=2),
                                 record(host="redis-2")])
def test_another_key_port_db_or_host_leaves_the_old_record(old):
    status = table(old.key, redis=old.status()["redis"])
    todo, abandoned = plan_leftovers(status, record(), None, row_settled=True, now=NOW)
    assert places(todo) == [old] and abandoned == []


def test_the_old_mirror_row_goes_only_once_the_new_one_is_written():
    status = table(mirror=row("a").status())
    assert places(plan_leftovers(status, record(), row(), row_settled=True, now=NOW)[0]) == [
        row("a")]
    assert plan_leftovers(status, record(), row(), row_settled=False, now=NOW) == ([], [])
    # a profile without a database: the old row goes too
    assert places(plan_leftovers(status, record(), None, row_settled=True, now=NOW)[0]) == [
        row("a")]
    # the same profile in another database
    status = table(mirror=row(database="old").status())
    assert places(plan_leftovers(status, record(), row(), row_settled=True, now=NOW)[0]) == [
        row(database="old")]


def test_stale_records_are_retried_until_given_up_but_never_where_the_tenant_is_again():
    recent = (NOW - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ancient = (NOW - datetime.timedelta(seconds=STALE_RETRY_SECONDS + 1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    stale = [
        {**record("a:{acme}:limits").status(), "since": recent, "message": "down"},
        {"mirror": row("a").status(), "since": ancient, "message": "down"},
        {**record().status(), "since": recent, "message": "down"},  # moved back here
        {**record("a:{acme}:limits").status(), "since": recent, "message": "twice"},
    ]
    todo, abandoned = plan_leftovers(table(stale=stale), record(), row(), row_settled=True,
                                     now=NOW)
    assert [(item.place, item.since) for item in todo] == [(record("a:{acme}:limits"), recent)]
    assert [(item.place, item.since) for item in abandoned] == [(row("a"), ancient)]


def test_deleting_a_tenant_visits_every_reported_location():
    stale = [{**record("c:{acme}:limits").status(), "since": "2026-03-01T11:00:00Z",
              "message": "down"}]
    status = table("a:{acme}:limits", mirror=row("a").status(), stale=stale)
    todo, _ = plan_leftovers(status, None, None, row_settled=True, now=NOW)
    assert places(todo) == [record("a:{acme}:limits"), row("a"), record("c:{acme}:limits")]


def test_a_tenant_with_something_left_behind_is_not_settled():
    profile = PerformanceProfileSpec.model_validate({
        "redis": {"connection": REDIS, "keyPrefix": "b:"}, "database": {"connection": PG}})
    here = table(mirror=row().status())
    assert not leftovers_pending(here, "b", profile, "acme")
    assert not leftovers_pending(None, "b", profile, "acme")
    assert leftovers_pending(table("a:{acme}:limits", mirror=row().status()), "b", profile,
                             "acme")
    assert leftovers_pending(here, "c", profile, "acme")  # the mirror row is filed under b
    stale = [{**record("a:{acme}:limits").status(), "since": "2026-03-01T11:00:00Z",
              "message": "down"}]
    assert leftovers_pending(table(mirror=row().status(), stale=stale), "b", profile, "acme")
    without_redis = PerformanceProfileSpec.model_validate({})
    assert leftovers_pending(here, "b", without_redis, "acme")
