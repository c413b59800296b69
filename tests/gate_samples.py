"""Sample results documents for the gate tests: summary.json / manifest.json shapes of ``harness run``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SUMMARY: dict[str, Any] = {
    "config": {"strategy": "bounded", "driver": "async", "max_concurrent": 20, "users": 50},
    "versions": {"python": "3.11.7", "sqlalchemy": "2.1.9"},
    "cleanup": {
        "cycles": 12,
        "total_ms": {"p50": 40.0, "p95": 80.0, "p99": 90.0, "max": 95.0, "mean": 45.0},
        "model_ratio": {"p50": 1.05, "p95": 1.2, "max": 1.4},
        "refresh_errors": 0,
    },
    "pool": {"size": 20, "timeouts": 0, "exhausted_fraction": 0.0, "wait_ms": {"p95": 1.2, "max": 3.0}},
    "sessions": {"created": 900, "leaked": 0, "zombie_ms": {"p50": 900.0, "p95": None}},
    "locust": {"requests": 5000, "failures": 2, "failure_ratio": 0.0004, "rps": 80.5},
}

BENCH: dict[str, Any] = {
    "rows": [
        {"strategy": "sequential", "driver": "async", "sessions": 1000, "measured_ms": 2100.0,
         "model_ratio": 1.02, "skipped": False},
        {"strategy": "bounded", "driver": "async", "sessions": 1000, "measured_ms": 110.0,
         "model_ratio": 1.1, "skipped": False},
        {"strategy": "bounded", "driver": "async", "sessions": 100, "measured_ms": 12.0,
         "model_ratio": 1.2, "skipped": False},
    ]
}


def summary(**changes: Any) -> dict[str, Any]:
    """A copy of SUMMARY with dotted keys replaced: ``summary(**{"cleanup.total_ms.p95": 120.0})``."""
    doc = copy.deepcopy(SUMMARY)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = doc
        for name in parents:
            node = node[name]
        node[last] = value
    return doc


def write_results(directory: Path, doc: dict[str, Any], machine: Any = None) -> Path:
    """A results directory with summary.json and, when ``machine`` is given, a manifest.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(doc), encoding="utf-8")
    if machine is not None:
        manifest = {"command": "python -m harness run", "machine": machine}
        (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return directory
