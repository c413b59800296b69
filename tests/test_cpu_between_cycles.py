"""The gateway's other work between cycles, and how the per-cycle model takes it from the core it leaves."""

from __future__ import annotations

import time

import pytest

from gateway_sim.config import RegistryConfig
from gateway_sim.metrics import CpuBetweenCycles
from gateway_sim.registry import SessionRegistry
from gateway_sim.transports import SyntheticTransport
from harness.scenario.calibrate import Calibration
from harness.scenario.summarize import cycle_cpu, cycle_model
from tests.fakes import FakeStore


def test_the_share_is_the_process_cpu_over_the_wall_time_since_the_last_end() -> None:
    meter = CpuBetweenCycles()
    assert meter.at_start() is None
    meter.at_end()
    time.sleep(0.1)
    idle = meter.at_start()
    meter.at_end()
    until = time.perf_counter() + 0.1
    while time.perf_counter() < until:
        pass
    busy = meter.at_start()
    assert idle is not None and busy is not None
    assert idle < 0.3 < busy <= 1.0


async def test_each_cycle_after_the_first_records_it() -> None:
    registry = SessionRegistry(FakeStore(), RegistryConfig(strategy="bounded"))
    await registry.add_sessions([SyntheticTransport() for _ in range(3)])
    first = await registry.run_cleanup_cycle()
    second = await registry.run_cleanup_cycle()
    assert first.cpu_between_cycles is None
    assert second.cpu_between_cycles is not None and 0.0 <= second.cpu_between_cycles <= 1.0
    assert "cpu_between_cycles" in second.as_dict()


def test_the_cycle_gets_the_calibrated_share_less_the_other_work() -> None:
    calibration = Calibration(refresh_ms=10.0, delete_ms=1.0, samples=5, cpu_refresh_ms=0.5, cpu_share=0.9)
    assert cycle_cpu(calibration, None)["cpu_share"] == 0.9
    assert cycle_cpu(calibration, 0.3)["cpu_share"] == 0.6
    assert cycle_cpu(calibration, 0.99)["cpu_share"] == 0.05  # never below a twentieth of a core
    assert cycle_cpu(Calibration(refresh_ms=10.0, delete_ms=1.0, samples=5), 0.3) == {}  # nothing calibrated


def test_a_cycles_removals_take_the_harness_delete_round_trip() -> None:
    calibration = Calibration(refresh_ms=10.0, delete_ms=0.8, samples=5, cpu_refresh_ms=0.2, cpu_remove_ms=0.05,
                              remove_delete_ms=0.4, cpu_share=1.0)
    config = {"strategy": "bounded", "phase1_removal": "per-session"}
    gone = cycle_model({"removed_disconnected": 40, "checked": 40, "total_ms": 34.0}, calibration, config, 100)
    none_gone = cycle_model({"removed_disconnected": 0, "checked": 0, "total_ms": 1.0}, calibration, config, 100)
    assert gone.model_ms - none_gone.model_ms == pytest.approx(40 * (0.8 + 0.05), abs=0.01)
    assert gone.model_ratio == pytest.approx(34.0 / gone.model_ms, abs=1e-3)
