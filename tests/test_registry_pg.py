"""The registry's cleanup on the embedded Postgres, for every strategy × driver."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from gateway_sim import store as st
from gateway_sim.config import DRIVERS, STRATEGIES, RegistryConfig, StoreConfig
from gateway_sim.registry import SessionRegistry
from gateway_sim.transports import SyntheticTransport


async def open_registry(db_url: str, strategy: str, driver: str, **registry_kwargs) -> SessionRegistry:
    store = st.open_store(StoreConfig(db_url=db_url, driver=driver, pool_size=5, max_overflow=2, executor_threads=4))
    await store.run(st.create_schema)
    config = RegistryConfig(strategy=strategy, max_concurrent=4, batch_size=8, **registry_kwargs)
    return SessionRegistry(store, config)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_cycle_refreshes_removes_and_keeps(db_url: str, strategy: str, driver: str) -> None:
    registry = await open_registry(db_url, strategy, driver)
    try:
        transports = [SyntheticTransport() for _ in range(20)]
        ids = await registry.add_sessions(transports)
        transports[0].connected = False  # client gone: phase 1
        await registry.store.run(st.delete_session, ids[1])  # row deleted elsewhere: phase 2 "missing"
        before = await registry.store.run(st.all_session_ids)
        await asyncio.sleep(0.02)
        record = await registry.run_cleanup_cycle()
        assert record.checked == 20
        assert record.removed_disconnected == 1
        assert record.removed_missing == 1
        assert record.refreshed == 18
        assert record.refresh_errors == 0
        assert record.pool.checked_out_peak >= 1
        assert record.pool.checked_out_peak <= 7  # pool_size + max_overflow
        if strategy == "bounded":
            assert 1 <= record.max_inflight <= 4
        rows = await registry.store.run(st.all_session_ids)
        assert rows == before - {ids[0]}
        assert set(registry.sessions) == rows
    finally:
        await registry.close()
        await registry.store.close()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_injected_errors_never_remove_active_sessions(db_url: str, driver: str) -> None:
    registry = await open_registry(db_url, "bounded", driver)
    try:
        await registry.add_sessions([SyntheticTransport() for _ in range(12)])
        await registry.store.run(st.set_fault_knobs, None, None, 1.0)
        record = await registry.run_cleanup_cycle()
        assert record.refresh_errors == 12
        assert len(registry.sessions) == 12
        assert registry.removed.total() == 0
        await registry.store.run(st.set_fault_knobs, None, None, 0.0)
        record = await registry.run_cleanup_cycle()
        assert record.refresh_errors == 0 and record.refreshed == 12
    finally:
        await registry.close()
        await registry.store.close()


@pytest.mark.parametrize(("max_concurrent", "rounds"), [(1, 2), (4, 1)])
async def test_injected_latency_is_paid_once_per_refresh_statement(db_url: str, max_concurrent: int,
                                                                   rounds: int) -> None:
    """Two chunks of 8 each pay the trigger once: one after the other with one in flight, together with four."""
    registry = await open_registry(db_url, "batched", "async")
    registry.config = replace(registry.config, max_concurrent=max_concurrent)
    try:
        await registry.add_sessions([SyntheticTransport() for _ in range(16)])  # two chunks of 8
        await registry.run_cleanup_cycle()  # without latency: the pool's connections open here, not in the timing
        await registry.store.run(st.set_fault_knobs, 60.0, 0.0, None)
        record = await registry.run_cleanup_cycle()
        assert (record.refreshed, record.max_inflight) == (16, 2 // rounds)
        assert rounds * 60 <= record.phase2_ms < (rounds + 1) * 60
    finally:
        await registry.close()
        await registry.store.close()


async def test_ttl_sweep_uses_database_clock_and_removes_locally(db_url: str) -> None:
    registry = await open_registry(db_url, "bounded", "async", session_ttl=0.5)
    try:
        stale = await registry.add_sessions([SyntheticTransport()])
        await asyncio.sleep(0.8)
        fresh = await registry.add_sessions([SyntheticTransport()])
        record = await registry.run_cleanup_cycle()
        assert record.expired == 1
        assert stale[0] not in registry.sessions
        assert fresh[0] in registry.sessions
        assert registry.removed["expired"] == 1
    finally:
        await registry.close()
        await registry.store.close()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("removal", ["per-session", "batched"])
async def test_phase1_removal_deletes_the_rows_of_gone_sessions(db_url: str, driver: str, removal: str) -> None:
    registry = await open_registry(db_url, "batched", driver, phase1_removal=removal)
    try:
        transports = [SyntheticTransport() for _ in range(30)]
        ids = await registry.add_sessions(transports)
        gone = set(ids[::3])
        for transport, session_id in zip(transports, ids, strict=True):
            transport.connected = session_id not in gone
        record = await registry.run_cleanup_cycle()
        assert record.removed_disconnected == len(gone) == 10
        assert record.refreshed == 20 and record.refresh_errors == 0
        rows = await registry.store.run(st.all_session_ids)
        assert rows.isdisjoint(gone)
        assert set(registry.sessions) == set(ids) - gone
        assert set(ids) - gone <= rows
    finally:
        await registry.close()
        await registry.store.close()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_store_without_injected_faults_skips_them_while_they_stay_in_force(db_url: str, driver: str) -> None:
    """The CPU calibration's store: the trigger's latency and errors pass its connections by, and only them."""
    config = StoreConfig(db_url=db_url, driver=driver, pool_size=2, max_overflow=0, executor_threads=2)
    faulty, clean = st.open_store(config), st.open_store(config, injected_faults=False)
    try:
        await faulty.run(st.create_schema)
        await faulty.run(st.insert_sessions, ["fault-free-a"])

        async def refresh_ms(store: st.SessionStore) -> float:
            started = asyncio.get_running_loop().time()
            assert await store.refresh("fault-free-a")
            return (asyncio.get_running_loop().time() - started) * 1000.0

        await faulty.run(st.set_fault_knobs, 80.0, 0.0, None)
        await clean.refresh("fault-free-a")  # opens the connection
        assert await refresh_ms(faulty) >= 75
        assert await refresh_ms(clean) < 40
        await faulty.run(st.set_fault_knobs, 0.0, None, 1.0)
        with pytest.raises(Exception, match="injected refresh fault"):
            await faulty.refresh("fault-free-a")
        assert await clean.refresh("fault-free-a")
    finally:
        await faulty.run(st.set_fault_knobs, 0.0, 0.0, 0.0)
        await faulty.run(st.delete_session, "fault-free-a")
        await faulty.close()
        await clean.close()


async def test_the_calibrations_sweep_is_timed_and_deletes_no_row(db_url: str) -> None:
    """Its cut-off is older than any row: a stale row another gateway's sweep would delete stays."""
    from sqlalchemy import text

    from gateway_sim.costs import measure_costs

    registry = await open_registry(db_url, "bounded", "async", session_ttl=1.0)
    try:
        await registry.store.run(st.insert_sessions, ["stale-row"])

        def age(session: st.Executor) -> None:
            session.execute(text("UPDATE mcp_sessions SET last_accessed = now() - interval '1 day'"
                                 " WHERE session_id = :sid"), {"sid": "stale-row"})
            session.commit()

        await registry.store.run(age)
        costs = await measure_costs(registry.store, registry.config, samples=20, passes=3, warm_up_waves=6)
        assert costs.expiry.wall_ms > 0 and costs.model_costs()["expiry_ms"] > 0
        assert costs.refresh.wall_ms > 0 and costs.refresh.cpu_ms > 0
        assert "stale-row" in await registry.store.run(st.all_session_ids)
    finally:
        await registry.store.run(st.delete_session, "stale-row")
        await registry.close()
        await registry.store.close()


