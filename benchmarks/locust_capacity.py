"""Capacity of the load side: open SSE sessions and churn one Locust process sustains against the gateway.

Starts an embedded Postgres and one gateway, then for each user count runs Locust headless
(``locustfiles/mcp_sessions.py``, SSE only by default) for the ramp plus a hold, sampling the gateway
once a second::

    python benchmarks/locust_capacity.py [--users 2000,5000,10000] [--spawn-rate 500] [--hold 30]
        [--session-lifetime 20-40] [--processes 1] [--cleanup-interval 5] [--gateway-args "--strategy batched"]

Per row: users, open sessions (peak, and mean over the hold), churn over the hold (sessions opened and
closed per second), failure ratio of the MCP requests, and CPU of the gateway, of Locust and of Postgres
(100 % = one core) so it is plain which side binds. "Open" is the gateway's registry: it includes sessions
whose client has left and that the next cleanup cycle has not yet removed. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness.cli import _Parser
from harness.commands.arglists import list_of
from harness.scenario.locust_proc import master_port_args
from harness.sut.gateway_proc import GatewayError, GatewayProcess
from harness.sut.postgres import EmbeddedPostgres, ProviderError

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfiles" / "mcp_sessions.py"
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


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


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
                sessions = _get_json(f"{self.url}/admin/cycles?limit=0")["sessions"]
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


def render(rows: Sequence[Row], processes: int) -> str:
    header = (
        f"{'users':>7} {'open peak':>9} {'open mean':>9} {'opened/s':>9} {'closed/s':>9} {'churn/s':>8} "
        f"{'requests':>9} {'fail %':>7} {'gw CPU%':>8} {'locust CPU%':>11} {'pg CPU%':>8} {'exit':>4}"
    )
    lines = [f"Locust capacity, {processes} Locust process(es), SSE sessions held over the hold window", header]
    for r in rows:
        lines.append(
            f"{r.users:>7} {r.open_peak:>9} {r.open_mean:>9.0f} {r.opened_per_s:>9.1f} {r.closed_per_s:>9.1f} "
            f"{r.opened_per_s + r.closed_per_s:>8.1f} {r.requests:>9} {100 * r.failure_ratio:>7.2f} "
            f"{r.cpu.get('gateway', 0):>8.0f} {r.cpu.get('locust', 0):>11.0f} {r.cpu.get('postgres', 0):>8.0f} "
            f"{r.exit_code!s:>4}"
        )
    return "\n".join(lines)


def build_parser() -> _Parser:
    parser = _Parser(prog="python benchmarks/locust_capacity.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=list_of(int, minimum=1), default=[2000, 5000, 10000])
    parser.add_argument("--spawn-rate", type=float, default=500.0, help="users started per second")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds measured after the ramp")
    parser.add_argument("--session-lifetime", default="20-40", help="seconds each session is held, MIN-MAX")
    parser.add_argument("--transport-mix", type=float, default=1.0, help="share of SSE users (default 1)")
    parser.add_argument("--calls-per-session", type=int, default=3,
                        help="MCP calls per session after initialize (default 3)")
    parser.add_argument("--processes", type=int, default=1, help="Locust processes (--processes)")
    parser.add_argument("--cleanup-interval", type=float, default=5.0)
    parser.add_argument(
        "--gateway-args",
        default="",
        help="more gateway options, one string: --gateway-args='--strategy batched --pool-size 40'",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep Locust's CSV and logs here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.spawn_rate <= 0 or args.hold <= 0 or args.processes < 1:
        print("locust_capacity: --spawn-rate and --hold must be > 0, --processes >= 1", file=sys.stderr)
        return 2
    try:
        lo, _, hi = args.session_lifetime.partition("-")
        if not 0 < float(lo) <= float(hi or lo):
            raise ValueError
    except ValueError:
        print(
            f"locust_capacity: --session-lifetime must look like 20-40, got {args.session_lifetime!r}", file=sys.stderr
        )
        return 2
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="locust-capacity-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    try:
        server = EmbeddedPostgres(max_connections=200)
        with server as db_url:
            postgres = postgres_root(server.data_dir)
            gateway_args = ["--cleanup-interval", str(args.cleanup_interval), *shlex.split(args.gateway_args)]
            for users in args.users:
                gateway = GatewayProcess(db_url, gateway_args, log_path=out_dir / "gateway.log")
                with gateway:
                    rows.append(run_one(gateway, users, args, out_dir, postgres))
                print(render(rows[-1:], args.processes).splitlines()[-1], flush=True)
    except (ProviderError, GatewayError) as exc:
        print(f"locust_capacity: {exc}", file=sys.stderr)
        return 1
    print(render(rows, args.processes))
    # Other work on the machine takes CPU from all three processes: say how busy it was.
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"Locust CSV and logs: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
