"""The gateway's own cost of one refresh, one phase-1 check and one phase-1 removal, measured in its process.

A burst of each runs on a scratch registry (its own counters, no listeners: the gateway's accounting is not
touched) in the gateway's process, on a store of its own with the gateway's driver and pool settings, whose
connections the refresh trigger's injected faults skip: what is left is the gateway's own work. The injected
latency stays in force for everything else, so a calibration can run under load, between cleanup cycles.
CPU is the process's CPU time (``time.process_time``: the event loop and, for the thread driver, its threads).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from gateway_sim import store as st
from gateway_sim.config import RegistryConfig
from gateway_sim.registry import SessionRegistry
from gateway_sim.transports import SyntheticTransport

DEFAULT_SAMPLES = 300
MAX_SAMPLES = 5000


@dataclass(frozen=True)
class OpCost:
    """Process CPU and wall time of one operation, ms (means over the burst)."""

    cpu_ms: float
    wall_ms: float


@dataclass(frozen=True)
class CpuCosts:
    """What the model needs from the gateway: CPU of a refresh and a check, and a removal's two parts."""

    driver: str
    strategy: str
    samples: int
    refresh: OpCost
    check: OpCost
    remove_per_session: OpCost
    remove_batched: OpCost
    #: The TTL sweep's DELETE, with a cut-off no row is older than: its round trip and scan, nothing deleted.
    expiry: OpCost

    @property
    def cpu_refresh_ms(self) -> float:
        return self.refresh.cpu_ms

    @property
    def cpu_check_ms(self) -> float:
        return self.check.cpu_ms

    @property
    def cpu_remove_ms(self) -> float:
        """A removal's work besides its own DELETE round trip: the per-removal wall time of batched removal."""
        return self.remove_batched.wall_ms

    @property
    def delete_ms(self) -> float:
        """The DELETE round trip a per-session removal adds."""
        return max(0.0, self.remove_per_session.wall_ms - self.cpu_remove_ms)

    #: The share of a core this process got during a CPU-bound spin of the calibration (1 on an idle machine).
    cpu_share: float = 1.0

    def model_costs(self) -> dict[str, float]:
        """The model's ``cpu_*`` inputs, ``burst_refresh_ms`` (the burst's wall time per refresh), ``cpu_share`` and
        ``delete_ms``."""
        return {"cpu_refresh_ms": round(self.cpu_refresh_ms, 5), "burst_refresh_ms": round(self.refresh.wall_ms, 5),
                "cpu_check_ms": round(self.cpu_check_ms, 6),
                "cpu_remove_ms": round(self.cpu_remove_ms, 5), "delete_ms": round(self.delete_ms, 5),
                "expiry_ms": round(self.expiry.wall_ms, 5),
                "cpu_share": round(max(MIN_CPU_SHARE, self.cpu_share), 4)}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), **self.model_costs()}


MIN_CPU_SHARE = 0.05
"""The least share of a core the model is given (a spin squeezed out entirely would divide by nothing)."""
SPIN_SECONDS = 0.05
MAX_PASSES = 5
BATCHED_REMOVAL_PASSES = 3
"""A batched removal is one DELETE and the per-session work: cheap enough to take the median of three."""
NEVER_EXPIRES_S = 1e9
"""The calibration's sweep cut-off: no row is this old, so it deletes nothing."""


def cpu_share(seconds: float = SPIN_SECONDS) -> float:
    """The share of a core this process gets now: its CPU time over the wall time of a busy spin."""
    cpu, wall = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall < seconds:
        pass
    return min(1.0, (time.process_time() - cpu) / max(1e-9, time.perf_counter() - wall))


class _Burst:
    """Process CPU and wall time over a block, per operation."""

    def __init__(self, count: int) -> None:
        self.count = max(1, count)

    def __enter__(self) -> _Burst:
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cost = OpCost(cpu_ms=(time.process_time() - self._cpu) * 1000.0 / self.count,
                           wall_ms=(time.perf_counter() - self._wall) * 1000.0 / self.count)


async def _removal(store: st.SessionStore, config: RegistryConfig, mode: str, samples: int) -> OpCost:
    """Phase 1 over ``samples`` gone sessions with removal ``mode``."""
    scratch = SessionRegistry(store, replace(config, phase1_removal=mode), worker_id="calibration")
    await scratch.add_sessions([SyntheticTransport(connected=False) for _ in range(samples)])
    with _Burst(samples) as burst:
        await scratch.phase1()
    return burst.cost


CALIBRATION_APPLICATION = "mcp-loadtest-calibration"
"""The ``application_name`` of the calibration's connections (not counted as the gateway's)."""


PLANNED_WARM_UP_WAVES = 6
"""Postgres plans a prepared statement afresh for its first five executions on a connection and then keeps a
generic plan if that costs no more than the custom plans did: six warm-up waves take every connection of the
burst past that choice, so even its first timed pass costs what a cycle's refreshes cost."""
MAX_WARM_UP_WAVES = 10


async def _warm_up(registry: SessionRegistry, ids: Sequence[str], waves: int) -> None:
    """Open the connections one wave uses, each with its refresh statement planned as the gateway's are.

    One-id strategies: ``waves`` waves of ``max_concurrent`` refreshes over the same rows, so the timed burst
    updates every other row once, as a cycle does. Batched: ``waves`` waves of the burst itself, chunks of
    ``batch_size`` ids. Postgres chooses between a generic and a custom plan for ``= ANY(:ids)`` from the cost of
    the first five executions on the connection: one-id chunks make it keep planning every batch afresh (with
    the array's values, often another scan), where the gateway's connections, warmed by full chunks, keep the
    generic plan; that difference alone made the burst about twice the cycle's wave."""
    config = registry.config
    wave = ids if config.strategy == "batched" else ids[: config.max_concurrent]
    for _ in range(waves):
        await registry.refresh_connected(wave)


