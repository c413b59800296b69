"""The gateway's other work between cycles, and how the per-cycle model takes it from the core it leaves."""

from __future__ import annotations

import time

from gateway_sim.config import RegistryConfig
from gateway_sim.metrics import CpuBetweenCycles
from gateway_sim.registry import SessionRegistry
from gateway_sim.transports import SyntheticTransport
from harness.scenario.calibrate import Calibration
from harness.scenario.summarize import cycle_cpu
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
