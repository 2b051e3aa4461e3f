"""The batched re-check's decision: which tenants need their full reconcile."""
import pytest

from perf_operator.tenants.mirror import MirrorRow
from perf_operator.tenants.recheck import (MIRROR_UNKNOWN, NO_MIRROR, TenantCheck, needs_reconcile)
from perf_operator.tenants.records import DesiredRecord, ObservedRecord

DESIRED = DesiredRecord(key="p:{acme}:limits", owner="ns/acme", digest="d1", document="{}")
CURRENT = ObservedRecord(owner="ns/acme", digest="d1", version=3, written_at="t")
ROW = MirrorRow("ns", "platform", "acme", "ns/acme", 3, "d1")


def check(*, reported=3, settled=True):
    return TenantCheck("acme", "acme", DESIRED, reported, settled)


@pytest.mark.parametrize("mirror", [NO_MIRROR, ROW])
def test_a_converged_tenant_is_left_alone(mirror):
    assert not needs_reconcile(check(), CURRENT, mirror, measure_due=False)


@pytest.mark.parametrize("record, why", [
    (ObservedRecord(None, None, 0, None), "record lost (Redis restarted without data)"),
    (ObservedRecord("ns/acme", "d0", 3, "t"), "record differs from the spec"),
    (ObservedRecord("ns/acme", "d1", 4, "t"), "record rewritten since the status"),
    (ObservedRecord("other/acme", "d1", 3, "t"), "record of another TenantQuota"),
])
def test_a_record_that_is_not_what_the_status_says_is_reconciled(record, why):
    assert needs_reconcile(check(), record, NO_MIRROR, measure_due=False), why


@pytest.mark.parametrize("mirror", [
    None, MIRROR_UNKNOWN, MirrorRow("ns", "platform", "acme", "ns/acme", 2, "d1"),
    MirrorRow("ns", "platform", "acme", "ns/acme", 3, "d0"),
    MirrorRow("ns", "platform", "acme", "other/acme", 3, "d1"),
])
def test_a_missing_stale_unreadable_or_foreign_mirror_row_is_reconciled(mirror):
    assert needs_reconcile(check(), CURRENT, mirror, measure_due=False)


def test_an_unsettled_status_or_a_due_measurement_is_reconciled():
    assert needs_reconcile(check(settled=False), CURRENT, NO_MIRROR, measure_due=False)
    assert needs_reconcile(check(), CURRENT, NO_MIRROR, measure_due=True)


def test_a_tenant_with_a_former_location_to_clean_up_is_reconciled():
    moved = TenantCheck("acme", "acme", DESIRED, 3, True, moved=True)
    assert needs_reconcile(moved, CURRENT, NO_MIRROR, measure_due=False)
