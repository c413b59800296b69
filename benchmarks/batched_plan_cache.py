"""The batched strategy's wave of statements on the bench's calibration connections beside the registry's own.

Runs one bench point's per-cycle sequence on a fresh embedded Postgres (``harness bench``'s own
:func:`~harness.capacity.bench.cycle_costs`: the zero-latency burst on the calibration connections, the TTL
sweep, ``L_refresh``; then the cycle), times the same wave of statements on the registry's connections between
those costs and the cycle, and reports how Postgres planned the batched UPDATE on each side (``pg_prepared_statements``:
generic and custom plans on the connections a query lands on). ``--plan-cache-mode`` sets Postgres's
``plan_cache_mode`` for the whole (throwaway) server first::

    python benchmarks/batched_plan_cache.py --sessions 1000 --driver async
    python benchmarks/batched_plan_cache.py --sessions 1000 --plan-cache-mode force_custom_plan
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy import text

from gateway_sim import store as st
from gateway_sim.costs import PLANNED_WARM_UP_WAVES, calibration_store, measure_costs_on, median_burst
from gateway_sim.gc_tuning import tuned_gc
from gateway_sim.registry import SessionRegistry
from gateway_sim.registry_api import create_registry
from gateway_sim.transports import SyntheticTransport
from harness.capacity.bench import BenchPoint, burst_passes, burst_samples, cycle_costs, point_config
from harness.settings import SETTINGS
from harness.sut.dbsync import sync_session
from harness.sut.postgres import EmbeddedPostgres

PLAN_CACHE_MODES = ("auto", "force_custom_plan", "force_generic_plan")
PLAN_COUNTS = text("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                   "WHERE statement ILIKE 'UPDATE mcp_sessions%' AND statement ILIKE '%any(%'")


def plan_counts(session: st.Executor) -> list[tuple[int, int]]:
    """(generic, custom) plans of the batched UPDATE prepared on the connection ``session`` runs on."""
    return [(int(g), int(c)) for g, c in session.execute(PLAN_COUNTS)]


async def wave_ms(registry: SessionRegistry, ids: Sequence[str], passes: int) -> float:
    """Median wall time of ``passes`` waves of the registry's own refresh of ``ids``."""
    return (await median_burst(passes, 1, lambda: registry.refresh_connected(ids))).wall_ms


async def run(point: BenchPoint, db_url: str, rounds: int) -> None:
    """The point's rounds, one line each, then the plan counts on each side."""
    registry = create_registry(point_config(point, db_url))
    await registry.start()
    own = calibration_store(registry.store)
    try:
        await registry.store.run(st.create_schema)
        await registry.store.run(st.set_fault_knobs, point.db_latency_ms, 0.0, 0.0)
        await registry.add_sessions([SyntheticTransport() for _ in range(point.connected)])
        await registry.run_cleanup_cycle()
        samples = burst_samples(point)
        passes = burst_passes(samples, point.strategy)
        ids = list(registry.sessions)[:samples]
        await measure_costs_on(own, registry.config, samples, passes, PLANNED_WARM_UP_WAVES, refresh_ids=ids)
        print("round  calibration wave ms  registry wave ms  L_refresh ms  cycle phase 2 ms")
        for index in range(1, rounds + 1):
            costs = await cycle_costs(registry, own, point, ids, passes)
            registry_wave = await wave_ms(registry, ids, passes)
            record = await registry.run_cleanup_cycle()
            print(f"{index:5d}  {costs.burst.wall_ms * samples:19.1f}  {registry_wave:16.1f}  "
                  f"{costs.refresh_ms:12.1f}  {record.phase2_ms:16.1f}")
        for name, store in (("calibration", own), ("registry", registry.store)):
            counts = sorted({c for _ in range(3) for c in await store.run(plan_counts)})
            print(f"{name} connections, batched UPDATE (generic, custom) plans: {counts}")
    finally:
        await own.close()
        await registry.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--driver", choices=("async", "thread"), default="async")
    parser.add_argument("--db-latency-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--plan-cache-mode", choices=PLAN_CACHE_MODES, default="auto")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 20000 or not 1 <= args.rounds <= 50 or args.db_latency_ms < 0:
        parser.error("--sessions must be in [1, 20000], --rounds in [1, 50], --db-latency-ms >= 0")
    point = BenchPoint(strategy="batched", driver=args.driver, sessions=args.sessions,
                       max_concurrent=SETTINGS["max_concurrent"].default_value(), db_latency_ms=args.db_latency_ms)
    with EmbeddedPostgres() as db_url:
        if args.plan_cache_mode != "auto":
            with sync_session(db_url, application_name="mcp-loadtest-bench") as session:
                connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                connection.exec_driver_sql(f"ALTER SYSTEM SET plan_cache_mode = {args.plan_cache_mode}")
                connection.exec_driver_sql("SELECT pg_reload_conf()")
        print(f"batched {args.driver} N={args.sessions} L={args.db_latency_ms:g} ms, "
              f"plan_cache_mode {args.plan_cache_mode}")
        with tuned_gc():
            asyncio.run(run(point, db_url, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
