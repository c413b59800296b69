"""``python -m harness bench``: measure cleanup cycles in-process against real Postgres, beside the model.

Each point registers N synthetic sessions (transports that report connected) in a real SessionRegistry,
calibrates one refresh (``L_refresh``) and one phase-1 check in the same run, runs a warm-up cycle and then
``--repeats`` measured cycles, and compares the median with the model.
"""

from __future__ import annotations

import argparse

from harness import settings
from harness.capacity.bench import (
    BENCH_LISTS,
    points_from_args,
    registry_package_versions,
    registry_pythons,
    render,
    run_points,
)
from harness.errors import UsageError
from harness.files import write_json
from harness.sut.postgres import provider_for

BENCH_DEFAULTS = {"sessions": [100, 1000], "db_latency_ms": [20.0], "strategy": None, "driver": None,
                  "batch_size": None, "registry_name": ["sim"], "db_jitter_ms": 0.0}
"""Not given, the sim-only knobs are every strategy, the async driver and batches of 500 (for sim points)."""
SCALARS = ("disconnected_ratio", "db_jitter_ms", "pool_timeout", "repeats", "max_point_seconds", "json_out", "db",
           "docker_image", "db_url", "max_connections", *settings.CONTEXTFORGE_KNOBS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The grid knobs as comma-separated lists, the rest as single values."""
    settings.add(parser, (*settings.GRID_KNOBS, *BENCH_LISTS), BENCH_DEFAULTS, lists=(*settings.GRID_KNOBS,
                                                                                    *BENCH_LISTS))
    settings.add(parser, SCALARS, {**BENCH_DEFAULTS, "db_url": None})


def run(args: argparse.Namespace) -> int:
    """Run the bench and print/write its rows (``--json``: ``{"rows": [...], "manifest": ...}``)."""
    from harness.scenario.manifest import build_manifest

    try:
        settings.check(vars(args), SCALARS)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    points = points_from_args(args)
    pythons = registry_pythons({p.registry_name for p in points}, args.contextforge_version, args.contextforge_source)
    with provider_for(args.db, args.db_url, max_connections=args.max_connections,
                      docker_image=args.docker_image) as url:
        rows = run_points(points, url, args.repeats, args.max_point_seconds, pythons)
    render(rows)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        manifest = build_manifest()
        manifest["versions"].update(registry_package_versions(pythons, args.contextforge_version,
                                                              args.contextforge_source))
        write_json(args.json_out, {"rows": [r.as_dict() for r in rows], "manifest": manifest})
        print(f"wrote {args.json_out}")
    return 0

