"""Added latency per round trip through the latency proxy, at several settings side by side.

Starts an embedded Postgres and one proxy, times ``SELECT 1`` round trips directly and through the
proxy on one kept-open connection, changing L live between rows::

    python benchmarks/proxy_latency.py [--latencies 0,5,20,50] [--jitter-ms 0] [--round-trips 100]

Added latency = each proxied round trip minus the median direct round trip.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence

import psycopg

from gateway_sim.pool_monitor import percentile
from gateway_sim.settings import list_type
from harness.cli import CliParser
from harness.settings import SETTINGS
from harness.sut.latency_proxy import LatencyProxy, time_round_trips
from harness.sut.postgres import EmbeddedPostgres, ProviderError


def measure(latencies: Sequence[float], jitter_ms: float, round_trips: int) -> list[dict[str, float]]:
    """One row per latency: L, J, median and p95 of the added ms per round trip, and median / L."""
    rows = []
    server = EmbeddedPostgres()
    with server as url, psycopg.connect(url, autocommit=True) as direct:
        assert server.port is not None
        with LatencyProxy(server.host, server.port) as proxy:
            host, port = proxy.address
            with psycopg.connect(
                host=host, port=port, user="postgres", dbname="postgres", autocommit=True
            ) as via:
                for latency in latencies:
                    proxy.set_latency(latency, jitter_ms)
                    baseline = statistics.median(time_round_trips(direct, round_trips))
                    added = [sample - baseline for sample in time_round_trips(via, round_trips)]
                    median = statistics.median(added)
                    rows.append(
                        {
                            "latency_ms": latency,
                            "jitter_ms": jitter_ms,
                            "direct_ms": baseline,
                            "added_median_ms": median,
                            "added_p95_ms": percentile(added, 95),
                            "ratio": median / latency if latency else float("nan"),
                        }
                    )
    return rows


def render(rows: Sequence[dict[str, float]], round_trips: int) -> str:
    header = f"{'L ms':>6} {'J ms':>6} {'direct':>8} {'added p50':>10} {'added p95':>10} {'p50 / L':>8}"
    lines = [f"added latency per round trip, {round_trips} SELECT 1 round trips per row", header]
    for row in rows:
        ratio = "-" if row["latency_ms"] == 0 else f"{row['ratio']:.3f}"
        lines.append(
            f"{row['latency_ms']:>6g} {row['jitter_ms']:>6g} {row['direct_ms']:>8.3f} "
            f"{row['added_median_ms']:>10.3f} {row['added_p95_ms']:>10.3f} {ratio:>8}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = CliParser(prog="benchmarks/proxy_latency.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--latencies", type=list_type(SETTINGS["db_latency_ms"]), default=[0.0, 5.0, 20.0, 50.0])
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± jitter at every row (default 0)")
    parser.add_argument("--round-trips", type=int, default=100, help="round trips per row (default 100)")
    args = parser.parse_args(argv)
    if args.round_trips < 2:
        parser.error("--round-trips must be >= 2")
    if not args.jitter_ms >= 0:
        parser.error("--jitter-ms must be >= 0")
    try:
        rows = measure(args.latencies, args.jitter_ms, args.round_trips)
    except ProviderError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    print(render(rows, args.round_trips))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
