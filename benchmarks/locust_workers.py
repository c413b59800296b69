"""Open sessions and churn that 1 and 2 Locust worker processes sustain, side by side, in one run.

Starts an embedded Postgres, then for each process count a fresh gateway with the same settings and the
same Locust load (``locustfiles/mcp_sessions.py``, SSE by default; 2 processes = Locust's ``--processes 2``,
a master and two workers). Each run is measured like ``benchmarks/locust_capacity.py`` (whose ``run_one``
does the work): over a hold window after the ramp and the first session turnover. With ``--rounds N`` the
pair runs N times in alternating order (1-2, 2-1, …), so drift in what else the machine does weighs on
both sides alike; the table shows the mean per process count::

    python benchmarks/locust_workers.py [--users 3000] [--spawn-rate 100] [--hold 30] [--rounds 2]
        [--session-lifetime 20-40] [--transport-mix 1] [--cleanup-interval 5] [--gateway-args "..."]

Prints per process count the open sessions (mean over the hold, peak), churn (sessions opened and closed
per second), MCP requests per second and failure ratio, and the CPU of Locust, the gateway and Postgres
(100 % = one core), with the ratio 2 processes / 1 process. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.capacity.load_side import Row, postgres_root, run_one
from harness.cli import CliParser
from harness.settings import SETTINGS, session_lifetime
from harness.sut.gateway_proc import GatewayError, GatewayProcess
from harness.sut.postgres import EmbeddedPostgres, ProviderError

PROCESS_COUNTS = (1, 2)

Metric = tuple[str, Callable[[Row, float], float], str]
METRICS: list[Metric] = [
    ("open sessions, mean over hold", lambda r, _: r.open_mean, "{:.0f}"),
    ("open sessions, peak", lambda r, _: float(r.open_peak), "{:.0f}"),
    ("opened / s", lambda r, _: r.opened_per_s, "{:.1f}"),
    ("closed / s", lambda r, _: r.closed_per_s, "{:.1f}"),
    ("churn / s (opened + closed)", lambda r, _: r.opened_per_s + r.closed_per_s, "{:.1f}"),
    ("MCP requests / s (whole run)", lambda r, run_s: r.requests / run_s if run_s else 0.0, "{:.0f}"),
    ("MCP failures %", lambda r, _: 100.0 * r.failure_ratio, "{:.2f}"),
    ("Locust CPU % (all processes)", lambda r, _: r.cpu.get("locust", 0.0), "{:.0f}"),
    ("gateway CPU %", lambda r, _: r.cpu.get("gateway", 0.0), "{:.0f}"),
    ("Postgres CPU %", lambda r, _: r.cpu.get("postgres", 0.0), "{:.0f}"),
]


def run_seconds(args: argparse.Namespace) -> float:
    """Locust's ``-t`` as ``run_one`` sets it: ramp, one longest lifetime, hold."""
    return args.users / args.spawn_rate + session_lifetime(args.session_lifetime)[1] + args.hold


def order(round_index: int) -> tuple[int, ...]:
    """Process counts in the order of one round: reversed every other round."""
    return PROCESS_COUNTS if round_index % 2 == 0 else PROCESS_COUNTS[::-1]


def render(rows: dict[int, list[Row]], args: argparse.Namespace) -> str:
    """The metrics (mean over rounds) as rows, one column per process count, and the ratio last / first."""
    counts = sorted(rows)
    run_s = run_seconds(args)
    rounds = min(len(rows[n]) for n in counts)
    lines = [
        f"Locust worker processes on {os.cpu_count()} CPUs: {args.users} users, spawn rate {args.spawn_rate:g}/s, "
        f"session lifetime {args.session_lifetime} s, SSE share {args.transport_mix:g}, hold {args.hold:g} s, "
        f"mean of {rounds} round(s)",
        f"{'':<32}" + "".join(f"{f'{n} process' + ('es' if n > 1 else ''):>14}" for n in counts)
        + f"{f'ratio {counts[-1]}/{counts[0]}':>12}",
    ]
    for label, value, fmt in METRICS:
        values = [statistics.mean(value(row, run_s) for row in rows[n]) for n in counts]
        ratio = f"{values[-1] / values[0]:.2f}" if values[0] else "–"
        lines.append(f"{label:<32}" + "".join(f"{fmt.format(v):>14}" for v in values) + f"{ratio:>12}")
    exits = ", ".join(f"{n}: {[row.exit_code for row in rows[n]]}" for n in counts)
    lines.append(f"Locust exit codes ({exits}); CPU: 100 % = one core")
    return "\n".join(lines)


def build_parser() -> CliParser:
    parser = CliParser(prog="python benchmarks/locust_workers.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000, help="Locust users in both runs (default 3000)")
    parser.add_argument("--spawn-rate", type=float, default=100.0,
                        help="users started per second (default 100; a faster ramp times out the gateway's pool)")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds measured after the ramp (default 30)")
    parser.add_argument("--session-lifetime", default="20-40", help="seconds a session is held (default 20-40)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the pair in alternating order (default 1)")
    parser.add_argument("--transport-mix", default="1", help="share of SSE users (default 1)")
    parser.add_argument("--cleanup-interval", type=float, default=5.0, help="gateway cleanup interval, s")
    parser.add_argument("--gateway-args", default="",
                        help="more gateway options, one string: --gateway-args='--strategy batched --pool-size 40'")
    parser.add_argument("--out", type=Path, default=None, help="keep Locust's CSV and logs here")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and validate; bad input exits 2 with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.users < 1 or args.rounds < 1 or args.spawn_rate <= 0 or args.hold <= 0 or args.cleanup_interval <= 0:
        parser.error("--users and --rounds must be >= 1; --spawn-rate, --hold and --cleanup-interval must be > 0")
    try:
        session_lifetime(args.session_lifetime)
        args.transport_mix = float(args.transport_mix)
        SETTINGS["transport_mix"].check(args.transport_mix)
        args.gateway_args = shlex.split(args.gateway_args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="locust-workers-"))
    rows: dict[int, list[Row]] = {n: [] for n in PROCESS_COUNTS}
    try:
        server = EmbeddedPostgres(max_connections=200)
        with server as db_url:
            postgres = postgres_root(server.data_dir)
            gateway_args = ["--cleanup-interval", f"{args.cleanup_interval:g}", *args.gateway_args]
            for round_index in range(args.rounds):
                for processes in order(round_index):
                    run_dir = out_dir / f"round-{round_index + 1}-processes-{processes}"
                    run_dir.mkdir(parents=True, exist_ok=True)
                    gateway = GatewayProcess(db_url, gateway_args, log_path=run_dir / "gateway.log")
                    with gateway:
                        run_args = argparse.Namespace(**vars(args), processes=processes)
                        row = run_one(gateway, args.users, run_args, run_dir, postgres)
                    rows[processes].append(row)
                    print(f"round {round_index + 1}, {processes} process(es): open mean {row.open_mean:.0f}, "
                          f"churn {row.opened_per_s + row.closed_per_s:.1f}/s, "
                          f"failures {100 * row.failure_ratio:.2f} %", flush=True)
    except (ProviderError, GatewayError) as exc:
        print(f"locust_workers: {exc}", file=sys.stderr)
        return 1
    print(render(rows, args))
    print(f"Locust CSV and logs: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
