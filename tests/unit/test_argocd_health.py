"""health.lua, run by real Lua interpreters (lua5.1 like Argo CD's gopher-lua, and lua5.4)
against statuses in the shape the operator writes them."""
from __future__ import annotations

import calendar
import pathlib
import re
import time

import pytest
import yaml

from perf_operator.api import PERSISTENT_REASONS, PROGRESS_REASONS
from tests.support.argocd import argocd_engine_health
from tests.support.lua import argocd_health, interpreters

HEALTH = pathlib.Path(__file__).resolve().parents[2] / "manifests/argocd/health"
SCRIPT = HEALTH / "health.lua"
CASES = yaml.safe_load((HEALTH / "health_test.yaml").read_text())["tests"]
NOW = calendar.timegm((2024, 3, 1, 0, 5, 0))  # just after a leap day: exercises the date maths
INTERPRETERS = interpreters()


def stamp(seconds_ago: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_ago))


def profile(*, generation=2, observed=2, ready=None, paused=None, kind="PerformanceProfile"):
    obj = {"apiVersion": "perf.idp.io/v1alpha1", "kind": kind,
           "metadata": {"name": "p", "namespace": "team-a", "generation": generation},
           "spec": {"websocket": {"maxConnections": 1000}}}
    if paused is not None:
        obj["spec"]["paused"] = paused
    if ready is not None:
        status, reason, message, age = ready
        obj["status"] = {
            "observedGeneration": observed,
            "conditions": [
                {"type": "DatabaseReady", "status": status, "reason": reason, "message": message,
                 "observedGeneration": observed, "lastTransitionTime": stamp(age)},
                {"type": "Ready", "status": status, "reason": reason, "message": message,
                 "observedGeneration": observed, "lastTransitionTime": stamp(age)},
            ],
            "kopf": {"progress": {}},
        }
    return obj


@pytest.fixture(params=[*INTERPRETERS, "argocd"])
def health(request):
    """Every case runs under Debian's Lua interpreters and under Argo CD's own engine
    (``argocd admin settings resource-overrides health``, built by tools/clients/build.sh)."""
    if request.param == "argocd":
        from perf_operator.devstack.argocd import argocd_binaries

        argocd = argocd_binaries() / "argocd"
        return lambda obj, **kw: argocd_engine_health(argocd, HEALTH, obj, now=NOW, **kw)
    return lambda obj, **kw: argocd_health(SCRIPT, obj, now=NOW, interpreter=request.param, **kw)


def test_debian_lua_is_installed():
    assert "lua5.4" in INTERPRETERS, "apt-get install lua5.4 (tools/setup.sh)"


def test_new_object_without_status_is_progressing(health):
    assert health(profile()) == ("Progressing", "Waiting for the operator to reconcile")


def test_ready_for_the_current_generation_is_healthy(health):
    obj = profile(ready=("True", "Reconciled", "all targets match the spec", 30))
    assert health(obj) == ("Healthy", "all targets match the spec")


def test_spec_change_not_yet_observed_is_progressing_even_if_ready(health):
    obj = profile(generation=3, observed=2, ready=("True", "Reconciled", "ok", 30))
    status, message = health(obj)
    assert status == "Progressing"
    assert "generation 3" in message and "2" in message


def test_first_failure_is_progressing(health):
    obj = profile(ready=("False", "ConnectionFailed", "PostgreSQL refused the connection", 60))
    assert health(obj) == ("Progressing",
                           "ConnectionFailed: PostgreSQL refused the connection (retrying)")


def test_failure_lasting_ten_minutes_is_degraded(health):
    obj = profile(ready=("False", "ConnectionFailed", "PostgreSQL refused the connection", 601))
    status, message = health(obj)
    assert status == "Degraded"
    assert message.startswith("ConnectionFailed: PostgreSQL refused") and "10 minutes" in message


def test_failure_just_under_the_threshold_is_still_progressing(health):
    obj = profile(ready=("False", "ConnectionFailed", "refused", 599))
    assert health(obj)[0] == "Progressing"


