"""Watch a gateway's Postgres, read-only, and infer its cleanup cycles and pool use from the database alone.

One connection (``application_name`` mcp-loadtest-observe, ``default_transaction_read_only = on``) polls
``pg_stat_activity`` at 40 Hz and ``mcp_sessions`` at 20 Hz; the results are ``harness run``'s files with
``"source": "observed"`` in summary.json. Method and limits: docs/observe.md.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import settings

OBSERVE_DEFAULTS = {"db_url": None, "out": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness observe``: ``--db-url``, ``--duration``, ``--out``, ``--application-name``."""
    settings.add(parser, ("db_url", "observe_duration", "out", "observe_application_name"), OBSERVE_DEFAULTS,
                 required=("db_url",))


def run(args: argparse.Namespace) -> int:
    """``python -m harness observe`` (an unusable database raises ObserveError: one line, exit 1)."""
    from harness.observe.session import observe

    out_dir = args.out or Path("results") / datetime.now(UTC).strftime("observe-%Y%m%dT%H%M%SZ")
    summary, _cycles = observe(args.db_url, args.observe_duration, out_dir, args.observe_application_name)
    print_observed(summary, out_dir)
    return 0


def print_observed(summary: dict[str, Any], out_dir: Path) -> None:
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
