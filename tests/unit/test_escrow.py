"""The pure rules of the credentials' escrow (handlers/escrow.py) and of cleanups that need a
Secret never used (handlers/deferred.py): when an escrow may go, what a never-used Secret
serves, and which cleanup parts then count as done. The e2e proof is in
tests/e2e/test_deferred_cleanup.py."""
from __future__ import annotations

import pytest

from perf_operator.handlers import deferred, escrow
from perf_operator.handlers.profile_registry import forget_profile, put_profile
from perf_operator.kube.namespaces import exact_names
from perf_operator.tenants.registry import TENANTS_BY_PROFILE
from perf_operator.secrets import SecretError, SecretNeverUsed, read_secret_keys, serving_copies

PROFILE = {"metadata": {"namespace": "team-a", "name": "platform"},
           "spec": {"database": {"connection": {"secretRef": {"name": "pg"}}}}}
ENTRY = {"kind": "PerformanceProfile", "namespace": "team-b", "name": "shop", "uid": "0123",
         "spec": {"redis": {"connection": {"secretRef": {"name": "redis-cred"}}}}}


def test_an_escrow_stays_while_a_profile_or_a_ledger_entry_names_its_secret():
    put_profile(PROFILE)
    try:
        assert not escrow.unneeded(("team-a", "pg"), [])
        assert escrow.unneeded(("team-a", "other"), [])
        assert escrow.unneeded(("team-b", "pg"), [])  # same name, another namespace
    finally:
        forget_profile("team-a", "platform")
    assert escrow.unneeded(("team-a", "pg"), [])
    assert not escrow.unneeded(("team-b", "redis-cred"), [ENTRY])
    assert escrow.unneeded(("team-a", "redis-cred"), [ENTRY])


def test_an_escrow_stays_while_a_tenant_status_names_its_secret_after_the_profile_is_gone():
    """A TenantQuota outliving its profile cleans up where its status says its tables are,
    logging in with the Secret named there."""
    tenant = {"metadata": {"name": "acme", "uid": "u1"},
              "spec": {"tenantId": "acme", "profileRef": {"name": "gone"}},
              "status": {"table": {"redis": {"host": "redis", "secretRef": {"name": "rcred"}},
                                   "mirror": {"connection": {"secretRef": {"name": "pg"}}}}}}
    TENANTS_BY_PROFILE.put("team-a", tenant)
    try:
        assert not escrow.unneeded(("team-a", "rcred"), [])
        assert not escrow.unneeded(("team-a", "pg"), [])
        assert escrow.unneeded(("team-b", "pg"), [])
    finally:
        TENANTS_BY_PROFILE.forget("team-a", "acme")
    assert escrow.unneeded(("team-a", "pg"), [])


def test_a_cleanup_in_progress_holds_the_escrows_of_its_secrets_until_it_ends():
    with escrow.held_for(ENTRY):
        with escrow.held_for(ENTRY):
            assert not escrow.unneeded(("team-b", "redis-cred"), [])
        assert not escrow.unneeded(("team-b", "redis-cred"), [])
        assert escrow.unneeded(("team-a", "redis-cred"), [])
    assert escrow.unneeded(("team-b", "redis-cred"), [])


def test_escrow_names_are_stable_per_secret_and_valid_object_names():
    name = escrow.escrow_name("team-a", "pg")
    assert name == escrow.escrow_name("team-a", "pg")
    assert name != escrow.escrow_name("team-b", "pg")
    assert name != escrow.escrow_name("team-a", "pg2")
    assert name.startswith(escrow.PREFIX) and len(name) <= 63 and name == name.lower()


async def test_a_secret_never_used_is_served_as_such_not_asked_of_the_api():
    served = deferred.never_used(["team-a/pg"])
    assert served == {("team-a", "pg"): None}
    with serving_copies(served), pytest.raises(SecretNeverUsed) as caught:
        await read_secret_keys("team-a", "pg", "password")
    assert isinstance(caught.value, SecretError) and caught.value.reason == "SecretNotFound"
    assert str(caught.value) == ("Secret team-a/pg not found and never read: nothing was done "
                                 "with its credentials")


async def test_only_the_parts_that_need_a_never_used_secret_count_as_done():
    ran: list[str] = []

    async def needs_a_never_used_secret(ctx):
        ran.append("skipped")
        raise SecretNeverUsed("team-a", "pg")

    async def works(ctx):
        ran.append("worked")

    async def server_down(ctx):
        raise ConnectionRefusedError("127.0.0.1:5432")

    await deferred.clean((needs_a_never_used_secret, works), None)
    assert ran == ["skipped", "worked"]
    with pytest.raises(ConnectionRefusedError):
        await deferred.clean((works, server_down), None)


def test_namespaces_given_by_name_only_are_watched_without_the_scan():
    assert exact_names(["team-a", "team-b"])
    assert not exact_names([])
    assert not exact_names(["team-*"]) and not exact_names(["!iso-*"])
    assert not exact_names(["team-a", "team-b,team-c"])
