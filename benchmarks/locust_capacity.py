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

import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gateway_sim.settings import list_type
from harness.capacity.load_side import Row, postgres_root, run_one
from harness.cli import CliParser
from harness.settings import SETTINGS
from harness.sut.gateway_proc import GatewayError, GatewayProcess
from harness.sut.postgres import EmbeddedPostgres, ProviderError


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


def build_parser() -> CliParser:
    parser = CliParser(prog="python benchmarks/locust_capacity.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=list_type(SETTINGS["users"]), default=[2000, 5000, 10000])
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
