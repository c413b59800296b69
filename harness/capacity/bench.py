"""Measure cleanup cycles directly, in-process, on real Postgres, beside the model's prediction.

Each point registers N synthetic sessions (transports that report connected) in a real registry
(``--registry sim``, this project's, or ``contextforge``, ContextForge's own, measured in its environment's Python
in a process of its own), calibrates one refresh (``L_refresh``, the registry's own) and one phase-1 check in the
same run, runs a warm-up cycle and then ``--repeats`` measured cycles, and compares the median with the model.
``--strategy``, ``--driver`` and ``--batch-size`` apply to sim points; contextforge points run what upstream does
(``bounded``, ``thread``). Sim points also calibrate, in the same process, the CPU of one refresh, phase-1 check
and removal (:mod:`gateway_sim.costs`, at zero latency) for the model's CPU roof, and before each measured cycle
take the burst (on the point's own rows), the TTL sweep and ``L_refresh`` again: each cycle is modelled with the
costs taken just before it, and ``model_ratio`` is the median of the cycles' measured/model (``cycle_ratios``).
With ``--disconnected-ratio r`` a share r of the N sessions is disconnected: before each cycle round(N × r) fresh
disconnected sessions are registered, so every cycle's phase 1 removes that many (``--phase1-removal``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway_sim import store as st
from gateway_sim.config import GatewayConfig, RegistryConfig, StoreConfig
from gateway_sim.costs import (
    MAX_PASSES,
    MAX_SAMPLES,
    MIN_CPU_SHARE,
    PLANNED_WARM_UP_WAVES,
    OpCost,
    calibration_store,
    measure_costs_on,
    median_burst,
    refresh_burst,
    sweep_cost,
)
from gateway_sim.gc_tuning import tuned_gc
from gateway_sim.pool_monitor import percentile
from gateway_sim.registry import SessionRegistry
from gateway_sim.registry_api import Registry, create_registry
from gateway_sim.settings import CONTEXTFORGE_FIXED, SIM_ONLY, STRATEGIES, default_field
from gateway_sim.transports import SyntheticTransport
from harness.capacity.model import ModelInput, ModelResult, model_input, predict
from harness.errors import UsageError
from harness.scenario.calibrate import calibrate_registry
from harness.settings import DEFAULT_RESERVED_CONNECTIONS, GRID_KNOBS, SETTINGS
from harness.sut.dbsync import sync_session
from harness.sut.gateway_proc import this_checkout_first

BENCH_LISTS = ("phase1_removal",)
"""Bench-only grid axes (beside :data:`GRID_KNOBS`)."""


def _default(name: str) -> Any:
    return default_field(SETTINGS[name])


@dataclass(frozen=True)
class BenchPoint:
    """One configuration to measure (defaults: the settings table's)."""

    strategy: str
    driver: str
    sessions: int
    max_concurrent: int
    db_latency_ms: float
    db_jitter_ms: float = 0.0
    pool_size: int = _default("pool_size")
    max_overflow: int = _default("max_overflow")
    pool_timeout: float = _default("pool_timeout")
    executor_threads: int = _default("executor_threads")
    batch_size: int = _default("batch_size")
    registry_name: str = "sim"
    phase1_removal: str = _default("phase1_removal")
    disconnected_ratio: float = 0.0

    @property
    def disconnected(self) -> int:
        """Disconnected sessions in each cycle (of ``sessions``)."""
        return round(self.sessions * self.disconnected_ratio)

    @property
    def connected(self) -> int:
        """Connected sessions in each cycle."""
        return self.sessions - self.disconnected

    def model_input(self, refresh_ms: float, check_ms: float, max_connections: int,
                    reserved_connections: int, delete_ms: float = 0.0,
                    cpu: Mapping[str, float] | None = None) -> ModelInput:
        """The model's input for this point with the given costs and server limits."""
        knobs = {k: v for k, v in asdict(self).items() if k != "registry_name"}
        return model_input({**knobs, "reserved_connections": reserved_connections},
                           sessions=self.connected, refresh_ms=refresh_ms, check_ms=check_ms,
                           max_connections=max_connections, disconnected=self.disconnected, delete_ms=delete_ms,
                           cpu=cpu)


@dataclass(frozen=True)
class BenchRow:
    """A measured (or skipped) point: the bench JSON's row."""

    strategy: str
    driver: str
    sessions: int
    max_concurrent: int
    db_latency_ms: float
    pool_size: int
    max_overflow: int
    executor_threads: int | None
    batch_size: int
    measured_ms: float | None
    measured_ms_p95: float | None
    model_ms: float
    model_ratio: float | None
    c_eff: int
    binding: str
    refresh_ms: float | None
    check_ms: float | None
    skipped: bool
    note: str = ""
    phase1_removal: str = "per-session"
    disconnected: int = 0
    phase1_ms: float | None = None
    model_phase1_ms: float | None = None
    cpu_refresh_ms: float | None = None
    burst_refresh_ms: float | None = None
    cpu_check_ms: float | None = None
    cpu_remove_ms: float | None = None
    delete_ms: float | None = None
    cpu_share: float | None = None
    expiry_ms: float | None = None
    model_terms: dict[str, float] = field(default_factory=dict)
    cycle_cpu_ms: float | None = None  # this process's CPU time over a measured cycle (median)
    registry: str = "sim"
    cycles_ms: list[float] = field(default_factory=list)
    #: measured/model of each cycle, each beside the burst taken just before it (``model_ratio`` is their median)
    cycle_ratios: list[float] = field(default_factory=list)
    max_inflight: int = 0
    pool_exhausted_fraction: float = 0.0
    checked_out_peak: int = 0
    waiters_peak: int = 0
    wait_ms_p95: float = 0.0
    pool_timeouts: int = 0
    executor_queue_peak: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expand(points: dict[str, Sequence[Any]], fixed: dict[str, Any]) -> list[BenchPoint]:
    """The cartesian product of the listed knobs, with ``fixed`` knobs added to every point."""
    names = list(points)
    return [BenchPoint(**dict(zip(names, combo, strict=True)), **fixed)
            for combo in itertools.product(*(points[n] for n in names))]


def _drop_session_tables(session: Session) -> None:
    """Each point starts on tables created by its own registry from its own model."""
    session.execute(text("DROP TABLE IF EXISTS mcp_messages, mcp_sessions CASCADE"))
    session.commit()


def _reserved_connections(session: Session) -> int:
    return int(session.execute(text("SELECT current_setting('superuser_reserved_connections')::int")).scalar_one())


async def _check_ms(registry: Registry) -> float:
    """Mean cost of one phase-1 check, measured on this point's transports."""
    started = time.perf_counter()
    for transport in registry.sessions.values():
        await transport.is_connected()
    return (time.perf_counter() - started) * 1000.0 / max(1, len(registry.sessions))


async def _refresh_ms(registry: Registry, point: BenchPoint) -> float:
    """``L_refresh``: the registry's own refresh one at a time, or for batched one statement of a full chunk."""
    if point.strategy == "batched" and isinstance(registry, SessionRegistry):
        return await _batch_refresh_ms(registry, point.batch_size)
    return (await calibrate_registry(registry)).refresh_ms


async def _batch_refresh_ms(registry: SessionRegistry, batch_size: int, samples: int = 3) -> float:
    """Median wall time of one batched refresh statement of a full chunk (the batched strategy's ``L_refresh``)."""
    ids = list(registry.sessions)[:batch_size]
    return (await median_burst(samples, 1, lambda: registry.store.refresh_many(ids))).wall_ms


BOUNDED_BURST = 2000
"""Refreshes in a bench point's zero-latency burst, at most: enough for the cycle's concurrency to settle."""
BURST_BUDGET = 4000
"""Refreshes over all of a point's burst passes, at most (:func:`burst_passes`)."""


def burst_samples(point: BenchPoint) -> int:
    """Sessions in the point's zero-latency calibration burst: up to :data:`BOUNDED_BURST` refreshes, and for
    batched a full wave of chunks (``batch_size × max_concurrent`` ids, at most ``MAX_SAMPLES``), so the burst
    meets the database with as many statements at once as the cycle does."""
    if point.strategy == "batched":
        return max(1, min(point.connected, point.batch_size * point.max_concurrent, MAX_SAMPLES))
    return max(1, min(point.connected, BOUNDED_BURST))


BATCHED_BURST_PASSES = MAX_PASSES
"""Timed passes of a batched burst: a pass is a wave of at most ``max_concurrent`` statements, a few tenths of a
second, whose wall time moves by half from one pass to the next; the median of five holds still."""


def burst_passes(samples: int, strategy: str = "bounded") -> int:
    """Timed passes of a point's burst: up to :data:`MAX_PASSES` for bursts that are small (noisy, and the first
    pass is the dearest), fewer where :data:`BURST_BUDGET` refreshes would be exceeded; :data:`BATCHED_BURST_PASSES`
    for the batched strategy, whose burst is a few statements however many sessions it refreshes."""
    if strategy == "batched":
        return BATCHED_BURST_PASSES
    return max(1, min(MAX_PASSES, BURST_BUDGET // max(1, samples)))


@dataclass(frozen=True)
class ServerLimits:
    """What the server allows: ``max_connections`` and the connections it reserves for superusers."""

    max_connections: int = 100
    reserved_connections: int = DEFAULT_RESERVED_CONNECTIONS


def server_limits(db_url: str) -> ServerLimits:
    """Read the server's own limits (the model's connection budget) once."""
    with sync_session(db_url, application_name="mcp-loadtest-bench") as session:
        return ServerLimits(int(st.db_activity(session)["max_connections"]), _reserved_connections(session))


def nominal(point: BenchPoint, limits: ServerLimits = ServerLimits()) -> ModelResult:
    """The model with the nominal latency (+1 ms of overhead) and the server's limits: how long a point would
    take before it runs (to skip hopeless ones) and what a skipped row reports."""
    return predict(point.model_input(point.db_latency_ms + 1.0, 0.0, limits.max_connections,
                                     limits.reserved_connections))


def point_config(point: BenchPoint, db_url: str) -> GatewayConfig:
    """The gateway configuration a point's registry is built from."""
    store = StoreConfig(db_url=db_url, driver=point.driver, pool_size=point.pool_size,
                        max_overflow=point.max_overflow, pool_timeout=point.pool_timeout,
                        executor_threads=point.executor_threads, application_name="mcp-gateway-sim:bench")
    registry = RegistryConfig(strategy=point.strategy, max_concurrent=point.max_concurrent, batch_size=point.batch_size,
                              phase1_removal=point.phase1_removal)
    contextforge = point.registry_name == "contextforge"
    return GatewayConfig(store=store, registry=registry, worker_id="bench", registry_name=point.registry_name,
                         loop_executor_threads=point.executor_threads if contextforge else None)


async def measure_point(point: BenchPoint, db_url: str, repeats: int = 3) -> BenchRow:
    """Run one point on fresh tables, in this process, and return its row."""
    with sync_session(db_url, application_name="mcp-loadtest-bench") as session:
        _drop_session_tables(session)
    registry = create_registry(point_config(point, db_url))
    try:
        await registry.start()
        store = registry.store
        await store.run(st.create_schema)
        await store.run(st.set_fault_knobs, point.db_latency_ms, point.db_jitter_ms, 0.0)
        max_connections = int((await store.run(st.db_activity))["max_connections"])
        reserved = await store.run(_reserved_connections)
        await registry.add_sessions([SyntheticTransport() for _ in range(point.connected)])

        async def cycle() -> Any:
            if point.disconnected:
                await registry.add_sessions([SyntheticTransport(connected=False) for _ in range(point.disconnected)])
            return await registry.run_cleanup_cycle()

        await cycle()  # warm-up: opens the pool's connections
        # the CPU costs on connections that the point's injected latency passes by (sim registries only)
        own = calibration_store(registry.store) if isinstance(registry, SessionRegistry) else None
        try:
            cpu: dict[str, float] = {}
            pairs: list[CycleCosts] = []
            if own is not None:
                samples = burst_samples(point)
                passes = burst_passes(samples, point.strategy)
                ids = list(registry.sessions)[:samples]
                costs = await measure_costs_on(own, registry.config, samples, passes, PLANNED_WARM_UP_WAVES,
                                               refresh_ids=ids)
                cpu = costs.model_costs()
            # L_refresh once for the point only where no cycle takes its own (contextforge points)
            refresh_ms = await _refresh_ms(registry, point) if own is None else 0.0
            check_ms = await _check_ms(registry)
            records, cpu_ms, pool_seconds = [], [], [0.0, 0.0]
            for _ in range(repeats):
                if own is not None:  # each cycle beside costs of its own, taken just before it
                    pairs.append(await cycle_costs(registry, own, point, ids, passes))
                before = registry.monitor.snapshot()
                started = time.process_time()
                records.append(await cycle())
                cpu_ms.append((time.process_time() - started) * 1000.0)
                after = registry.monitor.snapshot()
                pool_seconds[0] += after.exhausted_seconds - before.exhausted_seconds
                pool_seconds[1] += after.uptime_seconds - before.uptime_seconds
        finally:
            if own is not None:
                await own.close()
    finally:
        await registry.stop()
    totals = [r.total_ms for r in records]
    measured = statistics.median(totals)
    inp = point.model_input(refresh_ms, check_ms, max_connections, reserved, cpu.get("delete_ms", 0.0), cpu)
    paired = paired_models(inp, pairs)
    if paired:  # the row reports the medians of the cycles' costs
        inp = replace(inp, **{name: statistics.median(getattr(i, name) for i in paired) for name in PAIRED_COSTS})
        refresh_ms = inp.refresh_ms
    result = predict(inp)
    phase1 = predict(replace(inp, sessions=0))
    models = [predict(i).model_ms for i in paired] or [result.model_ms] * len(totals)
    ratios = [t / m for t, m in zip(totals, models, strict=True) if m > 0]
    return BenchRow(
        strategy=point.strategy, driver=point.driver, sessions=point.sessions,
        max_concurrent=point.max_concurrent, db_latency_ms=point.db_latency_ms, pool_size=point.pool_size,
        max_overflow=point.max_overflow,
        executor_threads=point.executor_threads if point.driver == "thread" else None,
        batch_size=point.batch_size, measured_ms=round(measured, 3),
        measured_ms_p95=round(percentile(totals, 95), 3), model_ms=round(statistics.median(models), 3),
        model_ratio=round(statistics.median(ratios), 3) if ratios else None,
        cycle_ratios=[round(r, 3) for r in ratios],
        c_eff=result.c_eff, binding=result.binding, refresh_ms=round(refresh_ms, 3),
        check_ms=round(check_ms, 5), skipped=False, cycles_ms=totals,
        phase1_removal=point.phase1_removal, disconnected=point.disconnected,
        phase1_ms=round(statistics.median(r.phase1_ms for r in records), 3),
        model_phase1_ms=round(phase1.model_ms, 3), cpu_refresh_ms=round(inp.cpu_refresh_ms, 5) if cpu else None,
        burst_refresh_ms=round(inp.burst_refresh_ms, 5) if cpu else None,
        cpu_check_ms=cpu.get("cpu_check_ms"), cpu_remove_ms=cpu.get("cpu_remove_ms"), delete_ms=cpu.get("delete_ms"),
        cpu_share=round(inp.cpu_share, 4) if cpu else None, expiry_ms=round(inp.expiry_ms, 5) if cpu else None,
        model_terms=result.terms,
        cycle_cpu_ms=round(statistics.median(cpu_ms), 3),
        max_inflight=max(r.max_inflight for r in records),
        pool_exhausted_fraction=round(pool_seconds[0] / max(1e-9, pool_seconds[1]), 4),
        checked_out_peak=max(r.pool.checked_out_peak for r in records),
        waiters_peak=max(r.pool.waiters_peak for r in records),
        wait_ms_p95=max(r.pool.wait_ms_p95 for r in records),
        pool_timeouts=sum(r.pool.timeouts for r in records),
        executor_queue_peak=max(r.pool.executor_queue_peak for r in records),
        errors=sum(r.refresh_errors for r in records), registry=point.registry_name,
    )


@dataclass(frozen=True)
class CycleCosts:
    """The costs taken again just before one measured cycle: the refresh burst (and the core share before it),
    the TTL sweep's wall time and ``L_refresh``."""

    burst: OpCost
    cpu_share: float
    expiry_ms: float
    refresh_ms: float


PAIRED_COSTS = ("cpu_refresh_ms", "burst_refresh_ms", "cpu_share", "expiry_ms", "refresh_ms")
"""The model's inputs each cycle takes from its own :class:`CycleCosts` (the rest are the point's)."""


async def cycle_costs(registry: SessionRegistry, own: st.SessionStore, point: BenchPoint, ids: Sequence[str],
                       passes: int) -> CycleCosts:
    """The costs a cycle is modelled with, taken just before it (the burst on ``own``, a calibration store)."""
    burst, share = await refresh_burst(own, registry.config, ids, passes)
    expiry = await sweep_cost(own)
    return CycleCosts(burst, share, expiry.wall_ms, await _refresh_ms(registry, point))


def paired_models(inp: ModelInput, pairs: Sequence[CycleCosts]) -> list[ModelInput]:
    """The model's input for each measured cycle: ``inp`` with the costs taken just before that cycle."""
    return [replace(inp, cpu_refresh_ms=c.burst.cpu_ms, burst_refresh_ms=c.burst.wall_ms,
                    cpu_share=max(MIN_CPU_SHARE, c.cpu_share), expiry_ms=c.expiry_ms, refresh_ms=c.refresh_ms)
            for c in pairs]


def measure_in_env(point: BenchPoint, db_url: str, repeats: int, python: str) -> BenchRow:
    """Measure a point in a process of the given interpreter (the contextforge environment's)."""
    payload = json.dumps({"point": asdict(point), "db_url": db_url, "repeats": repeats})
    out = subprocess.run([python, "-m", "harness.capacity.bench_point"], input=payload, capture_output=True,
                         text=True, check=False, timeout=3600, env=this_checkout_first())
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-2:]) or f"exit {out.returncode}"
        raise RuntimeError(f"{point.registry_name} point N={point.sessions} failed: {tail}")
    return BenchRow(**json.loads(out.stdout.strip().splitlines()[-1]))


def measure(point: BenchPoint, db_url: str, repeats: int, pythons: Mapping[str, str] | None = None) -> BenchRow:
    """A point measured where its registry lives: in this process, or in its environment's interpreter."""
    python = (pythons or {}).get(point.registry_name)
    if python is not None:
        return measure_in_env(point, db_url, repeats, python)
    return measure_here(point, db_url, repeats)


def measure_here(point: BenchPoint, db_url: str, repeats: int) -> BenchRow:
    """A point measured in this process, in an event loop of its own, under the gateway's collector settings
    (each point starts from a collected, frozen heap; Python's settings come back after it)."""
    with tuned_gc():
        return asyncio.run(measure_point(point, db_url, repeats))


def skipped_row(point: BenchPoint, result: ModelResult, note: str) -> BenchRow:
    """A row for a point not run, with the model's nominal prediction (:func:`nominal`)."""
    return BenchRow(
        strategy=point.strategy, driver=point.driver, sessions=point.sessions,
        max_concurrent=point.max_concurrent, db_latency_ms=point.db_latency_ms, pool_size=point.pool_size,
        max_overflow=point.max_overflow,
        executor_threads=point.executor_threads if point.driver == "thread" else None,
        batch_size=point.batch_size, measured_ms=None, measured_ms_p95=None, model_ms=round(result.model_ms, 3),
        model_ratio=None, c_eff=result.c_eff, binding=result.binding, refresh_ms=None, check_ms=None,
        skipped=True, note=note, registry=point.registry_name, phase1_removal=point.phase1_removal,
        disconnected=point.disconnected,
    )


SHORT_CYCLE_MS = 100.0
"""Points the model puts under this many ms are measured over at least :data:`SHORT_CYCLE_REPEATS` cycles."""
SHORT_CYCLE_REPEATS = 9


def point_repeats(repeats: int, predicted_ms: float) -> int:
    """Cycles measured for a point: ``repeats``, and at least :data:`SHORT_CYCLE_REPEATS` for a short cycle, whose
    median moves most with one slow cycle and whose extra cycles cost under a second."""
    return max(repeats, SHORT_CYCLE_REPEATS) if predicted_ms < SHORT_CYCLE_MS else repeats


def run_points(points: Iterable[BenchPoint], db_url: str, repeats: int, max_seconds: float,
               pythons: Mapping[str, str] | None = None) -> list[BenchRow]:
    """Measure each point in its own event loop, skipping those the model says exceed ``max_seconds``.

    ``pythons`` maps a registry to the interpreter its points run in (``contextforge`` to its environment's).
    """
    rows = []
    limits = server_limits(db_url)
    for point in points:
        predicted = nominal(point, limits)
        if predicted.model_ms > max_seconds * 1000.0:
            note = f"model {predicted.model_ms / 1000:.0f} s > --max-point-seconds {max_seconds:g}"
            rows.append(skipped_row(point, predicted, note))
            continue
        rows.append(measure(point, db_url, point_repeats(repeats, predicted.model_ms), pythons))
    return rows


def speedups(rows: Sequence[BenchRow]) -> list[str]:
    """Ratios measured side by side in this run: batched vs bounded, bounded vs sequential/gather."""
    lines = []
    by_key: dict[tuple[Any, ...], dict[str, BenchRow]] = {}
    for row in rows:
        if row.measured_ms is None:
            continue
        key = (row.registry, row.driver, row.sessions, row.db_latency_ms, row.pool_size, row.executor_threads,
               row.phase1_removal, row.disconnected)
        by_key.setdefault(key, {})[f"{row.strategy}@{row.max_concurrent}"] = row
    for (registry, driver, sessions, latency, *_), group in by_key.items():
        bounded = [r for k, r in group.items() if k.startswith("bounded@")]
        for base in bounded:
            for other_name in ("batched", "sequential", "gather"):
                for other in (r for k, r in group.items() if k.startswith(f"{other_name}@")):
                    ratio = (base.measured_ms or 0) / max(other.measured_ms or 0, 1e-9)
                    lines.append(
                        f"{registry} {driver} N={sessions} L={latency:g} ms: bounded c={base.max_concurrent} "
                        f"{base.measured_ms:.1f} ms / {other_name} {other.measured_ms:.1f} ms = {ratio:.2f}×"
                    )
    return lines + parity(rows) + phase1_speedups(rows)


def phase1_speedups(rows: Sequence[BenchRow]) -> list[str]:
    """Phase 1 per-session vs batched removal, measured side by side at the same disconnects per cycle."""
    by_key: dict[tuple[Any, ...], dict[str, BenchRow]] = {}
    for row in rows:
        if row.phase1_ms is not None and row.disconnected:
            key = (row.driver, row.strategy, row.sessions, row.disconnected, row.db_latency_ms, row.max_concurrent)
            by_key.setdefault(key, {})[row.phase1_removal] = row
    lines = []
    for (driver, strategy, _, disconnected, *_), group in by_key.items():
        if "per-session" in group and "batched" in group:
            ps, b = group["per-session"], group["batched"]
            lines.append(
                f"{driver} {strategy} D={disconnected}: phase 1 per-session {ps.phase1_ms:.1f} ms "
                f"(model {ps.model_phase1_ms:.1f}) / batched {b.phase1_ms:.1f} ms (model {b.model_phase1_ms:.1f}) "
                f"= {(ps.phase1_ms or 0) / max(b.phase1_ms or 0, 1e-9):.1f}×"
            )
    return lines


def parity(rows: Sequence[BenchRow]) -> list[str]:
    """contextforge vs sim, measured side by side at the same knobs (both bounded on threads)."""
    sim = {_parity_key(r): r for r in rows if r.registry == "sim" and r.measured_ms is not None}
    lines = []
    for row in rows:
        other = sim.get(_parity_key(row))
        if row.registry != "contextforge" or row.measured_ms is None or other is None:
            continue
        lines.append(f"N={row.sessions} L={row.db_latency_ms:g} ms c={row.max_concurrent}: contextforge "
                     f"{row.measured_ms:.1f} ms / sim {other.measured_ms:.1f} ms = "
                     f"{row.measured_ms / max(other.measured_ms or 0, 1e-9):.3f}× (refresh {row.refresh_ms} vs "
                     f"{other.refresh_ms} ms)")
    return lines


def _parity_key(row: BenchRow) -> tuple[Any, ...]:
    return (row.strategy, row.driver, row.sessions, row.max_concurrent, row.db_latency_ms, row.pool_size,
            row.max_overflow, row.executor_threads)


def render(rows: Sequence[BenchRow]) -> None:
    """Print the rows as a table and the side-by-side ratios."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cleanup cycle: measured vs model")
    disconnects = any(r.disconnected for r in rows)
    columns = ["registry", "strategy", "driver", "N", "c", "L ms", "measured ms", "model ms", "measured/model",
               "c_eff", "binding", "pool peak", "waiters", "note"]
    if disconnects:
        columns[6:6] = ["phase 1", "D", "phase1 ms", "model p1 ms"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("registry", "strategy", "driver", "binding", "note",
                                                        "phase 1") else "right")
    for r in rows:
        phase1 = [r.phase1_removal, str(r.disconnected), "-" if r.phase1_ms is None else f"{r.phase1_ms:.1f}",
                  "-" if r.model_phase1_ms is None else f"{r.model_phase1_ms:.1f}"] if disconnects else []
        table.add_row(
            r.registry, r.strategy, r.driver, str(r.sessions), str(r.max_concurrent), f"{r.db_latency_ms:g}",
            *phase1,
            "-" if r.measured_ms is None else f"{r.measured_ms:.1f}", f"{r.model_ms:.1f}",
            "-" if r.model_ratio is None else f"{r.model_ratio:.3f}", str(r.c_eff), r.binding,
            str(r.checked_out_peak), str(r.waiters_peak), r.note,
        )
    console = Console(width=160)
    console.print(table)
    for line in speedups(rows):
        console.print(line)


def points_from_args(values: Any) -> list[BenchPoint]:
    """The grid a namespace or mapping of knobs describes: the grid knobs are lists, the rest single values
    (executor sizes vary only for the thread driver)."""
    knobs = values if isinstance(values, Mapping) else vars(values)
    sim_only = sim_only_knobs(knobs.get("registry_name") or ["sim"], {name: knobs.get(name) for name in SIM_ONLY})
    knobs = {**knobs, **sim_only, "registry_name": knobs.get("registry_name") or ["sim"]}
    lists = {name: list(knobs[name]) for name in (*GRID_KNOBS, *BENCH_LISTS) if knobs.get(name) is not None}
    fixed = {"db_jitter_ms": knobs["db_jitter_ms"], "pool_timeout": knobs["pool_timeout"],
             "disconnected_ratio": knobs.get("disconnected_ratio") or 0.0}
    points = expand(lists, fixed)
    return collapse(points, executor_threads=lists["executor_threads"][0], max_concurrent=lists["max_concurrent"][0],
                    batch_size=lists["batch_size"][0])


def collapse(points: Iterable[BenchPoint], *, executor_threads: int, max_concurrent: int,
             batch_size: int | None = None) -> list[BenchPoint]:
    """The points without twins: knobs that do not apply to a point are set to one given value.

    Executor threads matter only for the thread driver with a concurrent strategy (``sequential`` and
    ``batched`` send one statement at a time); the semaphore only for ``bounded``; the batch size (when
    given) only for ``batched``.
    """
    unique: dict[BenchPoint, None] = {}
    for p in points:
        if p.registry_name == "contextforge":  # what upstream does, whatever the sim points try
            p = replace(p, strategy=CONTEXTFORGE_FIXED["strategy"], driver=CONTEXTFORGE_FIXED["driver"],
                        batch_size=CONTEXTFORGE_FIXED["batch_size"])
        if p.driver != "thread" or p.strategy in ("sequential", "batched"):
            p = replace(p, executor_threads=executor_threads)
        if p.strategy != "bounded":  # only the bounded strategy has a semaphore
            p = replace(p, max_concurrent=max_concurrent)
        if batch_size is not None and p.strategy != "batched":
            p = replace(p, batch_size=batch_size)
        unique.setdefault(p, None)
    return list(unique)


SIM_GRID_DEFAULTS: dict[str, list[Any]] = {"strategy": list(STRATEGIES), "driver": ["async"], "batch_size": [500]}
"""The sim-only grid knobs when not given: every strategy, the async driver, batches of 500."""


def sim_only_knobs(registries: Sequence[str], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults for the sim-only grid knobs not given; a ``UsageError`` naming the flag if one is given to a
    contextforge-only grid. ``given`` maps ``strategy``/``driver``/``batch_size`` to a list or None."""
    if set(registries) == {"contextforge"}:
        for name, value in given.items():
            if value is not None:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} does not apply to --registry contextforge (its registry always refreshes "
                                 "with a bounded gather of ORM calls in threads)")
    return {name: value if value is not None else SIM_GRID_DEFAULTS[name] for name, value in given.items()}


def registry_pythons(registries: Iterable[str], version: str, source: Any) -> dict[str, str]:
    """The interpreter of each registry that does not run in this one (a ``UsageError`` if its environment is
    missing: checked before anything starts)."""
    if "contextforge" not in set(registries):
        return {}
    from harness.sut.contextforge_env import find_env

    return {"contextforge": find_env(version, source).python}


def registry_package_versions(pythons: Mapping[str, str], version: str, source: Any) -> dict[str, str]:
    """``{"mcp-contextforge-gateway": "1.1.0"}`` when contextforge points ran."""
    if "contextforge" not in pythons:
        return {}
    from harness.sut.contextforge_env import PACKAGE, find_env

    return {PACKAGE: find_env(version, source).version}
