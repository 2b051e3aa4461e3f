"""Target resolution and the connection policy: pure logic, no services."""
from __future__ import annotations

import asyncio
import ipaddress

import pydantic
import pytest

from perf_operator.api import PerformanceProfileSpec, PerformanceTargetSpec
from perf_operator.targets import policy
from perf_operator.targets.policy import (ConnectionPolicy, ConnectionRefused, HostRule,
                                          check_url, choose_address, refused_address)
from perf_operator.targets.resolve import TargetRefused, resolve, selects
from perf_operator.targets.servers import declared_servers, usage

TARGET = {
    "namespaceSelector": {"matchLabels": {"perf.idp.io/tier": "shared"}},
    "postgres": {"host": "pg.platform", "database": "app_{namespace}",
                 "secretRef": {"name": "shared-postgres"},
                 "allowedParameters": ["work_mem", "random_page_cost"]},
    "redis": {"host": "redis.platform", "secretRef": {"name": "shared-redis"}},
    "prometheus": {"url": "http://prometheus.monitoring:9090"},
    "serverSettingsOwner": {"namespace": "platform", "name": "owner"},
}
SELECTED = {"perf.idp.io/tier": "shared"}


def profile(**spec) -> PerformanceProfileSpec:
    return PerformanceProfileSpec.model_validate({"targetRef": {"name": "shared"}, **spec})


def resolved(spec: PerformanceProfileSpec, namespace="team-a", name="p", target=TARGET,
             labels=SELECTED, allow_inline=False):
    parsed = PerformanceTargetSpec.model_validate(target) if target is not None else None
    return resolve(namespace, name, spec, target=parsed, namespace_labels=labels,
                   allow_inline=allow_inline)


# ------------------------------------------------------------------------------ resolution

def test_target_fills_in_the_connections_marked_as_granted():
    result = resolved(profile(database={}, redis={}))
    database, redis = result.spec.database, result.spec.redis
    assert result.target == "shared"
    assert (database.connection.host, database.connection.database) == ("pg.platform",
                                                                         "app_team-a")
    assert database.connection.granted_by == "shared"
    assert redis.connection.granted_by == "shared"
    assert result.spec.prometheus.url == "http://prometheus.monitoring:9090"
    assert result.spec.prometheus.granted_by == "shared"


def test_redis_key_prefix_is_under_the_namespace_so_tenant_ids_cannot_be_squatted():
    a = resolved(profile(redis={"keyPrefix": "app:"}), namespace="team-a").spec.redis.key_prefix
    b = resolved(profile(redis={"keyPrefix": "app:"}), namespace="team-b").spec.redis.key_prefix
    assert (a, b) == ("team-a:app:", "team-b:app:")
    # a namespace cannot reach another's keys by choosing its own keyPrefix
    sneaky = resolved(profile(redis={"keyPrefix": "team-a:app:"}), namespace="team-b")
    assert not sneaky.spec.redis.key_prefix.startswith("team-a:")


def test_namespace_the_target_does_not_select_is_refused():
    with pytest.raises(TargetRefused) as refused:
        resolved(profile(redis={}), namespace="team-b", labels={"team": "b"})
    assert refused.value.reason == "NamespaceNotSelected"
    assert "team-b" in str(refused.value)


def test_unknown_namespace_and_missing_target_are_refused():
    with pytest.raises(TargetRefused, match="does not select"):
        resolved(profile(redis={}), labels=None)
    with pytest.raises(TargetRefused) as refused:
        resolved(profile(redis={}), target=None)
    assert refused.value.reason == "TargetNotFound"


def test_server_wide_settings_only_for_the_settings_owner():
    spec = profile(redis={"settings": {"maxmemory-policy": "allkeys-lfu"}, "persistSettings": True},
                   database={"settings": {"scope": "System", "parameters": {"work_mem": "8MB"}}})
    other = resolved(spec)
    assert other.spec.redis.settings == {} and not other.spec.redis.persist_settings
    assert other.spec.database.settings.parameters == {}
    assert len(other.left_out) == 2
    owner_target = {**TARGET, "postgres": {**TARGET["postgres"], "scopes": ["System",
                                                                            "Database"]}}
    owner = resolved(spec, namespace="platform", name="owner", target=owner_target)
    assert owner.spec.redis.settings == {"maxmemory-policy": "allkeys-lfu"}
    assert owner.spec.database.settings.parameters == {"work_mem": "8MB"}
    assert owner.left_out == ()


