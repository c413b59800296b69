"""The main job: Locust churns sessions against the gateway while the harness measures cleanup cycle
time and DB pool saturation; results land in ``results/<timestamp>/`` (or ``--out DIR``).

Database choice order: --db-url URL, then --db docker / --db URL, else the embedded server.
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gateway_sim.config import StoreConfig
from harness.commands.arglists import duration_seconds
from harness.commands.options import add_database_options, add_gateway_options, check_gateway_options
from harness.errors import UsageError
from harness.faults.injectors import FaultScheduler, check_fits, fault_spec
from harness.report.run_report import write_report
from harness.scenario.calibrate import calibrate
from harness.scenario.collect import Collected, Collector, get_json
from harness.scenario.locust_proc import LocustOptions, LocustProcess, read_stats
from harness.scenario.manifest import build_manifest, package_versions
from harness.scenario.progress import Progress
from harness.scenario.summarize import cleanup_summary, pool_summary, read_jsonl, sessions_summary
from harness.sut.dbsync import sync_session
from harness.sut.stack import ExternalGateways, Stack, StackOptions

RUN_SESSION_TTL = 30.0
RUN_DB_LATENCY_MS = 10.0  # a database a few milliseconds away, so the model's latency term is visible
MAX_DRAIN_SECONDS = 40.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness run``."""
    add_database_options(parser)
    add_gateway_options(parser)
    parser.set_defaults(session_ttl=RUN_SESSION_TTL, db_latency_ms=RUN_DB_LATENCY_MS)
    load = parser.add_argument_group("load (Locust)")
    load.add_argument("--users", type=int, default=200, help="concurrent Locust users (default 200)")
    load.add_argument("--spawn-rate", type=float, default=50.0, help="users started per second (default 50)")
    load.add_argument("--run-time", type=duration_seconds, default=60.0, help="load duration: 60s, 5m (default 60s)")
    load.add_argument("--session-lifetime", default="5-30", help="seconds a session is held, MIN-MAX (default 5-30)")
    load.add_argument("--abrupt-ratio", type=float, default=0.2, help="share of SSE sessions dropped abruptly")
    load.add_argument("--abandon-ratio", type=float, default=0.2,
                      help="share of Streamable HTTP sessions abandoned without DELETE (TTL sweep removes them)")
    load.add_argument("--transport-mix", type=float, default=0.8, help="share of users on SSE (default 0.8)")
    load.add_argument("--calls-per-session", type=int, default=3,
                      help="tools/list, tools/call and ping calls per session after initialize (default 3)")
    load.add_argument("--locust-workers", type=int, default=0,
                      help="Locust worker processes (0: one local process; N: a master and N workers)")
    load.add_argument("--seed", type=int, default=None, help="seed for the load's random choices")
    run = parser.add_argument_group("run")
    run.add_argument("--latency-mode", choices=("server", "proxy"), default="server",
                     help="latency inside Postgres per refresh statement (server) or per round trip (proxy)")
    run.add_argument("--gateway-url", action="append", default=None,
                     help="measure this running gateway instead of starting one (repeatable; add --db-url for "
                          "pg_stat_activity, calibration and the leak check)")
    run.add_argument("--fault", action="append", type=fault_spec, default=[], metavar="SPEC",
                     help="inject a database fault during the load (repeatable): kill-backends@T, restart-db@T[:DOWN], "
                          "error-rate=P[@T:D], statement-timeout=MS[@T:D], pool-exhaust@T:D (T seconds after the "
                          "load starts)")
    run.add_argument("--out", type=Path, default=None, help="results directory (default results/<timestamp>)")
    run.add_argument("--drain", type=duration_seconds, default=None,
                     help="after the load, seconds to let cleanup catch up (default 2 × cleanup interval + 1)")
    run.add_argument("--gate", type=Path, default=None, help="gate the results with this thresholds TOML file")
    run.add_argument("--no-progress", action="store_true", help="no live display (plain lines instead)")


def _locust_options(args: argparse.Namespace) -> LocustOptions:
    return LocustOptions(
        users=args.users, spawn_rate=args.spawn_rate, run_time_s=args.run_time,
        session_lifetime=args.session_lifetime, abrupt_ratio=args.abrupt_ratio, abandon_ratio=args.abandon_ratio,
        transport_mix=args.transport_mix, calls_per_session=args.calls_per_session,
        processes=args.locust_workers, auth_token=args.auth_token, seed=args.seed,
    )


GATEWAY_KEYS = ("registry", "strategy", "driver", "max_concurrent", "batch_size", "executor_threads", "pool_size",
                "max_overflow", "pool_timeout", "cleanup_interval", "session_ttl", "sse_keepalive",
                "malloc_mmap_threshold")
