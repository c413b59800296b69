"""How well ``harness observe`` finds the sim gateway's cleanup cycles from the database alone.

For every point (N held SSE sessions × injected latency L × strategy) a fresh embedded Postgres and gateway
run under Locust churn while the observer watches; its cycles are scored against the gateway's own
``/admin/cycles`` records: recall, precision, and the error of matched durations.

    python benchmarks/observe_accuracy.py --sessions 100,1000,5000 --latency-ms 5,50 --strategy bounded,batched
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from gateway_sim.settings import list_type
from harness.cli import CliParser
from harness.observe.validate import Point, run_point
from harness.settings import SETTINGS

HEADER = ("| N | L ms | strategy | true | observed | matched | recall | precision | error ms p50 / p95 "
          "| within 10 % or 50 ms | true cycle ms p50 | sweep + phase 1 ms p50 | starts: sweep / period / lead |")


def _p50(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def _starts(counts: dict[str, int]) -> str:
    return " / ".join(str(counts.get(k, 0)) for k in ("sweep", "period", "lead"))


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=list_type(SETTINGS["sessions"]), default=[100, 1000, 5000])
    parser.add_argument("--latency-ms", type=list_type(SETTINGS["db_latency_ms"]), default=[5.0, 50.0])
    parser.add_argument("--strategy", type=list_type(SETTINGS["strategy"]), default=["bounded", "batched"])
    parser.add_argument("--cycles", type=int, default=6, help="true cycles to wait for per point (default 6)")
    parser.add_argument("--cleanup-interval", type=float, default=3.0, help="gateway's --cleanup-interval, s")
    parser.add_argument("--churn-users", type=int, default=20, help="Locust users churning meanwhile")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what a point started, then exit
    rows = []
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    for sessions in args.sessions:
        for latency in args.latency_ms:
            for strategy in args.strategy:
                point = Point(sessions, latency, strategy, cycles=args.cycles, cleanup_interval=args.cleanup_interval,
                              churn_users=args.churn_users)
                began = time.monotonic()
                result, detail = run_point(point)
                row = {"sessions": sessions, "latency_ms": latency, "strategy": strategy, **result.as_dict(),
                       "true_ms_p50": _p50(detail["true_ms"]), "opened": detail["opened"],
                       "before_phase2_ms_p50": _p50(detail["true_before_phase2_ms"]),
                       "start_from": detail["start_from"], "turnaround_ms": detail["turnaround_ms"],
                       "pairs": detail["pairs"],
                       "poll_hz": round(detail["poll_hz"], 1), "seconds": round(time.monotonic() - began, 1)}
                rows.append(row)
                print(f"| {sessions} | {latency:g} | {strategy} | {result.true_cycles} | {result.observed_cycles} | "
                      f"{result.matched} | {result.recall} | {result.precision} | {result.error_ms_p50} / "
                      f"{result.error_ms_p95} | {result.within_tolerance} | {row['true_ms_p50']} | "
                      f"{row['before_phase2_ms_p50']} | {_starts(detail['start_from'])} |",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
