"""Gateway and Locust CPU per session lifecycle, for SSE and for Streamable HTTP, at a fixed load.

A lifecycle is open, initialize, ``--calls-per-session`` calls and close (SSE: ``GET /sse`` … the stream closed;
Streamable HTTP: ``initialize`` … ``DELETE /mcp``). Starts an embedded Postgres, then for each round, each
variant and each transport a fresh gateway and one Locust process; over the hold window it takes the process CPU
time (psutil, user + system, children included) of the gateway and of Locust and divides by the sessions closed::

    python benchmarks/gateway_cost.py [--users 300] [--session-lifetime 2-4] [--hold 20] [--rounds 2]
        [--transports sse,streamable_http] [--variant NAME=PYTHON ...] [--gateway-args "..."]

``--variant before=/path/to/python`` runs the gateway with another interpreter (one whose path puts another
checkout of ``gateway_sim`` first), ``--variant "uvloop=/path/to/python --loop uvloop"`` adds gateway options
for that variant; variants and transports alternate within each round, so drift of a shared
machine falls on all of them alike. Figures are printed (and ``--json`` written), never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.capacity.load_side import postgres_root, run_one
from harness.cli import CliParser
from harness.sut.gateway_proc import GatewayError, GatewayProcess
from harness.sut.postgres import EmbeddedPostgres, ProviderError

TRANSPORTS = {"sse": 1.0, "streamable_http": 0.0}


@dataclass(frozen=True)
class Measurement:
    """One run: CPU-ms per lifecycle of the gateway and of Locust, and the load it carried."""

    variant: str
    transport: str
    round: int
    lifecycles_per_s: float
    open_mean: float
    gateway_cpu_ms: float
    locust_cpu_ms: float
    gateway_cpu_percent: float
    locust_cpu_percent: float
    failure_ratio: float


def _variant(text: str) -> tuple[str, str, tuple[str, ...]]:
    name, sep, rest = text.partition("=")
    words = shlex.split(rest)
    if not sep or not name or not words:
        raise argparse.ArgumentTypeError(f"--variant needs NAME=PYTHON [GATEWAY OPTIONS], got {text!r}")
    return name, words[0], tuple(words[1:])


def build_parser() -> CliParser:
    parser = CliParser(prog="python benchmarks/gateway_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="Locust users (default 300)")
    parser.add_argument("--spawn-rate", type=float, default=150.0, help="users started per second")
    parser.add_argument("--session-lifetime", default="2-4", help="seconds a session is held, MIN-MAX")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds measured after the ramp")
    parser.add_argument("--calls-per-session", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over variants and transports")
    parser.add_argument("--transports", default="sse,streamable_http", help="sse and/or streamable_http")
    parser.add_argument("--variant", type=_variant, action="append", default=[],
                        help="NAME=PYTHON [OPTIONS]: a gateway interpreter (and its own gateway options) to measure "
                             "(default: this one, as 'current')")
    parser.add_argument("--gateway-args", default="", help="more gateway options, one string")
    parser.add_argument("--cleanup-interval", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None, help="write the measurements here")
    return parser


def measure(db_url: str, postgres: object, python: str, gateway_args: list[str], transport: str,
            args: argparse.Namespace, out_dir: Path) -> tuple[float, ...]:
    """``(lifecycles/s, open mean, gateway CPU-ms, Locust CPU-ms per lifecycle, gateway %, Locust %, failures)``."""
    run_args = argparse.Namespace(spawn_rate=args.spawn_rate, hold=args.hold, session_lifetime=args.session_lifetime,
                                  processes=1, transport_mix=TRANSPORTS[transport],
                                  calls_per_session=args.calls_per_session)
    gateway = GatewayProcess(db_url, gateway_args, log_path=out_dir / "gateway.log", python=python)
    with gateway:
        row = run_one(gateway, args.users, run_args, out_dir, postgres)  # type: ignore[arg-type]
    rate = row.opened_per_s  # at steady state each opened session is one lifecycle (its close comes later)
    gateway_pct, locust_pct = row.cpu.get("gateway", 0.0), row.cpu.get("locust", 0.0)
    # CPU % (100 = one core busy for a second = 1000 CPU-ms per s) over lifecycles per s

    def per(pct: float) -> float:
        return 10.0 * pct / rate if rate > 0 else float("nan")

    return rate, row.open_mean, per(gateway_pct), per(locust_pct), gateway_pct, locust_pct, row.failure_ratio


def render(results: Sequence[Measurement]) -> str:
    lines = [f"{'variant':<10} {'transport':<16} {'round':>5} {'lifecycles/s':>12} {'open':>6} "
             f"{'gw CPU-ms':>10} {'locust CPU-ms':>13} {'gw CPU%':>8} {'locust CPU%':>11} {'fail %':>7}"]
    for m in results:
        lines.append(f"{m.variant:<10} {m.transport:<16} {m.round:>5} {m.lifecycles_per_s:>12.1f} {m.open_mean:>6.0f} "
                     f"{m.gateway_cpu_ms:>10.2f} {m.locust_cpu_ms:>13.2f} {m.gateway_cpu_percent:>8.0f} "
                     f"{m.locust_cpu_percent:>11.0f} {100 * m.failure_ratio:>7.2f}")
    lines.append("median CPU-ms per lifecycle:")
    keys = sorted({(m.variant, m.transport) for m in results}, key=lambda k: (k[1], k[0]))
    for variant, transport in keys:
        group = [m for m in results if (m.variant, m.transport) == (variant, transport)]
        gateway = statistics.median(m.gateway_cpu_ms for m in group)
        locust = statistics.median(m.locust_cpu_ms for m in group)
        lines.append(f"  {variant:<10} {transport:<16} gateway {gateway:6.2f}  locust {locust:6.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what a run started, then exit
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not transports or set(transports) - set(TRANSPORTS):
        print(f"gateway_cost: --transports takes {', '.join(TRANSPORTS)}", file=sys.stderr)
        return 2
    if args.users < 1 or args.rounds < 1 or args.hold <= 0 or args.spawn_rate <= 0:
        print("gateway_cost: --users and --rounds must be >= 1, --hold and --spawn-rate > 0", file=sys.stderr)
        return 2
    variants = args.variant or [("current", sys.executable, ())]
    for name, python, _ in variants:
        if not os.access(python, os.X_OK):
            print(f"gateway_cost: variant {name}: {python} is not an executable", file=sys.stderr)
            return 2
    json_out = args.json.resolve() if args.json else None
    out_dir = Path(tempfile.mkdtemp(prefix="gateway-cost-"))
    os.chdir(out_dir)  # the gateway's import path must not start with a checkout of the project
    gateway_args = ["--cleanup-interval", str(args.cleanup_interval), *shlex.split(args.gateway_args)]
    results: list[Measurement] = []
    try:
        server = EmbeddedPostgres(max_connections=200)
        with server as db_url:
            postgres = postgres_root(server.data_dir)
            for round_no in range(1, args.rounds + 1):
                order = variants if round_no % 2 else list(reversed(variants))
                for transport in transports:
                    for name, python, extra in order:
                        figures = measure(db_url, postgres, python, [*gateway_args, *extra], transport, args,
                                          out_dir)
                        results.append(Measurement(name, transport, round_no, *(round(x, 3) for x in figures)))
                        print(render(results[-1:]).splitlines()[1], flush=True)
    except (ProviderError, GatewayError) as exc:
        print(f"gateway_cost: {exc}", file=sys.stderr)
        return 1
    print(render(results))
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if json_out:
        json_out.write_text(json.dumps([asdict(m) for m in results], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