"""The gateway's knobs in ``summary.json``'s ``config``, as ``/admin/cycles`` reports them."""


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    keys = (*GATEWAY_KEYS, "gateway_workers", "db_latency_ms", "db_jitter_ms", "latency_mode", "users", "spawn_rate",
            "run_time", "session_lifetime", "abrupt_ratio", "abandon_ratio", "transport_mix", "calls_per_session",
            "locust_workers", "seed", "max_connections")
    config = {k: getattr(args, k) for k in keys}
    config["db"] = "url" if args.db_url else args.db.split("://")[0] if "://" in args.db else args.db
    return config


def _external_config(gateway_url: str) -> dict[str, Any]:
    """The knobs a running gateway reports, for a run that did not start it."""
    try:
        reported = get_json(f"{gateway_url}/admin/cycles?limit=0")["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read {gateway_url}/admin/cycles: {exc}") from None
    return {k: reported.get(k) for k in GATEWAY_KEYS} | {"db": "external", "gateway_urls": [gateway_url]}


def registry_versions(args: argparse.Namespace) -> dict[str, str]:
    """The version of the registry's own package (``mcp-contextforge-gateway``) for a contextforge run."""
    if getattr(args, "registry", "sim") != "contextforge":
        return {}
    from harness.sut.contextforge_env import PACKAGE, find_env

    return {PACKAGE: find_env(args.contextforge_version, args.contextforge_source).version}


def _default_out() -> Path:
    return Path("results") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _leak_check(stack: Stack | ExternalGateways) -> tuple[int | None, int | None]:
    """Rows in mcp_sessions that no gateway holds as a live session, and rows in all."""
    if not stack.db_url:
        return None, None
    live: set[str] = set()
    for url in stack.gateway_urls:
        payload = get_json(f"{url}/admin/sessions", timeout=30)
        for ids in payload["sessions"].values():
            live.update(ids)
    with sync_session(stack.db_url) as session:
        from gateway_sim.store import all_session_ids

        rows = all_session_ids(session)
    return len(rows - live), len(rows)


def _count_rows(stack: Stack | ExternalGateways) -> int | None:
    if not stack.db_url:
        return None
    try:
        with sync_session(stack.db_url) as session:
            from gateway_sim.store import all_session_ids

            return len(all_session_ids(session))
    except Exception:
        return None


