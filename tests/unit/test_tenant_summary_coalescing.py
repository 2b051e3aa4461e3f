"""A profile's tenant summary is refreshed about a second after a lone tenant event, and at
most every REFRESH_MAX_SECONDS while its tenants' events keep coming (tenants created by the
thousand): the scheduling alone, with the write recorded instead of sent."""
import asyncio

from perf_operator.handlers import tenant_summary


async def test_a_burst_is_written_at_the_cap_and_a_lone_event_after_the_delay(monkeypatch):
    writes: list[float] = []
    loop = asyncio.get_running_loop()

    async def record(namespace, name):
        writes.append(loop.time())

    monkeypatch.setattr(tenant_summary, "publish_tenant_summary", record)
    monkeypatch.setattr(tenant_summary, "REFRESH_DELAY_SECONDS", 0.02)
    monkeypatch.setattr(tenant_summary, "REFRESH_MAX_SECONDS", 0.1)
    body = {"spec": {"profileRef": {"name": "p"}}}

    started = loop.time()
    while loop.time() - started < 0.35:  # an event every 5 ms for 350 ms
        tenant_summary.summary_follows("ns", body)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    # about one write per 100 ms cap (plus the tail), not one per 20 ms delay (17)
    assert 2 <= len(writes) <= 6, writes

    writes.clear()
    lone = loop.time()
    tenant_summary.summary_follows("ns", body)
    await asyncio.sleep(0.2)
    assert len(writes) == 1 and writes[0] - lone < 0.1  # the delay, not the cap
    assert not tenant_summary._pending and not tenant_summary._more
