"""Load-side capacity: one Locust run against gateway processes, sampled for open sessions, churn and the CPU of
every process tree (gateway, Locust, Postgres). The engine of ``benchmarks/locust_capacity.py`` and
``benchmarks/locust_workers.py``."""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from gateway_sim.admin_client import AdminClient
from harness.scenario.locust_proc import LOCUSTFILE, master_port_args
from harness.sut.gateway_proc import GatewayProcess

MCP_TYPES = {"GET", "POST", "DELETE", "SSE"}


@dataclass
class Sample:
    """One look at the gateway's sessions and the CPU of each process tree."""

    t: float
    open: int
    created: int
    removed: int
    cpu: dict[str, float]


@dataclass
class Row:
    """The figures of one user count."""

    users: int
    open_peak: int = 0
    open_mean: float = 0.0
    opened_per_s: float = 0.0
    closed_per_s: float = 0.0
    requests: int = 0
    failures: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def _cpu(procs: dict[int, psutil.Process], root: psutil.Process) -> float:
    """CPU % since the last call of ``root`` and its children (Locust's ``--processes`` forks)."""
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        members = []
    for member in members:
        if member.pid not in procs:
            try:
                member.cpu_percent(None)  # the first call only starts the measurement
            except psutil.Error:
                continue
            procs[member.pid] = member
    total = 0.0
    for pid, proc in list(procs.items()):
        try:
            total += proc.cpu_percent(None)
        except psutil.Error:
            procs.pop(pid)
    return total


class Sampler(threading.Thread):
    """Samples ``/admin/cycles`` sessions and the CPU of each process tree once a second until stopped."""

    def __init__(self, gateway_url: str, roots: dict[str, psutil.Process]) -> None:
        super().__init__(daemon=True)
        self.url = gateway_url
        self.roots = roots
        self.seen: dict[str, dict[int, psutil.Process]] = {name: {} for name in roots}
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def _cpu(self) -> dict[str, float]:
        return {name: _cpu(self.seen[name], root) for name, root in self.roots.items()}

    def run(self) -> None:
        start = time.monotonic()
        self._cpu()
        while not self.stop.wait(1.0):
            try:
                sessions = AdminClient(self.url).accounting()
            except (OSError, ValueError, KeyError):
                continue
            self.samples.append(
                Sample(
                    t=time.monotonic() - start,
                    open=int(sessions["active"]),
                    created=int(sessions["created"]),
                    removed=int(sessions["removed"]),
                    cpu=self._cpu(),
                )
            )


def postgres_root(data_dir: Path | None) -> psutil.Process | None:
    """The postmaster serving ``data_dir`` (its children are the backends)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if data_dir is not None and str(data_dir) in cmdline and Path(cmdline[0]).name == "postgres":
            return proc
    return None


def mcp_counts(stats_csv: Path) -> tuple[int, int]:
    """Requests and failures of the MCP request rows (CLEANUP rows left out)."""
    if not stats_csv.exists():
        return 0, 0
    rows = [r for r in csv.DictReader(stats_csv.open()) if r["Type"] in MCP_TYPES]
    return sum(int(r["Request Count"]) for r in rows), sum(int(r["Failure Count"]) for r in rows)


def run_one(
    gateway: GatewayProcess, users: int, args: argparse.Namespace, out_dir: Path, postgres: psutil.Process | None
) -> Row:
    """One Locust run; the hold window starts once all users are up and their first sessions have turned."""
    assert gateway.url is not None and gateway.pid is not None
    spawn_rate, hold, lifetime, processes = args.spawn_rate, args.hold, args.session_lifetime, args.processes
    ramp = users / spawn_rate
    settle = float(lifetime.split("-")[-1])
    run_time = ramp + settle + hold
    prefix = out_dir / f"u{users}"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(spawn_rate), "-t", f"{run_time:.0f}s", "--stop-timeout", "5",
        "--host", gateway.url, "--csv", str(prefix), "--session-lifetime", lifetime,
        "--transport-mix", str(args.transport_mix), "--calls-per-session", str(getattr(args, "calls_per_session", 3)),
        "--abrupt-ratio", "0.1", "--loglevel", "WARNING",
    ]  # fmt: skip
    if processes > 1:
        command += ["--processes", str(processes), *master_port_args()]
    log = (out_dir / f"u{users}.log").open("w")
    proc = subprocess.Popen(command, cwd=out_dir, stdout=log, stderr=subprocess.STDOUT)
    roots = {"gateway": psutil.Process(gateway.pid), "locust": psutil.Process(proc.pid)}
    if postgres is not None:
        roots["postgres"] = postgres
    sampler = Sampler(gateway.url, roots)
    sampler.start()
    try:
        exit_code = proc.wait(run_time + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        exit_code = proc.wait()
    finally:
        sampler.stop.set()
        sampler.join(5)
        log.close()
    row = Row(users=users, exit_code=exit_code, samples=sampler.samples)
    row.requests, row.failures = mcp_counts(Path(f"{prefix}_stats.csv"))
    held = [s for s in sampler.samples if ramp + settle <= s.t <= run_time]
    if sampler.samples:
        row.open_peak = max(s.open for s in sampler.samples)
    if len(held) >= 2:
        span = held[-1].t - held[0].t
        row.open_mean = statistics.mean(s.open for s in held)
        row.opened_per_s = (held[-1].created - held[0].created) / span
        row.closed_per_s = (held[-1].removed - held[0].removed) / span
        row.cpu = {name: statistics.mean(s.cpu.get(name, 0.0) for s in held) for name in roots}
    return row