class _Interrupt:
    """Turns the first Ctrl-C/SIGTERM into a flag; the run then stops the load and still writes results."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV (nested values as JSON)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})


class RunExtension(Protocol):
    """Something that runs beside the load (faults, process sampling) and adds to the results."""

    def start(self, stack: Any, collector: Collector) -> None:
        """The load starts now."""

    def stop(self) -> None:
        """The load and the drain are over (also called on failure; idempotent)."""

    def results(self, summary: dict[str, Any], data: Collected) -> list[str]:
        """Add keys to the summary; return HTML sections for the report."""


def execute(args: argparse.Namespace, out_dir: Path, extensions: Sequence[RunExtension] = ()) -> dict[str, Any]:
    """Run one scenario end to end and write its results; returns the summary."""
    extensions = [FaultScheduler(list(getattr(args, "fault", []))), *extensions]
    locust_options = _locust_options(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    config = _run_config(args)
    stack: Stack | ExternalGateways
    if args.gateway_url:
        stack = ExternalGateways(args.gateway_url, args.db_url)
        config.update(_external_config(stack.gateway_urls[0]))
    else:
        stack = Stack(StackOptions.from_args(args, port=0, log_dir=logs, session_log_dir=logs))
    drain = args.drain if args.drain is not None else min(MAX_DRAIN_SECONDS, 2 * args.cleanup_interval + 1)
    config["drain"] = drain
    warnings: list[str] = []
    with _Interrupt() as interrupt:
        stack.start()
        collector: Collector | None = None
        locust: LocustProcess | None = None
        try:
            # contextforge refreshes with a pre-ping on each checkout: the calibrated refresh pays it too
            calibration = calibrate(StoreConfig(db_url=stack.gateway_db_url, driver=config["driver"],
                                                executor_threads=config["executor_threads"] or 1,
                                                pool_pre_ping=config.get("registry") == "contextforge",
                                                application_name="mcp-loadtest-calibration")) if stack.db_url else None
            collector = Collector(stack.gateway_urls, stack.db_url)
            collector.start()
            locust = LocustProcess(locust_options, stack.gateway_urls, out_dir)
            collector.mark("load_start")
            for extension in extensions:
                extension.start(stack, collector)
            locust.start()
            with Progress(enabled=not args.no_progress, run_time=args.run_time) as progress:
                while locust.running() and not interrupt.event.wait(1.0):
                    progress.update(collector.now(), locust.current_users(), collector.latest())
                    if stack.dead_gateways():
                        warnings.append(f"gateway {', '.join(stack.dead_gateways())} exited during the run")
                        break
            if interrupt.event.is_set():
                warnings.append("interrupted: the load was stopped early")
                drain = min(drain, 3.0)
            locust.interrupt()
            locust.wait(60)
            collector.mark("load_end")
            time.sleep(drain)
            for extension in extensions:
                extension.stop()
            leaked, rows_before_stop = _leak_check(stack)
            data = collector.stop()
            collector = None
            for gateway in stack.gateways:
                gateway.stop()
            rows_after_shutdown = _count_rows(stack) if isinstance(stack, Stack) else None
        finally:
            if locust is not None and locust.running():
                locust.interrupt()
                locust.wait(30)
            for extension in extensions:
                extension.stop()
            if collector is not None:
                collector.stop()
            stack.stop()
    run_end = time.time()
    gateway_events = read_jsonl(sorted(logs.glob("gateway-sessions-*.jsonl")))
    client_ends = read_jsonl([out_dir / "client-sessions.jsonl"])
    summary = {
        "config": config,
        "versions": {**package_versions(), **registry_versions(args)},
        "cleanup": cleanup_summary(data, calibration, config),
        "pool": pool_summary(data, config),
        "sessions": sessions_summary(data, gateway_events, client_ends, leaked, rows_after_shutdown, run_end),
        "locust": read_stats(out_dir / "locust_stats.csv"),
        "warnings": warnings,
    }
    summary["sessions"]["rows_before_shutdown"] = rows_before_stop
    if summary["pool"]["over_max_connections"]:
        summary["warnings"].append(
            f"{args.gateway_workers} workers × (pool {args.pool_size} + overflow {args.max_overflow}) = "
            f"{summary['pool']['total_connections_limit']} connections exceed max_connections "
            f"{summary['pool']['max_connections']}")
    sections = [section for extension in extensions for section in extension.results(summary, data)]
    _write_results(out_dir, summary, data, sections)
    return summary


def _write_results(out_dir: Path, summary: dict[str, Any], data: Collected, sections: list[str]) -> None:
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    manifest = build_manifest({"config": summary["config"]})
    manifest["versions"].update(summary["versions"])  # the registry's own package, when it is not ours
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    write_csv(out_dir / "cycles.csv", [{k: v for k, v in c.items() if k != "pool"}
                                       | {f"pool_{k}": v for k, v in c["pool"].items()} for c in data.cycles])
    write_csv(out_dir / "pool.csv", data.pool_samples)
    write_csv(out_dir / "pg_activity.csv", data.pg_samples)
    (out_dir / "events.json").write_text(json.dumps(data.events, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.html").write_text(write_report(summary, data, sections), encoding="utf-8")


def print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """A short table of the figures that matter."""
    from rich.console import Console
    from rich.table import Table

    c, p, s, lo = summary["cleanup"], summary["pool"], summary["sessions"], summary["locust"]
    table = Table(title=f"results: {out_dir}", show_header=False)
    for label, value in (
        ("cleanup cycles", c["cycles"]),
        ("cycle ms p50 / p95 / max", f'{c["total_ms"]["p50"]} / {c["total_ms"]["p95"]} / {c["total_ms"]["max"]}'),
        ("measured / model p50 / p95",
         f'{c["model_ratio"]["p50"]} / {c["model_ratio"]["p95"]} (binding: {c["binding"]})'),
        ("refresh errors", c["refresh_errors"]),
        ("pool peak / limit, exhausted", f'{p["checked_out_peak"]} / {p["limit"]}, {p["exhausted_fraction"]}'),
        ("waiters peak, wait ms p95, timeouts", f'{p["waiters_peak"]}, {p["wait_ms"]["p95"]}, {p["timeouts"]}'),
        ("sessions created / removed / leaked", f'{s["created"]} / {s["removed"]} / {s["leaked"]}'),
        ("active peak, zombie ms p95", f'{s["active_peak"]}, {s["zombie_ms"]["p95"]}'),
        ("locust requests / failure ratio / rps", f'{lo["requests"]} / {lo["failure_ratio"]} / {lo["rps"]}'),
    ):
        table.add_row(label, str(value))
    console = Console()
    console.print(table)
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


def run(args: argparse.Namespace, extensions: Sequence[RunExtension] = ()) -> int:
    """``python -m harness run`` (``soak`` adds its own extensions)."""
    if args.gate is not None and not args.gate.is_file():
        raise UsageError(f"--gate file {args.gate} does not exist")
    check_gateway_options(args)
    _locust_options(args)  # validate before anything starts
    embedded = not args.gateway_url and not args.db_url and args.db == "embedded"
    check_fits(args.fault, args.run_time, embedded,
               "an external gateway" if args.gateway_url else args.db_url or args.db)
    out_dir = args.out or _default_out()
    summary = execute(args, out_dir, extensions)
    print_summary(summary, out_dir)
    print(f"wrote {out_dir}/summary.json, report.html, cycles.csv, pool.csv, locust_stats.csv", file=sys.stderr)
    if args.gate is not None:
        from harness.gate.evaluate import run_gate

        return run_gate(out_dir, [], thresholds_file=args.gate)
    return 0