def test_failure_across_the_leap_day_is_measured_right(health):
    # 2024-02-29T23:55:00Z is 600 s before NOW: exactly the threshold.
    obj = profile(ready=("False", "ConnectionFailed", "refused", 0))
    obj["status"]["conditions"][1]["lastTransitionTime"] = "2024-02-29T23:55:00Z"
    assert health(obj)[0] == "Degraded"
    obj["status"]["conditions"][1]["lastTransitionTime"] = "2024-02-29T23:55:01Z"
    assert health(obj)[0] == "Progressing"


@pytest.mark.parametrize("reason", ["Rejected", "ProfileNotFound", "ResourceConflict",
                                    "WebSocketOvercommitted", "SettingRejected",
                                    "SettingsRejected"])
def test_failures_that_retrying_cannot_fix_are_degraded_at_once(health, reason):
    obj = profile(ready=("False", reason, "needs a new spec", 5), kind="TenantQuota")
    assert health(obj) == ("Degraded", f"{reason}: needs a new spec")


def test_paused_profile_is_suspended(health):
    obj = profile(paused=True, ready=("False", "Paused", "spec.paused is true: nothing is changed",
                                      5))
    assert health(obj) == ("Suspended", "Paused: spec.paused is true: nothing is changed")


def test_paused_before_the_operator_saw_it_is_suspended(health):
    assert health(profile(paused=True, generation=4, observed=3,
                          ready=("True", "Reconciled", "ok", 5)))[0] == "Suspended"


def test_tenant_of_a_paused_profile_is_suspended(health):
    obj = profile(kind="TenantQuota", ready=("False", "Paused", "profile p is paused", 5))
    assert health(obj) == ("Suspended", "Paused: profile p is paused")


def test_unknown_ready_is_progressing(health):
    obj = profile(ready=("Unknown", "Reconciling", "checking", 5))
    assert health(obj) == ("Progressing", "Reconciling: checking")


def test_without_open_libs_only_the_reason_rule_applies(health):
    """Argo CD without useOpenLibs has no string library: old failures stay Progressing."""
    old = profile(ready=("False", "ConnectionFailed", "refused", 3600))
    assert health(old, open_libs=False)[0] == "Progressing"
    rejected = profile(ready=("False", "Rejected", "bad spec", 5))
    assert health(rejected, open_libs=False)[0] == "Degraded"
    healthy = profile(ready=("True", "Reconciled", "ok", 5))
    assert health(healthy, open_libs=False)[0] == "Healthy"


def test_non_ascii_messages_pass_through(health):
    obj = profile(ready=("True", "Reconciled", "prêt — 準備完了", 5))
    assert health(obj) == ("Healthy", "prêt — 準備完了")


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"] for c in CASES])
def test_case_files_hold_today(case, interpreter):
    """Argo CD's format: each case file with its expected health, at the real current time."""
    obj = yaml.safe_load((HEALTH / case["inputPath"]).read_text())
    assert argocd_health(SCRIPT, obj, now=int(time.time()), interpreter=interpreter) == (
        case["healthStatus"]["status"], case["healthStatus"]["message"])


@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"] for c in CASES])
def test_case_files_hold_in_argo_cds_engine(case):
    """The same case files through Argo CD itself: its Lua VM and its argocd-cm parsing. An
    object being deleted never reaches the script: Argo CD says Progressing with its own
    message first, so for those only the status is the script's."""
    from perf_operator.devstack.argocd import argocd_binaries

    obj = yaml.safe_load((HEALTH / case["inputPath"]).read_text())
    status, message = argocd_engine_health(argocd_binaries() / "argocd", HEALTH, obj,
                                           now=int(time.time()))
    assert status == case["healthStatus"]["status"]
    if obj["metadata"].get("deletionTimestamp"):
        assert message == ("Pending deletion; blocked by finalizers: "
                           + ", ".join(obj["metadata"]["finalizers"]))
    else:
        assert message == case["healthStatus"]["message"]


def test_every_case_file_is_listed():
    listed = {case["inputPath"] for case in CASES}
    assert listed == {f"testdata/{p.name}" for p in (HEALTH / "testdata").glob("*.yaml")}


