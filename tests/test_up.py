"""``harness up`` starts Postgres and the gateway, changes latency live, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest


def _pg_dirs(root: Path | None = None) -> set[str]:
    return {p.name for p in (root or Path(tempfile.gettempdir())).glob("mcp-loadtest-pg-*")}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def test_up_serves_changes_latency_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    # its own temp dir (other runs on this machine make data dirs of their own), reachable by the unprivileged
    # user the embedded server runs as
    private_tmp = Path(tempfile.mkdtemp(prefix="mcp-up-test-"))
    private_tmp.chmod(0o755)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "up", "--port", "0", "--state", str(state), "--cleanup-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(private_tmp)},
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("running"):
                break
        gateway = next(x.split(" ", 1)[1] for x in lines if x.startswith("gateway: "))
        database = next(x.split(" ", 1)[1] for x in lines if x.startswith("database: "))
        assert gateway.startswith("http://127.0.0.1:")
        assert database.startswith("postgresql://")
        health = _get(f"{gateway}/healthz")
        assert health["status"] == "ok"
        gateway_pid = health["pid"]

        out = subprocess.run([sys.executable, "-m", "harness", "latency", "set", "30", "--state", str(state)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "latency_ms=30" in out.stdout
        assert _get(f"{gateway}/admin/latency")["latency_ms"] == 30
        time.sleep(1.5)
        assert _get(f"{gateway}/admin/cycles")["cycles_total"] >= 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not psutil.pid_exists(gateway_pid) or psutil.Process(gateway_pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(database, connect_timeout=3)
    assert _pg_dirs(private_tmp) == set()  # the data directory is gone
    assert not state.exists()
    private_tmp.rmdir()  # and nothing else was left in it


def test_bad_db_choice_is_a_usage_error() -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "up", "--db", "oracle"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "--db must be" in out.stderr and "Traceback" not in out.stderr
