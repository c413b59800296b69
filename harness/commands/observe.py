"""Watch a gateway's Postgres, read-only, and infer its cleanup cycles and pool use from the database alone.

One connection (``application_name`` mcp-loadtest-observe, ``default_transaction_read_only = on``) polls
``pg_stat_activity`` and ``mcp_sessions`` at 20 Hz; the results are ``harness run``'s files with
``"source": "observed"`` in summary.json. Method and limits: docs/observe.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from harness.commands.arglists import duration_seconds
from harness.observe.sampler import ObserveError

EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness observe``."""
    parser.add_argument("--db-url", required=True, help="the gateway's database, postgresql://…")
    parser.add_argument("--duration", type=duration_seconds, default=600.0,
                        help="how long to watch: 90s, 10m, 1h (default 10m; Ctrl-C stops early and still writes)")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default results/<timestamp>)")
    parser.add_argument("--application-name", default=None, metavar="NAME",
                        help="count only connections whose application_name starts with NAME "
                             "(default: every other connection to the database)")


def run(args: argparse.Namespace) -> int:
    """``python -m harness observe``."""
    from harness.observe.session import observe

    out_dir = args.out or Path("results") / datetime.now(UTC).strftime("observe-%Y%m%dT%H%M%SZ")
    try:
        summary, _cycles = observe(args.db_url, args.duration, out_dir, args.application_name)
    except ObserveError as exc:
        print(f"harness observe: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print_observed(summary, out_dir)
    return 0


def print_observed(summary: dict, out_dir: Path) -> None:
    """A few lines with what was seen."""
    c, p, o = summary["cleanup"], summary["pool"], summary["observed"]
    t = c["total_ms"]
    print(f"observed {o['seconds']} s at {o['poll_hz']} Hz ({o['polls']} polls): {c['cycles']} cleanup cycles")
    print(f"cycle ms p50 / p95 / max: {t['p50']} / {t['p95']} / {t['max']}; period s p50: {c['period_s']['p50']}")
    print(f"refreshed {c['refreshed']}, expired {c['expired']}, removed one by one {c['removed_disconnected']}")
    print(f"gateway connections peak {p['pg_connections_peak']} (in transaction {p['pg_in_transaction_peak']}) "
          f"of max_connections {p['max_connections']}; by state {p['pg_state_peaks']}")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    print(f"wrote {out_dir}/summary.json, cycles.csv, pool.csv, report.html")