def test_database_scope_parameters_narrowed_by_the_target():
    allowed = profile(database={"settings": {"scope": "Database",
                                             "parameters": {"work_mem": "8MB"}}})
    assert resolved(allowed).spec.database.settings.parameters == {"work_mem": "8MB"}
    refused = profile(database={"settings": {"scope": "Database",
                                             "parameters": {"work_mem": "8MB",
                                                            "statement_timeout": "0"}}})
    with pytest.raises(TargetRefused) as error:
        resolved(refused)
    assert error.value.reason == "ParameterNotAllowed"
    assert "statement_timeout" in str(error.value) and "work_mem" not in str(error.value)


def test_target_without_the_server_the_profile_needs():
    with pytest.raises(TargetRefused, match="declares no redis"):
        resolved(profile(redis={}), target={**TARGET, "redis": None})


def test_inline_connections_refused_unless_allowed():
    spec = PerformanceProfileSpec.model_validate({"redis": {"connection": {"host": "10.0.0.5"}}})
    with pytest.raises(TargetRefused) as refused:
        resolved(spec, target=None)
    assert refused.value.reason == "InlineConnectionsRefused"
    result = resolved(spec, target=None, allow_inline=True)
    assert result.target is None and result.spec.redis.connection.granted_by is None
    # a profile configuring neither is fine either way
    assert resolved(PerformanceProfileSpec(), target=None).target is None


def test_granted_cannot_come_from_a_spec():
    """Only resolution marks a server as granted (its Secret then read from the operator's
    namespace); a spec saying so is refused."""
    for key in ("grantedBy", "_granted_by"):
        with pytest.raises(pydantic.ValidationError):
            PerformanceProfileSpec.model_validate(
                {"redis": {"connection": {"host": "10.0.0.5", key: "shared"}}})
    inline = PerformanceProfileSpec.model_validate({"redis": {"connection": {"host": "h"}}})
    assert inline.redis.connection.granted_by is None


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({}, {}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"},
     True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
])
def test_label_selector(selector, labels, expected):
    parsed = PerformanceTargetSpec.model_validate({"namespaceSelector": selector,
                                                   "redis": {"host": "r"}}).namespace_selector
    assert selects(parsed, labels) is expected


def test_target_status_parts():
    target = PerformanceTargetSpec.model_validate(TARGET)
    assert [(s.server, s.host, s.port) for s in declared_servers(target)] == [
        ("postgres", "pg.platform", 5432), ("redis", "redis.platform", 6379),
        ("prometheus", "prometheus.monitoring", 9090)]
    assert usage([("b", "x"), ("a", "y"), ("a", "z")]) == {"profiles": 3,
                                                           "namespaces": ["a", "b"]}


# ---------------------------------------------------------------------------- connection policy

def addresses(*texts: str):
    return [ipaddress.ip_address(t) for t in texts]


LOCAL = ConnectionPolicy.from_settings(True, ["127.0.0.1", "10.1.0.0/16:5432", "db.internal",
                                              "*.svc.cluster.local"])


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.10.1", "fe80::1",
                                     "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0",
                                     "100.100.100.200", "224.0.0.1"])
def test_metadata_and_link_local_addresses_always_refused(address):
    assert refused_address(ipaddress.ip_address(address)) is not None
    for granted_by in (None, "shared"):
        with pytest.raises(ConnectionRefused) as refused:
            choose_address("x", 80, addresses(address), granted_by=granted_by, policy=LOCAL)
        assert refused.value.reason == "AddressRefused"


def test_a_name_that_also_resolves_to_a_metadata_address_is_refused():
    with pytest.raises(ConnectionRefused, match="169.254.169.254"):
        choose_address("evil", 6379, addresses("127.0.0.1", "169.254.169.254"),
                       granted_by="shared", policy=LOCAL)


def test_metadata_host_names_refused_by_name():
    with pytest.raises(ConnectionRefused, match="metadata"):
        choose_address("Metadata.Google.Internal.", 80, [], granted_by="shared", policy=LOCAL)


def test_inline_hosts_only_on_the_allow_list():
    assert str(choose_address("127.0.0.1", 6379, addresses("127.0.0.1"), granted_by=None,
                              policy=LOCAL)) == "127.0.0.1"
    assert str(choose_address("pg", 5432, addresses("10.1.2.3"), granted_by=None,
                              policy=LOCAL)) == "10.1.2.3"
    assert choose_address("db.internal", 1, addresses("192.0.2.1"), granted_by=None,
                          policy=LOCAL)
    assert choose_address("redis.team.svc.cluster.local", 1, addresses("192.0.2.9"),
                          granted_by=None, policy=LOCAL)
    # the first allowed address of several is the one connected to
    assert str(choose_address("localhost", 6379, addresses("::1", "127.0.0.1"),
                              granted_by=None, policy=LOCAL)) == "127.0.0.1"
    for host, port, address in (("127.0.0.2", 6379, "127.0.0.2"), ("pg", 6379, "10.1.2.3"),
                                ("other.internal", 1, "192.0.2.1")):
        with pytest.raises(ConnectionRefused) as refused:
            choose_address(host, port, addresses(address), granted_by=None, policy=LOCAL)
        assert refused.value.reason == "HostNotAllowed"


