"""The registry of TenantQuotas by profile that replaces a kopf index on tenants."""
from perf_operator.tenants.registry import TenantRegistry


def body(name, profile, *, ws=None, generation=1, status=None):
    spec = {"tenantId": name, "profileRef": {"name": profile}}
    if ws is not None:
        spec["websocket"] = {"maxConnections": ws}
    return {"metadata": {"name": name, "uid": f"uid-{name}", "generation": generation},
            "spec": spec, "status": status or {}}


def test_tenants_are_grouped_by_profile_and_follow_a_move():
    registry = TenantRegistry()
    registry.put("ns", body("a", "p1", ws=10))
    registry.put("ns", body("b", "p1"))
    registry.put("other", body("c", "p1"))
    assert sorted(e.name for e in registry.of_profile("ns", "p1")) == ["a", "b"]
    registry.put("ns", body("a", "p2", ws=20, generation=2))
    assert [e.name for e in registry.of_profile("ns", "p1")] == ["b"]
    [moved] = registry.of_profile("ns", "p2")
    assert (moved.generation, moved.websocket_limit) == (2, 20)


def test_forgetting_and_seeding():
    registry = TenantRegistry()
    registry.put("ns", body("a", "p1", generation=3))
    registry.seed("ns", body("a", "p1", generation=2))  # an older LIST never wins over an event
    assert registry.of_profile("ns", "p1")[0].generation == 3
    registry.forget("ns", "a")
    assert registry.of_profile("ns", "p1") == []


def test_kopf_bookkeeping_is_not_kept():
    registry = TenantRegistry()
    registry.put("ns", body("a", "p1", status={"kopf": {"big": "x"}, "table": {"version": 1}}))
    assert registry.of_profile("ns", "p1")[0].status == {"table": {"version": 1}}


def test_claimants_of_a_tenant_id_follow_changes():
    registry = TenantRegistry()
    registry.put("ns", body("a", "p1"))
    registry.put("other", {**body("b", "p2"), "spec": {"tenantId": "a",
                                                       "profileRef": {"name": "p2"}}})
    assert sorted((ns, p, e.name) for ns, p, e in registry.claimants("a")) == [
        ("ns", "p1", "a"), ("other", "p2", "b")]
    registry.put("other", {**body("b", "p2"), "spec": {"tenantId": "z",
                                                       "profileRef": {"name": "p2"}}})
    assert [e.name for _, _, e in registry.claimants("a")] == ["a"]
    registry.forget("ns", "a")
    assert registry.claimants("a") == []
    assert [e.name for _, _, e in registry.claimants("z")] == ["b"]


def test_a_tenant_is_found_by_name_and_says_when_it_is_being_deleted():
    registry = TenantRegistry()
    registry.put("ns", body("a", "p1"))
    assert registry.get("ns", "a").deleting is False
    deleting = body("a", "p1")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-05T22:00:00Z"
    registry.put("ns", deleting)
    assert registry.get("ns", "a").deleting is True
    registry.forget("ns", "a")
    assert registry.get("ns", "a") is None and registry.get("ns", "never") is None


def test_what_the_startup_list_alone_knows_and_a_later_list_lacks_is_forgotten():
    """Deleted between the startup LIST and kopf's own: no DELETED event will ever come."""
    registry = TenantRegistry()
    for name in ("ghost", "slow", "told", "gone-told"):
        registry.seed("ns", body(name, "p1"))
    registry.put("ns", body("told", "p1", generation=2))  # a watch event about it came
    registry.put("ns", body("new", "p1"))  # created after the startup LIST
    registry.forget("ns", "gone-told")  # its DELETED event came
    # "slow" exists, its event has not been handled yet; "told" and "new" are not in the
    # later LIST (deleted since: their DELETED events will come), so only "ghost" goes
    assert registry.forget_absent({("ns", "slow")}) == [("ns", "ghost")]
    assert sorted(e.name for e in registry.of_profile("ns", "p1")) == ["new", "slow", "told"]
    assert registry.forget_absent(set()) == []  # checked once: the watch has it from now on
