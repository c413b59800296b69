"""Measure one bench point in this interpreter: ``{"point": {...}, "db_url": URL, "repeats": N}`` on stdin,
the row as one JSON line on stdout. ``harness bench`` runs it in the contextforge environment's Python."""

from __future__ import annotations

import json
import sys

from harness.capacity.bench import BenchPoint, measure_here


def main() -> int:
    """Read the point, measure it, print the row."""
    request = json.loads(sys.stdin.read())
    row = measure_here(BenchPoint(**request["point"]), request["db_url"], int(request["repeats"]))
    print(json.dumps(row.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