def _lua_reasons(table_name: str) -> set[str]:
    table = re.search(rf"local {table_name} = {{(.*?)\n}}", SCRIPT.read_text(), re.S).group(1)
    return set(re.findall(r"^\s*(\w+) = true", table, re.M))


def test_lua_knows_the_operators_progress_reasons():
    assert _lua_reasons("PROGRESS_REASONS") == set(PROGRESS_REASONS)


def test_lua_knows_the_operators_persistent_reasons():
    assert _lua_reasons("PERSISTENT_REASONS") == set(PERSISTENT_REASONS)


@pytest.mark.parametrize("reason, message", [
    ("SecretNotFound", "DatabaseReady: Secret team-a/pg-missing not found"),
    ("SecretKeyMissing", "RedisReady: Secret team-a/redis-credentials has no key 'password'"),
    ("SecretValueInvalid", "DatabaseReady: Secret team-a/pg key 'password' is not UTF-8 text"),
    ("SecretForbidden", "DatabaseReady: not allowed to read Secret team-a/pg-credentials"),
])
def test_a_missing_or_unreadable_secret_is_degraded_at_once(health, reason, message):
    """Retrying cannot create a Secret: Degraded from the first reconcile, naming it."""
    obj = profile(ready=("False", reason, message, 5))
    assert health(obj) == ("Degraded", f"{reason}: {message}")
    assert health(obj, open_libs=False) == ("Degraded", f"{reason}: {message}")


@pytest.mark.parametrize("reason", ["DatabaseUnavailable", "RedisUnavailable", "MirrorFailed",
                                    "IndexBuilding"])
def test_transient_failures_and_builds_stay_progressing_at_first(health, reason):
    assert health(profile(ready=("False", reason, "server down or work under way", 60)))[0] \
        == "Progressing"


@pytest.mark.parametrize("reason", sorted(PROGRESS_REASONS))
def test_an_eleven_minute_build_is_still_progressing(health, reason):
    obj = profile(ready=("False", reason, "index i Building", 11 * 60))
    assert health(obj) == ("Progressing", f"{reason}: index i Building")


def test_a_terminating_object_is_progressing_whatever_its_ready(health):
    for ready in (("False", "DatabaseUnavailable", "refused", 3600),
                  ("False", "Rejected", "bad", 5), ("True", "Reconciled", "ok", 5)):
        obj = profile(ready=ready)
        obj["metadata"]["deletionTimestamp"] = stamp(30)
        assert health(obj)[0] == "Progressing"


@pytest.mark.parametrize("reason", ["NamespaceNotSelected", "InlineConnectionsRefused",
                                    "ParameterNotAllowed", "HostNotAllowed", "AddressRefused",
                                    "URLRefused"])
def test_trust_boundary_refusals_are_degraded_at_once(health, reason):
    """Retrying cannot fix them: a platform admin (the target, the operator's flags) or a new
    spec must act."""
    obj = profile(ready=("False", reason, "refused, nothing connected", 5))
    assert health(obj) == ("Degraded", f"{reason}: refused, nothing connected")


def target(ready):
    """A PerformanceTarget (cluster-scoped, no namespace) in the shape the operator writes."""
    obj = profile(ready=ready, kind="PerformanceTarget")
    del obj["metadata"]["namespace"]
    obj["spec"] = {"namespaceSelector": {"matchLabels": {"team": "a"}},
                   "redis": {"host": "redis.platform", "port": 6379}}
    obj["status"]["servers"] = [{"server": "redis", "address": "redis.platform:6379",
                                 "reachable": ready[0] == "True", "message": ""}]
    return obj


def test_target_whose_servers_answer_is_healthy(health):
    assert health(target(("True", "Reconciled", "all targets match the spec", 5))) == (
        "Healthy", "all targets match the spec")


def test_target_with_a_server_down_is_progressing_then_degraded(health):
    down = ("False", "Unreachable", "no TCP connection to redis.platform:6379", 60)
    assert health(target(down))[0] == "Progressing"
    assert health(target(down[:3] + (601,)))[0] == "Degraded"


def test_target_with_an_invalid_spec_is_degraded(health):
    assert health(target(("False", "Rejected", "spec.redis.keyPrefix: bad", 5)))[0] == "Degraded"
