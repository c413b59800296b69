"""``python -m harness model``: the model's cycle time and binding constraint, without running anything."""

from __future__ import annotations

import argparse
import json

from harness import settings
from harness.capacity.model import model_input, predict
from harness.errors import UsageError

KNOBS = ("sessions", "db_latency_ms", "check_ms", "cpu_refresh_ms", "burst_refresh_ms", "cpu_check_ms", "cpu_remove_ms",
         "expiry_ms", "delete_ms", "disconnected", "phase1_removal", "strategy", "driver", "max_concurrent",
         "executor_threads", "pool_size", "max_overflow", "max_connections", "reserved_connections", "gateway_workers",
         "batch_size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness model``: the table's rows, with the cost of one refresh required."""
    settings.add(parser, KNOBS, {"driver": None, "executor_threads": None, "db_latency_ms": None},
                 required=("sessions", "db_latency_ms"))
    settings.add(parser, ("print_json",))


def run(args: argparse.Namespace) -> int:
    """Print the prediction (``--json``: ``{model_ms, c_eff, binding, limits}``)."""
    knobs = {name: getattr(args, name) for name in KNOBS}
    # Without --driver: thread when an executor size is given, else async.
    knobs["driver"] = knobs["driver"] or ("thread" if knobs["executor_threads"] is not None else "async")
    try:
        settings.check(knobs)
        inp = model_input(knobs, sessions=args.sessions, refresh_ms=args.db_latency_ms, check_ms=args.check_ms,
                          disconnected=args.disconnected, delete_ms=args.delete_ms)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = predict(inp)
    if args.print_json:
        print(json.dumps({"model_ms": result.model_ms, "c_eff": result.c_eff, "binding": result.binding,
                          "limits": result.limits, "terms": result.terms}))
        return 0
    limits = ", ".join(f"{k}={v}" for k, v in result.limits.items()) or "-"
    print(f"model: {result.model_ms:.1f} ms per cycle for {args.sessions} sessions "
          f"({inp.strategy}, {inp.driver} driver)")
    print(f"effective concurrency: {result.c_eff} (binding: {result.binding}; limits: {limits})")
    print("terms: " + ", ".join(f"{k.removesuffix('_ms')} {v:.1f} ms" for k, v in result.terms.items()))
    return 0
