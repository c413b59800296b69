"""What a pre-ping costs a refresh: the thread driver's ORM refresh calibrated with ``pool_pre_ping`` off and on.

ContextForge's engine pre-pings every checkout (``DB_POOL_PRE_PING=auto`` without PgBouncer): one more round trip
per refresh. Starts an embedded Postgres, and for each injected latency (server mode: inside Postgres, paid by the
UPDATE only) calibrates one refresh both ways, one at a time, on the same database::

    python benchmarks/pre_ping_cost.py [--latencies 0,50] [--samples 31]

Also times the pre-ping's own statement on its own (``SELECT 1`` on a checked-out connection).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Sequence

from sqlalchemy import create_engine, text

from gateway_sim import store as st
from gateway_sim.config import StoreConfig
from gateway_sim.settings import list_of
from harness.cli import CliParser
from harness.scenario.calibrate import calibrate_store
from harness.sut.postgres import EmbeddedPostgres


async def refresh_ms(url: str, pre_ping: bool, latency_ms: float, samples: int) -> float:
    store = st.open_store(StoreConfig(db_url=url, driver="thread", pool_pre_ping=pre_ping, executor_threads=1))
    try:
        await store.run(st.create_schema)
        await store.run(st.set_fault_knobs, latency_ms, 0.0, 0.0)
        await store.refresh("warm-up")
        return (await calibrate_store(store, samples)).refresh_ms
    finally:
        await store.close()


def select_one_ms(url: str, samples: int) -> float:
    engine = create_engine(st.driver_url(url, "thread"))
    try:
        with engine.connect() as conn:
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                conn.execute(text("SELECT 1"))
                times.append((time.perf_counter() - started) * 1000.0)
        return statistics.median(times)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = CliParser(prog="python benchmarks/pre_ping_cost.py", description=__doc__)
    parser.add_argument("--latencies", type=list_of(float), default=[0.0, 50.0])
    parser.add_argument("--samples", type=int, default=31)
    args = parser.parse_args(argv)
    with EmbeddedPostgres() as url:
        print(f"SELECT 1 on a checked-out connection: {select_one_ms(url, args.samples):.3f} ms (median)")
        print("L ms | refresh ms, no pre-ping | refresh ms, pre-ping | difference ms")
        for latency in args.latencies:
            off = asyncio.run(refresh_ms(url, False, latency, args.samples))
            on = asyncio.run(refresh_ms(url, True, latency, args.samples))
            print(f"{latency:g} | {off:.3f} | {on:.3f} | {on - off:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
