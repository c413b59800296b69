"""The main job: Locust churns sessions against the gateway while the harness measures cleanup cycle
time and DB pool saturation; results land in ``results/<timestamp>/`` (or ``--out DIR``).

Database choice order: --db-url URL, then --db docker / --db URL, else the embedded server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import settings
from harness.commands.options import add_database_options, add_gateway_options, refuse_sim_only_flags
from harness.faults.spec import fault_spec
from harness.scenario.config import RUN_DEFAULTS, RunConfig
from harness.scenario.results import RunSummary
from harness.scenario.run import Extension, Run

LOAD_TITLE = "load (Locust)"


def add_arguments(parser: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None) -> None:
    """Arguments of ``python -m harness run`` (``soak`` passes its own defaults)."""
    defaults = {**RUN_DEFAULTS, **(defaults or {})}
    add_database_options(parser)
    add_gateway_options(parser, defaults)
    settings.add(parser, settings.LOAD_KNOBS, defaults, title=LOAD_TITLE)
    group = parser.add_argument_group("run")
    settings.add(group, ("latency_mode", "out", "drain", "calibration_bursts", "gate", "no_progress"), defaults)
    group.add_argument("--gateway-url", action="append", default=None,
                       help=settings.SETTINGS["gateway_url"].help + " (repeatable)")
    group.add_argument("--fault", action="append", type=fault_spec, default=[], metavar="SPEC",
                       help="inject a database fault during the load (repeatable): kill-backends@T, "
                            "restart-db@T[:DOWN], error-rate=P[@T:D], statement-timeout=MS[@T:D], pool-exhaust@T:D "
                            "(T seconds after the load starts)")


def config_from_args(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> RunConfig:
    """The frozen run configuration of the parsed flags (bad values: :class:`~harness.errors.UsageError`)."""
    refuse_sim_only_flags(args)
    return RunConfig.build(vars(args), defaults=defaults, faults=args.fault, gateway_urls=args.gateway_url or (),
                           out_dir=args.out, gate=args.gate, progress=not args.no_progress)


def print_summary(summary: RunSummary, out_dir: Path) -> None:
    """A short table of the figures that matter."""
    from rich.console import Console
    from rich.table import Table

    c, p, s, lo = summary.cleanup, summary.pool, summary.sessions, summary.locust
    table = Table(title=f"results: {out_dir}", show_header=False)
    for label, value in (
        ("cleanup cycles", c.cycles),
        ("cycle ms p50 / p95 / max", f"{c.total_ms.p50} / {c.total_ms.p95} / {c.total_ms.max}"),
        ("measured / model p50 / p95", f"{c.model_ratio.p50} / {c.model_ratio.p95} (binding: {c.binding})"),
        ("refresh errors", c.refresh_errors),
        ("pool peak / limit, exhausted", f"{p.checked_out_peak} / {p.limit}, {p.exhausted_fraction}"),
        ("waiters peak, wait ms p95, timeouts", f"{p.waiters_peak}, {p.wait_ms.p95}, {p.timeouts}"),
        ("sessions created / removed / leaked", f"{s.created} / {s.removed} / {s.leaked}"),
        ("active peak, zombie ms p95", f"{s.active_peak}, {s.zombie_ms['p95']}"),
        ("locust requests / failure ratio / rps", f"{lo.requests} / {lo.failure_ratio} / {lo.rps}"),
    ):
        table.add_row(label, str(value))
    console = Console()
    console.print(table)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def execute(config: RunConfig, extensions: Sequence[Extension] = ()) -> int:
    """Run, print the table, and gate the results when ``--gate`` was given (its exit code).

    A gateway measured from outside that has no ``/admin/cycles`` is observed through its database instead
    (``harness observe``), and the run says so.
    """
    if config.external and not extensions and not config.faults and not _has_admin(config.gateway_urls[0]):
        from harness.commands.observe import print_observed
        from harness.observe.external_run import run_observed

        observed = run_observed(config)
        print_observed(observed, config.out_dir)
        lo = observed["locust"]
        print(f"locust requests / failure ratio / rps: {lo['requests']} / {lo['failure_ratio']} / {lo['rps']}")
    else:
        outcome = Run(config, extensions).execute()
        print_summary(outcome.summary, config.out_dir)
        print(f"wrote {config.out_dir}/summary.json, report.html, cycles.csv, pool.csv, locust_stats.csv",
              file=sys.stderr)
    if config.gate is not None:
        from harness.gate.evaluate import run_gate

        return run_gate(config.out_dir, [], thresholds_file=config.gate)
    return 0


def _has_admin(url: str) -> bool:
    from harness.observe.external_run import has_admin_api

    return has_admin_api(url)


def run(args: argparse.Namespace) -> int:
    """``python -m harness run``."""
    return execute(config_from_args(args))
