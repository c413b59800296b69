"""``python -m harness sweep``: a capacity-planning sweep over a grid of knobs (see :mod:`harness.capacity.sweep`
for the grid, the plan file and resuming)."""

from __future__ import annotations

import argparse
from typing import Any

from harness import settings
from harness.capacity.bench import BenchPoint, registry_pythons
from harness.capacity.sweep import (
    OPTIONS,
    POINTS_FILE,
    Measure,
    PointStore,
    bench_measure,
    estimated_seconds,
    grid_points,
    option_default,
    point_key,
    print_recommendations,
    recommendations,
    resolve,
    run_grid,
    run_measure,
    skip_note,
    write_outputs,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness sweep`` (every one can come from ``--plan``)."""
    settings.add(parser, ("plan",))
    for option in OPTIONS:
        suffix = " (comma list)" if option.many else ""
        parser.add_argument(option.flag, *option.row.aliases, dest=option.name, type=option.convert, default=None,
                            metavar="LIST" if option.many else None,
                            help=option.row.help_text(option_default(option)) + suffix)


def _progress_bar() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]sweep[/bold] {task.fields[done]}/{task.fields[count]} points"), BarColumn(),
                    TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True))


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the sweep, then write the table, the report and the recommendation."""
    from harness.sut.postgres import provider_for

    spec = resolve(args)
    registry_pythons(spec.registry_name, spec.contextforge_version, spec.contextforge_source)  # missing env: exit 2
    points = grid_points(spec)
    finished = PointStore(spec.out / POINTS_FILE).load()
    todo = [p for p in points if point_key(p, spec) not in finished and skip_note(p, spec) is None]
    total = sum(estimated_seconds(p, spec) for p in todo)
    print(f"sweep: {len(points)} points, {len(points) - len(todo)} finished or skipped, {len(todo)} to measure "
          f"(≈ {total / 60:.1f} min) → {spec.out}")
    provider = None
    interrupted = False
    with _progress_bar() as bar:
        task = bar.add_task("", total=max(total, 1e-9), done=0, count=len(points))

        def advance(point: BenchPoint, cost: float, status: str) -> None:
            done = bar.tasks[0].fields["done"] + (status != "measuring")
            bar.update(task, advance=cost, done=done,
                       description=f"{status} {point.strategy}/{point.driver} N={point.sessions}")

        def factory() -> Measure:
            nonlocal provider
            provider = provider_for(spec.db, spec.db_url, max_connections=spec.max_connections,
                                    docker_image=spec.docker_image)
            url = provider.start()
            return bench_measure(url, spec) if spec.mode == "bench" else run_measure(url, spec)

        try:
            rows = run_grid(points, spec, factory, advance)
        except KeyboardInterrupt:
            interrupted = True
            loaded = PointStore(spec.out / POINTS_FILE).load()
            rows = [loaded[k] for k in (point_key(p, spec) for p in points) if k in loaded]
        finally:
            if provider is not None:
                provider.stop()
    answers = recommendations(spec, rows)
    write_outputs(spec, rows, answers)
    if spec.target is not None:
        print_recommendations(answers, spec.target)
    print(f"wrote {spec.out / 'sweep.csv'}, {spec.out / 'sweep.json'}, {spec.out / 'report.html'}")
    if interrupted:
        print(f"sweep: interrupted; {len(rows)} finished points kept. Re-run the same command to continue.")
        return 130
    return 0
