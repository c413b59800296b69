"""Key paths of result files, for the golden tests that pin them (a rename shows as a missing path)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden"

DYNAMIC = {
    "versions", "cleanup.cycles_by_worker", "pool.per_worker", "pool.pg_state_peaks", "sessions.removed_by_reason",
    "sessions.zombie_ms_by_kind", "sessions.client_ends", "locust.by_name", "locust.cleanup_events",
    "faults[].detail", "soak.workers", "soak.process_samples[]", "cleanup.calibration", "rows[].pool",
}
"""Maps whose keys are data (worker ids, request names, package names): their values' keys are pinned."""


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON document; ``[]`` for list items, ``*`` for the keys of a :data:`DYNAMIC` map."""
    paths: set[str] = set()
    if isinstance(value, dict):
        dynamic = prefix in DYNAMIC
        for key, item in value.items():
            path = f"{prefix}.{'*' if dynamic else key}" if prefix else key
            paths.add(path)
            if not (dynamic and not isinstance(item, dict)):
                paths |= key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, f"{prefix}[]")
    return paths


def json_paths(path: Path) -> set[str]:
    """The key paths of a JSON file."""
    return key_paths(json.loads(path.read_text(encoding="utf-8")))


def csv_columns(path: Path) -> set[str]:
    """The header of a CSV file."""
    with path.open(newline="", encoding="utf-8") as fh:
        return set(next(csv.reader(fh)))


def golden(name: str) -> set[str]:
    """A pinned key set."""
    return set(json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8")))