@pytest.mark.parametrize("strategy", ["bounded", "batched"])
async def test_a_calibration_burst_on_given_rows_refreshes_them_and_adds_none(db_url: str, strategy: str) -> None:
    from sqlalchemy import text

    from gateway_sim.costs import measure_costs

    registry = await open_registry(db_url, strategy, "async")
    try:
        ids = await registry.add_sessions([SyntheticTransport() for _ in range(30)])

        def stamps(session: st.Executor) -> dict[str, object]:
            rows = session.execute(text("SELECT session_id, last_accessed FROM mcp_sessions"))
            return {row[0]: row[1] for row in rows}

        before = await registry.store.run(stamps)
        await asyncio.sleep(0.02)
        costs = await measure_costs(registry.store, registry.config, samples=20, passes=2, refresh_ids=ids)
        after = await registry.store.run(stamps)
        assert costs.refresh.wall_ms > 0 and costs.check.cpu_ms > 0
        assert set(after) == set(before) == set(ids)  # no row of its own left, none of the given ones removed
        assert {sid for sid in ids if after[sid] != before[sid]} == set(ids[:20])  # the first 20, refreshed
        with pytest.raises(ValueError, match="fewer than samples"):
            await measure_costs(registry.store, registry.config, samples=20, refresh_ids=ids[:5])
    finally:
        await registry.close()
        await registry.store.close()


async def test_calibration_passes_out_of_range_are_refused() -> None:
    from gateway_sim.costs import measure_costs

    for passes in (0, 6):
        with pytest.raises(ValueError, match="passes"):
            await measure_costs(None, RegistryConfig(), samples=10, passes=passes)  # type: ignore[arg-type]
    for waves in (0, 11):
        with pytest.raises(ValueError, match="warm_up_waves"):
            await measure_costs(None, RegistryConfig(), samples=10, warm_up_waves=waves)  # type: ignore[arg-type]
