"""The cleanup phases with fake transports and an in-memory store (pure logic, no server)."""

from __future__ import annotations

import pytest

from gateway_sim.config import STRATEGIES, RegistryConfig
from gateway_sim.registry import SessionRegistry
from gateway_sim.transports import StreamableHTTPTransport, SyntheticTransport
from tests.fakes import FakeStore


def make_registry(strategy: str = "bounded", max_concurrent: int = 5, **store_kwargs) -> SessionRegistry:
    store = FakeStore(**store_kwargs)
    return SessionRegistry(store, RegistryConfig(strategy=strategy, max_concurrent=max_concurrent, batch_size=7))


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_refresh_exception_keeps_the_session(strategy: str) -> None:
    registry = make_registry(strategy)
    ids = await registry.add_sessions([SyntheticTransport() for _ in range(10)])
    registry.store.failing = {ids[3]}
    record = await registry.run_cleanup_cycle()
    assert ids[3] in registry.sessions
    assert record.refresh_errors >= 1
    assert registry.removed.total() == 0
    assert len(registry.sessions) == 10


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_missing_row_removes_the_session_locally(strategy: str) -> None:
    registry = make_registry(strategy)
    ids = await registry.add_sessions([SyntheticTransport() for _ in range(10)])
    registry.store.rows.discard(ids[0])
    registry.store.rows.discard(ids[9])
    record = await registry.run_cleanup_cycle()
    assert record.removed_missing == 2
    assert record.refreshed == 8
    assert ids[0] not in registry.sessions and ids[9] not in registry.sessions
    assert registry.removed["missing"] == 2


@pytest.mark.parametrize("max_concurrent", [1, 3, 8])
async def test_semaphore_is_never_exceeded(max_concurrent: int) -> None:
    registry = make_registry("bounded", max_concurrent, delay=0.002)
    await registry.add_sessions([SyntheticTransport() for _ in range(40)])
    record = await registry.run_cleanup_cycle()
    assert registry.store.inflight_peak == max_concurrent
    assert record.max_inflight == max_concurrent
    assert record.refreshed == 40


async def test_gather_is_unbounded_and_sequential_is_one_at_a_time() -> None:
    gather = make_registry("gather", delay=0.002)
    await gather.add_sessions([SyntheticTransport() for _ in range(25)])
    assert (await gather.run_cleanup_cycle()).max_inflight == 25
    sequential = make_registry("sequential", delay=0.001)
    await sequential.add_sessions([SyntheticTransport() for _ in range(10)])
    assert (await sequential.run_cleanup_cycle()).max_inflight == 1


async def test_batched_sends_one_call_per_chunk() -> None:
    registry = make_registry("batched")
    await registry.add_sessions([SyntheticTransport() for _ in range(20)])
    record = await registry.run_cleanup_cycle()
    assert record.refreshed == 20
    assert registry.store.refresh_calls == 0  # no single-row refreshes
    assert registry.store.chunks == [7, 7, 6]  # batch size 7: ceil(20 / 7) statements, each at most 7 ids


async def test_batched_chunks_are_in_flight_together_up_to_max_concurrent() -> None:
    wide = make_registry("batched", max_concurrent=5, delay=0.005)
    await wide.add_sessions([SyntheticTransport() for _ in range(20)])
    assert (await wide.run_cleanup_cycle()).max_inflight == 3  # three chunks, all at once
    narrow = make_registry("batched", max_concurrent=2, delay=0.005)
    await narrow.add_sessions([SyntheticTransport() for _ in range(70)])
    record = await narrow.run_cleanup_cycle()
    assert (record.max_inflight, record.refreshed, sorted(narrow.store.chunks)) == (2, 70, [7] * 10)


async def test_phase1_removes_disconnected_and_skips_non_persistent() -> None:
    registry = make_registry()
    transports = [SyntheticTransport() for _ in range(6)]
    ids = await registry.add_sessions(transports)
    http_id = await registry.add_session(StreamableHTTPTransport())
    transports[1].connected = False
    transports[4].connected = False
    record = await registry.run_cleanup_cycle()
    assert record.checked == 6  # the Streamable HTTP session has no connection to check
    assert record.removed_disconnected == 2
    assert record.refreshed == 4
    assert {ids[1], ids[4]}.isdisjoint(registry.sessions)
    assert ids[1] not in registry.store.rows  # its row is deleted too
    assert http_id in registry.sessions


async def test_accounting_balances_created_removed_active() -> None:
    registry = make_registry()
    transports = [SyntheticTransport() for _ in range(8)]
    await registry.add_sessions(transports)
    transports[0].connected = False
    await registry.run_cleanup_cycle()
    acct = registry.accounting()
    assert acct["created"] == acct["removed"] + acct["active"] == 8
    await registry.close()
    acct = registry.accounting()
    assert acct["active"] == 0 and acct["removed"] == 8
    assert registry.store.rows == set()


def make_phase1_registry(removal: str) -> SessionRegistry:
    return SessionRegistry(FakeStore(), RegistryConfig(phase1_removal=removal))


@pytest.mark.parametrize("removal", ["per-session", "batched"])
async def test_phase1_removal_deletes_every_gone_row(removal: str) -> None:
    registry = make_phase1_registry(removal)
    transports = [SyntheticTransport() for _ in range(10)]
    ids = await registry.add_sessions(transports)
    for i in (2, 5, 7):
        transports[i].connected = False
    record = await registry.run_cleanup_cycle()
    assert record.removed_disconnected == 3 and record.refreshed == 7
    assert record.phase1_removal == removal
    assert registry.store.rows == set(registry.sessions) == set(ids) - {ids[2], ids[5], ids[7]}
    if removal == "batched":
        assert registry.store.statements == [("delete_gone_sessions", 3)]  # one statement for all three
    else:
        assert registry.store.statements == [("delete_session", 1)] * 3  # one per gone session


async def test_batched_phase1_sends_nothing_when_nobody_left() -> None:
    registry = make_phase1_registry("batched")
    await registry.add_sessions([SyntheticTransport() for _ in range(4)])
    await registry.run_cleanup_cycle()
    assert registry.store.statements == []


async def test_batched_phase1_failed_delete_is_retried_next_cycle() -> None:
    registry = make_phase1_registry("batched")
    transports = [SyntheticTransport() for _ in range(5)]
    ids = await registry.add_sessions(transports)
    transports[0].connected = transports[1].connected = False
    registry.store.fail_deletes = True
    record = await registry.run_cleanup_cycle()
    assert record.removed_disconnected == 2  # the clients are gone either way
    assert {ids[0], ids[1]} <= registry.store.rows  # their rows could not be deleted yet
    registry.store.fail_deletes = False
    await registry.run_cleanup_cycle()
    assert registry.store.rows == set(registry.sessions) == set(ids[2:])
