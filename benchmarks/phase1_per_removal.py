"""Phase-1 cost per disconnected session, from runs' ``cycles.csv``: ``phase1_ms / removed_disconnected`` over
the cycles that removed something (the connection checks themselves cost microseconds)::

    python benchmarks/phase1_per_removal.py RESULTS_DIR [RESULTS_DIR ...]
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path


def summarize(run: Path) -> str:
    """One line for one results directory."""
    with (run / "cycles.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["removed_disconnected"]) > 0]
    if not rows:
        return f"{run}: no cycle removed a disconnected session"
    per = [float(r["phase1_ms"]) / int(r["removed_disconnected"]) for r in rows]
    gone = sum(int(r["removed_disconnected"]) for r in rows)
    worst = max(rows, key=lambda r: float(r["phase1_ms"]))
    return (f"{run}: {len(rows)} cycles with removals, {gone} removed in phase 1; phase-1 ms per removed session "
            f"p50 {statistics.median(per):.2f}, max {max(per):.2f}; largest phase 1 {float(worst['phase1_ms']):.0f} ms "
            f"for {worst['removed_disconnected']} removals")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for name in argv:
        print(summarize(Path(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
