"""The CPU calibration repeated under the load: its schedule, its medians, and the registry's hold-off."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway_sim.config import RegistryConfig
from gateway_sim.costs import _warm_up
from gateway_sim.registry import SessionRegistry
from harness.scenario.calibrate import Calibration, UnderLoadCalibration
from tests.fakes import FakeStore


def costs(burst: float) -> Calibration:
    return Calibration(refresh_ms=10.0 + burst, delete_ms=1.0, samples=15, cpu_refresh_ms=burst,
                       burst_refresh_ms=burst, remove_delete_ms=burst, cpu_share=0.9)


def test_under_load_costs_are_the_medians() -> None:
    before = Calibration(refresh_ms=10.0, delete_ms=1.0, samples=15, cpu_refresh_ms=0.3, burst_refresh_ms=0.4,
                         cpu_check_ms=0.001)
    after = before.with_costs_under_load([costs(0.5), costs(0.9), costs(0.6)])
    assert after.burst_refresh_ms == 0.6 and after.cpu_refresh_ms == 0.6 and after.remove_delete_ms == 0.6
    assert after.refresh_ms == 10.6  # the round trips under the load too
    assert after.cpu_share == 0.9 and after.under_load_bursts == 3 and after.samples == 15
    assert after.cpu_check_ms == 0.001  # none measured under the load: the one before stays
    assert before.with_costs_under_load([]) is before


def test_it_waits_for_the_ramp_then_takes_count() -> None:
    calls: list[float] = []

    def calibrate() -> Calibration:
        calls.append(time.monotonic())
        return costs(len(calls))

    started = time.monotonic()
    under_load = UnderLoadCalibration(calibrate, count=3, delay=0.2)
    under_load.start()
    taken = under_load.join(5.0) if _wait_for(lambda: len(calls) == 3) else []
    assert [c.burst_refresh_ms for c in taken] == [1, 2, 3]
    assert calls[0] - started >= 0.2


def test_one_that_ends_after_the_stop_is_not_counted() -> None:
    release = threading.Event()

    def calibrate() -> Calibration:
        release.wait(5.0)
        return costs(1.0)

    under_load = UnderLoadCalibration(calibrate, count=5, delay=0.0)
    under_load.start()
    time.sleep(0.1)
    under_load.stop()
    release.set()
    assert under_load.join(5.0) == []


def test_a_failure_ends_it_with_the_error_kept() -> None:
    def calibrate() -> Calibration:
        raise OSError("connection refused")

    under_load = UnderLoadCalibration(calibrate, count=5, delay=0.0)
    under_load.start()
    assert under_load.join(5.0) == []
    assert under_load.error == "OSError: connection refused"


def test_none_asked_starts_nothing() -> None:
    under_load = UnderLoadCalibration(lambda: costs(1.0), count=0, delay=0.0)
    under_load.start()
    assert under_load.join(0.1) == []


async def test_between_cycles_runs_after_a_cycle_and_holds_the_next_off() -> None:
    registry = SessionRegistry(FakeStore(), RegistryConfig(cleanup_interval=0.01))
    with pytest.raises(TimeoutError):
        await registry.between_cycles(_noop, timeout=0.05)  # no cycle ends: none runs
    order: list[str] = []
    held_off: list[asyncio.Future] = []

    async def work() -> str:
        order.append("work starts")
        held_off.append(asyncio.ensure_future(registry.run_cleanup_cycle()))
        await asyncio.sleep(0.05)
        order.append("a cycle ran inside the work" if held_off[0].done() else "work ends")
        return "done"

    waiting = asyncio.ensure_future(registry.between_cycles(work, timeout=2.0))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await registry.run_cleanup_cycle()
    assert await asyncio.wait_for(waiting, 2.0) == "done"
    await asyncio.wait_for(held_off[0], 2.0)  # it ran once the work was done
    assert order == ["work starts", "work ends"]


async def _noop() -> None:
    return None


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("waves", [1, 6])
async def test_the_batched_warm_up_is_waves_of_the_burst_itself(waves: int) -> None:
    """Full chunks, as the gateway's connections run them, so Postgres plans the batched UPDATE as it does there."""
    store = FakeStore()
    ids = [f"s{i}" for i in range(1200)]
    store.rows.update(ids)
    config = RegistryConfig(strategy="batched", max_concurrent=4, batch_size=500)
    await _warm_up(SessionRegistry(store, config, worker_id="calibration"), ids, waves=waves)
    assert store.chunks == [500, 500, 200] * waves and store.refresh_calls == 0


@pytest.mark.parametrize("waves", [1, 6])
async def test_the_bounded_warm_up_is_waves_of_one_id_refreshes(waves: int) -> None:
    """It opens a wave's connections and leaves the other rows to the timed burst, which then updates each once."""
    store = FakeStore()
    ids = [f"s{i}" for i in range(100)]
    store.rows.update(ids)
    config = RegistryConfig(strategy="bounded", max_concurrent=4)
    await _warm_up(SessionRegistry(store, config, worker_id="calibration"), ids, waves=waves)
    assert store.refresh_calls == 4 * waves and store.chunks == []