def _median(costs: list[OpCost]) -> OpCost:
    """The median CPU and the median wall time of a few measurements of the same operation."""
    return OpCost(cpu_ms=statistics.median(c.cpu_ms for c in costs),
                  wall_ms=statistics.median(c.wall_ms for c in costs))


async def median_burst(passes: int, count: int, operation: Callable[[], Awaitable[Any]]) -> OpCost:
    """The median of ``passes`` timed runs of ``operation``, each ``count`` operations."""
    costs = []
    for _ in range(passes):
        with _Burst(count) as burst:
            await operation()
        costs.append(burst.cost)
    return _median(costs)


async def sweep_cost(store: st.SessionStore) -> OpCost:
    """One TTL sweep that deletes nothing, right after the bursts: a cycle's sweep follows the previous cycle's
    refresh of every row and scans the row versions it left, as this one scans the bursts'. (Sweeps taken back
    to back come out a quarter to a third cheaper than that first one, and than the cycle's.)"""
    with _Burst(1) as sweep:
        await store.run(st.expire_sessions, NEVER_EXPIRES_S)
    return sweep.cost


def calibration_store(store: st.SessionStore) -> st.SessionStore:
    """A store like ``store`` (driver, pool) on connections of its own that the injected faults pass by."""
    return st.open_store(replace(store.config, application_name=CALIBRATION_APPLICATION), injected_faults=False)


def _check_limits(samples: int, passes: int, warm_up_waves: int, least_waves: int = 0) -> None:
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be in [1, {MAX_SAMPLES}]")
    if not 1 <= passes <= MAX_PASSES:
        raise ValueError(f"passes must be in [1, {MAX_PASSES}]")
    if not least_waves <= warm_up_waves <= MAX_WARM_UP_WAVES:
        raise ValueError(f"warm_up_waves must be in [{least_waves}, {MAX_WARM_UP_WAVES}]")


def _check_costs_args(samples: int, passes: int, warm_up_waves: int, refresh_ids: Sequence[str] | None) -> None:
    _check_limits(samples, passes, warm_up_waves, least_waves=1)
    if refresh_ids is not None and len(refresh_ids) < samples:
        raise ValueError(f"refresh_ids holds {len(refresh_ids)} rows, fewer than samples={samples}")


async def refresh_burst(own: st.SessionStore, config: RegistryConfig, ids: Sequence[str], passes: int = 1,
                        warm_up_waves: int = 0) -> tuple[OpCost, float]:
    """CPU and wall time per refresh of ``ids`` refreshed with ``config``'s strategy on ``own`` (a
    :func:`calibration_store`): the median of ``passes`` timed passes after ``warm_up_waves`` untimed waves; and
    the share of a core this process got just before (:func:`cpu_share`)."""
    _check_limits(len(ids), passes, warm_up_waves)
    scratch = SessionRegistry(own, config, worker_id="calibration")
    if warm_up_waves:
        await _warm_up(scratch, ids, warm_up_waves)
    share = cpu_share()
    # the median of the passes: the first one after the warm-up is the dearest
    refresh = await median_burst(passes, len(ids), lambda: scratch.refresh_connected(ids))
    return refresh, share


async def measure_costs(store: st.SessionStore, config: RegistryConfig,
                        samples: int = DEFAULT_SAMPLES, passes: int = 1, warm_up_waves: int = 1,
                        refresh_ids: Sequence[str] | None = None) -> CpuCosts:
    """:func:`measure_costs_on` a :func:`calibration_store` of ``store``'s, closed after."""
    _check_costs_args(samples, passes, warm_up_waves, refresh_ids)
    own = calibration_store(store)
    try:
        return await measure_costs_on(own, config, samples, passes, warm_up_waves, refresh_ids)
    finally:
        await own.close()


async def measure_costs_on(own: st.SessionStore, config: RegistryConfig,
                           samples: int = DEFAULT_SAMPLES, passes: int = 1, warm_up_waves: int = 1,
                           refresh_ids: Sequence[str] | None = None) -> CpuCosts:
    """Bursts of ``samples`` refreshes (with ``config``'s strategy; the median of ``passes``, after
    ``warm_up_waves`` untimed waves), checks and removals (both modes), on the fault-free store ``own``.

    The refreshes go to rows of their own, inserted for the burst, or with ``refresh_ids`` to the first
    ``samples`` of those existing rows: the very rows a cycle refreshes, in the state its refreshes left them
    (a bench point's own sessions), so the burst meets the same pages, versions and index entries as the cycle.
    """
    _check_costs_args(samples, passes, warm_up_waves, refresh_ids)
    scratch = SessionRegistry(own, config, worker_id="calibration")
    transports = [SyntheticTransport() for _ in range(samples)]
    ids = await scratch.add_sessions(transports) if refresh_ids is None else list(refresh_ids[:samples])
    refresh, share = await refresh_burst(own, config, ids, passes, warm_up_waves)
    with _Burst(samples) as check:
        for transport in transports:
            await transport.is_connected()
    await scratch.close()
    per_session = await _removal(own, config, "per-session", samples)
    batched = _median([await _removal(own, config, "batched", samples) for _ in range(BATCHED_REMOVAL_PASSES)])
    expiry = await sweep_cost(own)
    return CpuCosts(driver=own.config.driver, strategy=config.strategy, samples=samples, refresh=refresh,
                    check=check.cost, remove_per_session=per_session, remove_batched=batched, expiry=expiry,
                    cpu_share=share)