def test_inline_refused_when_not_allowed_but_targets_still_work():
    closed = ConnectionPolicy.from_settings(False, ["127.0.0.1"])
    with pytest.raises(ConnectionRefused) as refused:
        choose_address("127.0.0.1", 6379, addresses("127.0.0.1"), granted_by=None,
                       policy=closed)
    assert refused.value.reason == "InlineConnectionsRefused"
    assert choose_address("10.9.9.9", 6379, addresses("10.9.9.9"), granted_by="shared",
                          policy=closed)


@pytest.mark.parametrize("text", ["", "a b", "x/y@z", "127.0.0.1:notaport"])
def test_bad_allow_list_entries(text):
    with pytest.raises(ValueError):
        HostRule.parse(text)


def test_allow_list_entry_forms():
    assert HostRule.parse("[::1]:5432") == HostRule(network=ipaddress.ip_network("::1"),
                                                    port=5432)
    assert HostRule.parse("DB.Internal.") == HostRule(name="db.internal")


@pytest.mark.parametrize(("url", "reason"), [
    ("http://user:pass@prometheus:9090", "URLRefused"),
    ("http://token@prometheus:9090", "URLRefused"),
    ("file:///etc/passwd", "URLRefused"),
    ("gopher://prometheus:70", "URLRefused"),
    ("http://prometheus:99999", "URLRefused"),
])
def test_prometheus_urls_refused(url, reason):
    with pytest.raises(ConnectionRefused) as refused:
        check_url(url)
    assert refused.value.reason == reason


def test_prometheus_urls_allowed():
    assert check_url("http://prometheus.monitoring:9090/prom") == ("prometheus.monitoring", 9090)
    assert check_url("https://prom.example") == ("prom.example", 443)
    assert check_url("http://[::1]/x@y") == ("::1", 80)  # '@' in the path is not userinfo


def test_admit_resolves_without_a_connection_and_caches(monkeypatch):
    monkeypatch.setattr(policy, "POLICY", LOCAL)
    policy._admitted.clear()
    assert asyncio.run(policy.admit("127.0.0.1", 6379, granted_by=None)) == "127.0.0.1"
    assert ("127.0.0.1", 6379, None) in policy._admitted
    with pytest.raises(ConnectionRefused):
        asyncio.run(policy.admit("169.254.169.254", 80, granted_by="shared"))
    with pytest.raises(ConnectionRefused) as refused:
        asyncio.run(policy.admit_url("http://a:b@127.0.0.1:9090", granted_by=None))
    assert refused.value.reason == "URLRefused"


def test_examples_resolve_as_their_comments_say():
    import pathlib

    import yaml

    examples = pathlib.Path(__file__).resolve().parents[2] / "examples" / "targets"
    (target,) = [d for d in yaml.safe_load_all((examples / "performance-target.yaml").read_text())
                 if d]
    (team,) = [d for d in yaml.safe_load_all((examples / "profile.yaml").read_text()) if d]
    result = resolved(PerformanceProfileSpec.model_validate(team["spec"]), namespace="team-a",
                      target=target["spec"], labels={"perf.idp.io/shared-servers": "true"})
    assert result.spec.redis.key_prefix == "team-a:app:"
    assert result.spec.database.connection.database == "app_team-a"
    assert result.spec.database.settings.parameters == {"work_mem": "8MB",
                                                        "random_page_cost": "1.1"}
    assert result.left_out == ()


def test_webhook_refuses_inline_connections_only_when_the_operator_does(monkeypatch):
    from perf_operator.targets import inline_errors

    inline = PerformanceProfileSpec.model_validate({"redis": {"connection": {"host": "h"}}})
    monkeypatch.setattr(policy, "POLICY", ConnectionPolicy.from_settings(False, []))
    (error,) = inline_errors(inline)
    assert "redis.connection" in error and "targetRef" in error
    assert inline_errors(profile(redis={})) == []
    monkeypatch.setattr(policy, "POLICY", LOCAL)
    assert inline_errors(inline) == []


def test_a_users_own_tool_may_reach_any_host_but_metadata():
    mine = ConnectionPolicy.users_own()
    assert choose_address("db.team", 5432, addresses("10.2.3.4"), granted_by=None, policy=mine)
    assert choose_address("db6", 5432, addresses("2001:db8::1"), granted_by=None, policy=mine)
    with pytest.raises(ConnectionRefused):
        choose_address("x", 80, addresses("169.254.169.254"), granted_by=None, policy=mine)
