"""Soak: a long ``harness run`` of steady churn (clean closes, abrupt drops, abandoned sessions) that checks
session accounting and the gateway's resource use; the checks are described in :mod:`harness.scenario.soak`.

Exit code 99 when a check fails (as ``gate`` does for a failed threshold).
"""

from __future__ import annotations

import argparse

from harness import settings
from harness.commands import run as run_cmd
from harness.scenario.results import SoakWorker
from harness.scenario.soak import SOAK_DEFAULTS, ProcessSampler

EXIT_CHECK_FAILED = 99


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``harness run``'s arguments with soak defaults (``--duration`` is ``--run-time``), plus ``--sample-every``."""
    run_cmd.add_arguments(parser, SOAK_DEFAULTS)
    settings.add(parser, ("sample_every",), title="soak")


def _malloc_text(figures: SoakWorker) -> str:
    if figures.malloc_in_use_mb_first is None or figures.malloc_in_use_mb_last is None:
        return ""
    return (f"; malloc in use {figures.malloc_in_use_mb_first} -> {figures.malloc_in_use_mb_last} MiB, "
            f"kept free {figures.malloc_free_mb_first} -> {figures.malloc_free_mb_last} MiB")


def run(args: argparse.Namespace) -> int:
    """``python -m harness soak``: the run, then the soak's checks (exit 99 if one fails)."""
    if args.drain is None:  # long enough for abandoned sessions to expire
        args.drain = args.session_ttl + 2 * args.cleanup_interval + 1
    sampler = ProcessSampler(args.sample_every)
    code = run_cmd.execute(run_cmd.config_from_args(args, SOAK_DEFAULTS), [sampler])
    soak = sampler.summary
    if soak is None:
        return code
    for name, passed in soak.checks.items():
        print(f"soak {name}: {'pass' if passed else 'FAIL'}")
    for worker, f in soak.workers.items():
        print(f"soak worker {worker}: RSS {f.rss_mb_first} -> {f.rss_mb_last} MiB "
              f"({f.rss_growth:+.1%} over {f.window_s:g} s windows){_malloc_text(f)}, fds net of pool "
              f"{f.net_fds_baseline} -> {f.net_fds_drained}, asyncio tasks "
              f"{f.tasks_baseline} -> {f.tasks_drained} (baseline -> after drain)"
              if f.rss_growth is not None else f"soak worker {worker}: too few samples")
    return code if code != 0 else 0 if soak.ok else EXIT_CHECK_FAILED
