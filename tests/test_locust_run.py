"""Headless Locust runs of ``locustfiles/mcp_sessions.py`` against live gateways on the embedded Postgres."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.scenario.locust_proc import master_port_args

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfiles" / "mcp_sessions.py"
MCP_TYPES = {"GET", "POST", "DELETE", "SSE"}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post_json(url: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as response:
        return json.load(response)


def run_locust(
    tmp_path: Path, host: str, seconds: int, *extra: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]:
    prefix = tmp_path / "run"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", "20", "-r", "10", "-t", f"{seconds}s", "--csv", str(prefix), "--host", host,
        "--session-lifetime", "2-4", "--abrupt-ratio", "0.3", "--only-summary", "--stop-timeout", "5",
        *extra,
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=seconds + 40)
    rows_path = Path(f"{prefix}_stats.csv")
    rows = list(csv.DictReader(rows_path.open())) if rows_path.exists() else []
    return proc, rows


def mcp_totals(rows: list[dict[str, str]]) -> tuple[int, int]:
    mcp = [r for r in rows if r["Type"] in MCP_TYPES]
    return sum(int(r["Request Count"]) for r in mcp), sum(int(r["Failure Count"]) for r in mcp)


def test_headless_run_reports_cleanup_cycles_and_abrupt_drops_are_found(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway("--cleanup-interval", "1")
    log_path = tmp_path / "sessions.jsonl"
    proc, rows = run_locust(tmp_path, gw.url, 12, "--session-log", str(log_path))
    assert proc.returncode == 0, proc.stderr[-2000:]

    cleanup = {r["Name"]: r for r in rows if r["Type"] == "CLEANUP"}
    assert set(cleanup) == {"cycle", "expiry", "phase1", "phase2"}
    assert int(cleanup["cycle"]["Request Count"]) >= 5
    assert int(cleanup["cycle"]["Failure Count"]) == 0
    requests, failures = mcp_totals(rows)
    assert requests > 200
    assert failures <= requests * 0.01
    names = {r["Name"] for r in rows}
    assert {"GET /sse", "POST /message initialize", "tools/call echo (sse)", "DELETE /mcp"} <= names

    sessions = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert {s["how"] for s in sessions if s["transport"] == "sse"} == {"clean", "abrupt"}
    assert all(len(s["session_id"]) == 32 and s["closed_at"] > 0 for s in sessions)

    post_json(f"{gw.url}/admin/cleanup")  # the streams Locust closed at its stop go in this cycle
    accounting = get_json(f"{gw.url}/admin/cycles?limit=0")["sessions"]
    by_reason = accounting["removed_by_reason"]
    assert by_reason.get("disconnected", 0) + by_reason.get("stream_closed", 0) > 0
    assert accounting["active_persistent"] == 0  # every SSE stream the clients left was found
    sse_logged = sum(1 for s in sessions if s["transport"] == "sse")
    # A user stopped between GET /sse and its endpoint event never learnt its id: allow a couple.
    assert 0 <= accounting["created_by_transport"]["sse"] - sse_logged <= 2


def test_sessions_spread_over_gateways_and_each_gateways_cycles_count_once(start_gateway, tmp_path: Path) -> None:
    """Two gateways and two Locust processes (master + worker): only the master reports cycles."""
    gateways = [start_gateway("--cleanup-interval", "1", worker_id=w) for w in ("a", "b")]
    before = [get_json(f"{g.url}/admin/cycles?limit=0")["cycles_total"] for g in gateways]
    urls = ",".join(g.url for g in gateways)
    proc, rows = run_locust(tmp_path, gateways[0].url, 8, "--gateway-urls", urls, "--processes", "2",
                             *master_port_args())
    after = [get_json(f"{g.url}/admin/cycles?limit=0") for g in gateways]
    assert proc.returncode == 0, proc.stderr[-2000:]

    ran = sum(a["cycles_total"] - b for a, b in zip(after, before, strict=True))
    counted = next(int(r["Request Count"]) for r in rows if r["Type"] == "CLEANUP" and r["Name"] == "cycle")
    # Cycles that ran during start-up and shutdown fall outside the test; none is counted twice
    # (a worker polling too would double the count).
    assert ran * 0.4 <= counted <= ran
    created = [a["sessions"]["created"] for a in after]
    assert min(created) >= 0.3 * max(created) > 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("--session-lifetime", "30-5"), ("--transport-mix", "2"), ("--gateway-urls", "nohost")],
)
def test_bad_option_is_one_line_and_exit_2(tmp_path: Path, option: str, value: str) -> None:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-t", "1s",
               "--host", "http://127.0.0.1:9", option, value]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert option in proc.stderr
    assert "Traceback" not in proc.stderr
