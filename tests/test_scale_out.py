"""Scale-out runs of ``harness run`` on real parts: two gateway workers on one Postgres, two Locust worker
processes, and the warning when the workers' pools together exceed ``max_connections``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--users", "12", "--spawn-rate", "12", "--cleanup-interval", "1", "--session-lifetime", "2-4",
         "--session-ttl", "4", "--drain", "3", "--no-progress"]


def harness_run(out: Path, *args: str, timeout: float = 100) -> tuple[subprocess.CompletedProcess[str], int]:
    """``python -m harness run`` to the end; also returns the most Locust processes seen at once."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", *SHORT, *args, "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    most_locusts = 0
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            most_locusts = max(most_locusts, len(locust_processes(proc.pid)))
            time.sleep(0.5)
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), most_locusts


def locust_processes(pid: int) -> list[psutil.Process]:
    """Locust processes below ``pid`` (a master and its ``--processes`` workers share one command line)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            if "locust" in child.cmdline()[1:4]:
                found.append(child)
        except psutil.Error:
            continue
    return found


def summary_of(proc: subprocess.CompletedProcess[str], out: Path) -> dict[str, Any]:
    assert proc.returncode == 0, f"harness run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(json.loads((out / "summary.json").read_text()))


def cleanup_events_counted(stats_csv: Path) -> int:
    """The CLEANUP ``cycle`` row's request count in Locust's stats CSV."""
    with stats_csv.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Type"] == "CLEANUP" and r["Name"] == "cycle"]
    assert rows, "no CLEANUP cycle row in Locust's stats"
    return int(rows[0]["Request Count"])


def locust_window(history_csv: Path) -> tuple[float, float]:
    """First and last second (Unix time) of Locust's stats history: when the test was running."""
    with history_csv.open(newline="") as fh:
        stamps = [int(r["Timestamp"]) for r in csv.DictReader(fh)]
    return float(min(stamps)), float(max(stamps)) + 1.0


def cycles_started_between(cycles_csv: Path, start: float, end: float) -> int:
    with cycles_csv.open(newline="") as fh:
        started = [datetime.fromisoformat(r["started_at"]).timestamp() for r in csv.DictReader(fh)]
    return sum(1 for t in started if start <= t <= end)


def test_two_gateway_workers_both_clean_up_and_nothing_leaks(tmp_path: Path) -> None:
    out = tmp_path / "gw2"
    proc, _ = harness_run(out, "--gateway-workers", "2", "--run-time", "8s", "--abandon-ratio", "0.3")
    summary = summary_of(proc, out)
    cleanup, pool, sessions = summary["cleanup"], summary["pool"], summary["sessions"]

    assert len(cleanup["cycles_by_worker"]) == 2, cleanup["cycles_by_worker"]
    assert all(n >= 3 for n in cleanup["cycles_by_worker"].values()), cleanup["cycles_by_worker"]
    assert cleanup["cycles"] == sum(cleanup["cycles_by_worker"].values())
    assert set(pool["per_worker"]) == set(cleanup["cycles_by_worker"])
    assert pool["total_connections_limit"] == 2 * pool["limit"]
    assert pool["over_max_connections"] is False
    assert sessions["created"] >= 12
    assert sessions["leaked"] == 0
    assert sessions["rows_after_shutdown"] == 0
    assert sessions["balanced"] is True
    assert not summary["warnings"]


def test_two_locust_workers_count_each_cleanup_cycle_once(tmp_path: Path) -> None:
    out = tmp_path / "lw2"
    proc, most_locusts = harness_run(out, "--locust-workers", "2", "--run-time", "10s")
    summary = summary_of(proc, out)
    assert most_locusts >= 3, "expected a Locust master and two worker processes"
    assert summary["locust"]["requests"] > 0

    counted = cleanup_events_counted(out / "locust_stats.csv")
    start, end = locust_window(out / "locust_stats_history.csv")
    ran = cycles_started_between(out / "cycles.csv", start, end)
    assert ran >= 6
    # Each cycle the gateway ran while Locust was running is one event: a second poller would double
    # the count; a cycle at either edge of the window may fall on either side.
    assert ran / 2 < counted <= ran + 1, (counted, ran)
    assert counted <= summary["cleanup"]["cycles"]


def test_pools_over_max_connections_warn_and_the_run_completes(tmp_path: Path) -> None:
    out = tmp_path / "over"
    proc, _ = harness_run(out, "--gateway-workers", "2", "--pool-size", "20", "--max-overflow", "10",
                          "--max-connections", "40", "--pool-timeout", "3", "--run-time", "5s")
    summary = summary_of(proc, out)
    pool = summary["pool"]
    assert pool["max_connections"] == 40
    assert pool["total_connections_limit"] == 60
    assert pool["over_max_connections"] is True
    warning = next((w for w in summary["warnings"] if "max_connections" in w), None)
    assert warning is not None, summary["warnings"]
    assert "2 workers" in warning and "60" in warning
    printed = " ".join(proc.stdout.split())  # the console wraps long lines
    assert "warning: 2 workers × (pool 20 + overflow 10) = 60 connections exceed max_connections 40" in printed
    assert summary["cleanup"]["cycles"] >= 3
    assert summary["sessions"]["leaked"] == 0


@pytest.mark.parametrize("bad", [["--gateway-workers", "0"], ["--locust-workers", "-1"]])
def test_bad_worker_counts_exit_2(tmp_path: Path, bad: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", *bad, "--out", str(tmp_path / "x")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "must be >= " in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
