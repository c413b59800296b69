"""Run Locust in its own process (gevent and asyncio never share one) and read its CSV statistics."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.settings import LOCUSTFILE_KNOBS, SETTINGS, check, rows
from harness.sut.postgres import free_port

# locustfiles/ is installed beside harness/ (site-packages or the source tree).
LOCUSTFILE = Path(__file__).resolve().parents[2] / "locustfiles" / "mcp_sessions.py"
CLEANUP_TYPE = "CLEANUP"


@dataclass(frozen=True)
class LocustOptions:
    """The load: users, ramp, duration and the locustfile's session knobs (rows of the settings table)."""

    users: int = SETTINGS["users"].default
    spawn_rate: float = SETTINGS["spawn_rate"].default
    run_time_s: float = SETTINGS["run_time"].default
    session_lifetime: str = SETTINGS["session_lifetime"].default
    abrupt_ratio: float = SETTINGS["abrupt_ratio"].default
    abandon_ratio: float = SETTINGS["abandon_ratio"].default
    transport_mix: float = SETTINGS["transport_mix"].default
    calls_per_session: int = SETTINGS["calls_per_session"].default
    processes: int = SETTINGS["locust_workers"].default
    auth_token: str | None = None
    seed: int | None = None
    stop_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check(self.knobs())

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any]) -> LocustOptions:
        """From a run's knobs; raises ``ValueError`` naming the flag."""
        return cls(users=knobs["users"], spawn_rate=knobs["spawn_rate"], run_time_s=knobs["run_time"],
                   session_lifetime=knobs["session_lifetime"], abrupt_ratio=knobs["abrupt_ratio"],
                   abandon_ratio=knobs["abandon_ratio"], transport_mix=knobs["transport_mix"],
                   calls_per_session=knobs["calls_per_session"], processes=knobs["locust_workers"],
                   auth_token=knobs.get("auth_token"), seed=knobs.get("seed"))

    def knobs(self) -> dict[str, Any]:
        """These options by their table names."""
        return {"users": self.users, "spawn_rate": self.spawn_rate, "run_time": self.run_time_s,
                "session_lifetime": self.session_lifetime, "abrupt_ratio": self.abrupt_ratio,
                "abandon_ratio": self.abandon_ratio, "transport_mix": self.transport_mix,
                "calls_per_session": self.calls_per_session, "locust_workers": self.processes,
                "auth_token": self.auth_token, "seed": self.seed}

    def locustfile_args(self) -> list[str]:
        """The locustfile's own options for these values (its rows of the table)."""
        values = self.knobs()
        return [item for row in rows(LOCUSTFILE_KNOBS) if values.get(row.name) not in (None, "")
                for item in (row.flag, f"{values[row.name]:g}" if isinstance(values[row.name], float)
                             else str(values[row.name]))]


class LocustProcess:
    """``locust --headless`` against the gateway(s), writing CSV/HTML reports under ``out_dir``."""

    def __init__(self, options: LocustOptions, gateway_urls: list[str], out_dir: Path) -> None:
        self.options = options
        self.out_dir = out_dir
        self.csv_prefix = out_dir / "locust"
        self.html_path = out_dir / "locust.html"
        self.client_log = out_dir / "client-sessions.jsonl"
        self.log_path = out_dir / "locust.log"
        o = options
        self.command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(o.users), "-r", f"{o.spawn_rate:g}", "-t", f"{max(1, round(o.run_time_s))}s",
            "--host", gateway_urls[0], "--gateway-urls", ",".join(gateway_urls),
            "--csv", str(self.csv_prefix), "--html", str(self.html_path),
            "--stop-timeout", f"{o.stop_timeout_s:g}", "--loglevel", "WARNING", "--only-summary",
            "--exit-code-on-error", "0", *o.locustfile_args(),
            SETTINGS["client_session_log"].flag, str(self.client_log),
        ]
        if o.processes:  # a master and N workers
            self.command += ["--processes", str(o.processes), *master_port_args()]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start Locust in its own process group (the harness forwards Ctrl-C itself)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.options.seed is not None:
            env["MCP_LOADTEST_SEED"] = str(self.options.seed)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def interrupt(self) -> None:
        """Ask Locust to stop now; it still writes its reports."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float) -> int | None:
        """Wait for exit; SIGTERM then SIGKILL if it overstays."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)

    def current_users(self) -> int | None:
        """The user count in the latest stats-history line (None before the first)."""
        return latest_user_count(Path(f"{self.csv_prefix}_stats_history.csv"))


def master_port_args() -> list[str]:
    """A free port for a Locust master and its forked workers, so parallel runs never collide."""
    port = str(free_port())
    return ["--master-bind-port", port, "--master-port", port]


def latest_user_count(path: Path) -> int | None:
    """Read the last line of Locust's ``*_stats_history.csv`` for its ``User Count``."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            tail = fh.read().decode(errors="replace").splitlines()
            fh.seek(0)
            header = fh.readline().decode(errors="replace").strip().split(",")
    except OSError:
        return None
    if len(tail) < 2 or "User Count" not in header:
        return None
    values = next(csv.reader([tail[-1]]))
    try:
        return int(float(values[header.index("User Count")]))
    except (ValueError, IndexError):
        return None


def _number(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def read_stats(stats_csv: Path) -> dict[str, Any]:
    """Summarise Locust's ``*_stats.csv``: MCP requests (everything but CLEANUP) and per-name rows."""
    if not stats_csv.exists():
        return {"requests": 0, "failures": 0, "failure_ratio": None, "rps": 0.0, "response_ms": {},
                "by_name": {}, "cleanup_events": {}, "error": f"{stats_csv.name} was not written"}
    by_name: dict[str, dict[str, Any]] = {}
    cleanup: dict[str, dict[str, Any]] = {}
    with stats_csv.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("Name") == "Aggregated":
                continue
            entry = {
                "type": row.get("Type", ""),
                "requests": int(_number(row.get("Request Count", "0"))),
                "failures": int(_number(row.get("Failure Count", "0"))),
                "rps": round(_number(row.get("Requests/s", "0")), 3),
                "p50_ms": _number(row.get("50%", "0")),
                "p95_ms": _number(row.get("95%", "0")),
                "p99_ms": _number(row.get("99%", "0")),
                "max_ms": _number(row.get("Max Response Time", "0")),
            }
            name = row.get("Name", "")
            key = name if name.startswith(entry["type"]) else f"{entry['type']} {name}".strip()
            (cleanup if entry["type"] == CLEANUP_TYPE else by_name)[key] = entry
    requests = sum(e["requests"] for e in by_name.values())
    failures = sum(e["failures"] for e in by_name.values())
    weights = [(e["p50_ms"], e["p95_ms"], e["requests"]) for e in by_name.values() if e["requests"]]
    return {
        "requests": requests,
        "failures": failures,
        "failure_ratio": round(failures / requests, 6) if requests else None,
        "rps": round(sum(e["rps"] for e in by_name.values()), 3),
        "response_ms": {
            # request-weighted means of the per-name percentiles (Locust's CSV has no merged histogram per type)
            "p50": round(sum(p50 * n for p50, _, n in weights) / requests, 3) if requests else None,
            "p95": round(sum(p95 * n for _, p95, n in weights) / requests, 3) if requests else None,
            "max": max((e["max_ms"] for e in by_name.values()), default=None),
        },
        "by_name": by_name,
        "cleanup_events": cleanup,
    }
